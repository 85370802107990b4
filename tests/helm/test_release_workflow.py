"""The release workflow (.github/workflows/release.yml) publishes the image the chart defaults
to. The workflow cannot run here (no Docker daemon, no GitHub runner): this reads it."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
import yaml

from tests.helm.rendering import CHART_DIR, ROOT, exporter_pods, container, render, \
    EXPORTER_CONTAINER, read_values_yaml

WORKFLOW = os.path.join(ROOT, ".github", "workflows", "release.yml")
# The project's GitHub owner (Chart.yaml's home and sources).
OWNER = "tfserving-exporter"


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    with open(WORKFLOW, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    [job] = workflow["jobs"].values()
    return job["steps"]


def _uses(workflow: dict[str, Any], action: str) -> dict[str, Any]:
    found = [step for step in _steps(workflow)
             if step.get("uses", "").split("@")[0] == action]
    assert len(found) == 1, f"expected one step using {action}, got {len(found)}"
    return found[0]


def test_it_says_it_cannot_run_here():
    with open(WORKFLOW, encoding="utf-8") as handle:
        head = handle.read().split("\nname:", 1)[0]
    assert "NEVER RUN" in head and "no Docker daemon" in head


def test_it_runs_on_version_tags_only(workflow):
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert triggers == {"push": {"tags": ["v*"]}}


def test_actions_are_pinned_by_major_version(workflow):
    for step in _steps(workflow):
        if "uses" in step:
            assert re.fullmatch(r"[\w-]+/[\w-]+@v\d+", step["uses"]), step["uses"]
    for action in ("docker/setup-qemu-action", "docker/setup-buildx-action",
                   "docker/login-action", "docker/metadata-action",
                   "docker/build-push-action"):
        _uses(workflow, action)


def test_it_builds_both_platforms_from_the_dockerfile_and_pushes(workflow):
    build = _uses(workflow, "docker/build-push-action")["with"]
    assert set(build["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert build["push"] is True
    assert build["context"] == "."
    assert os.path.normpath(os.path.join(ROOT, build["file"])) == os.path.join(ROOT, "Dockerfile")
    assert build["tags"] == "${{ steps.meta.outputs.tags }}"
    assert "arm64" in _uses(workflow, "docker/setup-qemu-action")["with"]["platforms"]


def test_it_logs_in_to_ghcr_with_the_workflow_token(workflow):
    login = _uses(workflow, "docker/login-action")["with"]
    assert login["registry"] == "ghcr.io"
    assert login["password"] == "${{ secrets.GITHUB_TOKEN }}"
    assert workflow["permissions"]["packages"] == "write"


def _published_repository(workflow: dict[str, Any], owner: str) -> str:
    """The image repository the workflow pushes to, for a repository owner's login."""
    [step] = [s for s in _steps(workflow) if s.get("id") == "image"]
    match = re.fullmatch(r'echo "name=(?P<name>[^"]+)" >> "\$GITHUB_OUTPUT"', step["run"].strip())
    assert match, step["run"]
    name = match["name"].replace("${GITHUB_REPOSITORY_OWNER,,}", owner.lower())
    assert "$" not in name, name
    meta = _uses(workflow, "docker/metadata-action")["with"]
    assert meta["images"] == "${{ steps.image.outputs.name }}"
    return name


def test_it_pushes_to_the_repository_the_chart_defaults_to(workflow):
    _, values = read_values_yaml()
    assert _published_repository(workflow, OWNER) == values["exporter"]["image"]["repository"]
    assert _published_repository(workflow, "TFServing-Exporter") == \
        values["exporter"]["image"]["repository"]  # lower-cased, as registries need
    with open(os.path.join(CHART_DIR, "Chart.yaml"), encoding="utf-8") as handle:
        chart = yaml.safe_load(handle)
    assert chart["home"] == f"https://github.com/{OWNER}/{OWNER}"


def test_a_release_tag_gives_the_tag_the_chart_defaults_to(workflow):
    # Tag v<appVersion> -> image tag <appVersion> ({{version}} of a semver tag drops the v).
    tags = _uses(workflow, "docker/metadata-action")["with"]["tags"]
    assert "type=semver,pattern={{version}}" in tags.splitlines()
    with open(os.path.join(CHART_DIR, "Chart.yaml"), encoding="utf-8") as handle:
        app_version = yaml.safe_load(handle)["appVersion"]
    [pod] = exporter_pods(render({}))
    image = container(pod, EXPORTER_CONTAINER)["image"]
    assert image == f"ghcr.io/{OWNER}/tfserving-exporter:{app_version}"


def _version_check(workflow) -> str:
    steps = workflow["jobs"]["image"]["steps"]
    (step,) = [step for step in steps if step.get("id") == "versions"]
    assert steps.index(step) < min(index for index, step in enumerate(steps)
                                   if "docker/" in step.get("uses", ""))
    return step["run"]


def _package_version() -> str:
    import tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        return tomllib.load(handle)["project"]["version"]


@pytest.mark.parametrize("tag, passes", [(None, True), ("v0.0.0-not-this", False), ("v1", False)])
def test_a_tag_that_does_not_match_the_versions_stops_the_release(workflow, tag, passes):
    """The step runs here as it would on the runner (bash, from the repository's root);
    ``None`` is the tag of this version."""
    import subprocess
    import sys
    result = subprocess.run(
        ["bash", "-e", "-c", _version_check(workflow)], cwd=ROOT,
        env={"GITHUB_REF_NAME": tag or f"v{_package_version()}",
             "PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin"},
        capture_output=True, text=True, timeout=30)
    assert (result.returncode == 0) == passes, result.stderr
    if not passes:
        assert "bump both first" in result.stderr
