"""/metrics for a fixed TF Serving state is the page the exporter served before the scrape-cost
work (issue 14): the same names, labels, values and buckets, byte for byte, apart from the
order of lines and values that measure time.

The state is the benchmark stand-in's (``benchmarks/fake_tfserving.py --mixed-states``): its
replies and its TF Serving page are canned bytes, so two runs see exactly the same input.
The recorded pages are in ``tests/testdata/pages/``; they were written by this module,

    python tests/test_page_unchanged.py

at commit 254bbb6, before any of the scrape-cost changes, and re-recorded for fleet mode
(issue 15), whose only difference is what it added on purpose: the series
``tfserving_exporter_fleet_targets``, ``tfserving_exporter_dropped_total{kind="target"}`` and
``tfserving_exporter_scrape_errors_total{reason="too_many_concurrent_probes"}``, and "target"
in the dropped counter's HELP. Re-recording them is a change of the
exporter's output, which README's deprecation rules govern: do it only for a change meant to be
visible, and say so in the commit.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.helpers import free_port, wait_until  # noqa: E402

PAGES_DIR = os.path.join(ROOT, "tests", "testdata", "pages")
MODELS = 10  # two of each of the stand-in's five kinds of model (see MIXED_STATES)
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"

# Values that measure the exporter's own run, not TF Serving's state: replaced by "<varies>".
VARYING = re.compile(
    r"^(tfserving_probe_duration_seconds|tfserving_exporter_(collector_duration_seconds"
    r"|scrape_duration_seconds|config_last_reload_success_timestamp_seconds))")
# prometheus_client's process and platform families: left out (they describe the machine).
MACHINE = re.compile(r"^(process_|python_)")

# (name, protocol of status and metadata, extra settings)
CASES = {
    "grpc": {},
    "rest": {"collectors.status.protocol": "rest", "collectors.metadata.protocol": "rest"},
    "passthrough": {"collectors.native.passthrough": True},
}


def normalised(page: str) -> list[str]:
    """The page's lines, sorted, with varying values masked and OpenMetrics' ``_created``
    samples (wall-clock times) left out."""
    lines = []
    for line in page.splitlines():
        if not line or line.startswith("# EOF"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if line.startswith("#"):
            name = line.split(" ", 3)[2] if len(line.split(" ", 3)) > 2 else ""
        elif name.endswith("_created"):
            continue
        if MACHINE.match(name):
            continue
        if VARYING.match(name):
            if not line.startswith("#"):
                line = line.rsplit(" ", 1)[0] + " <varies>"
        lines.append(line)
    return sorted(lines)


def write_models_config(root: str) -> str:
    path = os.path.join(root, "models.config")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("model_config_list {\n" + "".join(
            f'  config {{ name: "model_{i:03d}" base_path: "/models/model_{i:03d}" '
            'model_platform: "tensorflow" }\n' for i in range(MODELS)) + "}\n")
    return path


def start_standin() -> tuple[subprocess.Popen, int, int]:
    grpc_port, rest_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "benchmarks", "fake_tfserving.py"),
         f"--models={MODELS}", "--mixed-states", f"--grpc-port={grpc_port}",
         f"--rest-port={rest_port}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    assert process.stdout.readline().strip() == "ready"
    return process, grpc_port, rest_port


def pages(start_exporter_with, root: str, grpc_port: int, rest_port: int,
          case: str) -> dict[str, str]:
    """The exporter's /metrics in both formats, once every model's status is in."""
    exporter = start_exporter_with({
        "tfserving.grpc_address": f"127.0.0.1:{grpc_port}",
        "tfserving.rest_address": f"http://127.0.0.1:{rest_port}",
        "tfserving.model_config_file": write_models_config(root),
        **CASES[case]})
    last = f'tfserving_model_available_versions{{model="model_{MODELS - 1:03d}"}}'
    wait_until(lambda: last in requests.get(exporter.url + "/metrics", timeout=10).text,
               timeout=30, message="every model's status")
    result = {}
    for name, accept in (("text", "text/plain"), ("openmetrics", OPENMETRICS)):
        # The second scrape of each: what the caches serve, not what the first scrape built.
        for _ in range(2):
            reply = requests.get(exporter.url + "/metrics", headers={"Accept": accept},
                                 timeout=10)
        assert reply.status_code == 200
        result[name] = reply.text
    return result


def recorded(case: str, kind: str) -> str:
    with open(os.path.join(PAGES_DIR, f"standin_{case}.{kind}.txt"), encoding="utf-8") as handle:
        return handle.read()


@pytest.fixture(scope="module")
def standin():
    process, grpc_port, rest_port = start_standin()
    yield grpc_port, rest_port
    process.terminate()
    process.wait(10)


@pytest.mark.parametrize("case", sorted(CASES))
def test_page_is_the_one_served_before_the_scrape_cost_work(standin, start_exporter_with,
                                                              tmp_path, case):
    served = pages(start_exporter_with, str(tmp_path), *standin, case)
    for kind in ("text", "openmetrics"):
        expected = recorded(case, kind).splitlines()
        got = normalised(served[kind])
        assert got == expected, (case, kind, sorted(set(got) ^ set(expected))[:20])


def test_the_comparison_sees_a_changed_value():
    """The normalisation masks only what varies: a changed label or value still shows."""
    page = recorded("grpc", "text")
    line = next(line for line in page.splitlines()
                if line.startswith("tfserving_model_version_state{") and line.endswith(" 1.0"))
    changed = page.replace(line, line[:-3] + "0.0")
    assert "\n".join(normalised(changed)) != "\n".join(normalised(page))
    assert any('model="model_004"' in line for line in page.splitlines())  # unknown model
    assert any("tfserving_model_version_error" in line for line in page.splitlines())
    assert any("tfserving_request_duration_seconds_bucket" in line for line in page.splitlines())


def record() -> None:
    """Write the pages of every case (the module's docstring says when)."""
    import tempfile

    from exporter.config import load_config
    from exporter.runtime import start_exporter

    os.makedirs(PAGES_DIR, exist_ok=True)
    process, grpc_port, rest_port = start_standin()
    running = []

    class Handle:
        def __init__(self, exporter) -> None:
            self.url = f"http://127.0.0.1:{exporter.port}"

    def start(values):
        exporter = start_exporter(load_config(None, {"web.listen_address": "127.0.0.1:0",
                                                     **values}))
        running.append(exporter)
        return Handle(exporter)
    try:
        for case in CASES:
            with tempfile.TemporaryDirectory() as root:
                for kind, page in pages(start, root, grpc_port, rest_port, case).items():
                    with open(os.path.join(PAGES_DIR, f"standin_{case}.{kind}.txt"), "w",
                              encoding="utf-8") as handle:
                        handle.write("\n".join(normalised(page)) + "\n")
    finally:
        for exporter in running:
            exporter.stop()
        process.terminate()
        process.wait(10)


if __name__ == "__main__":
    record()


def test_names_escaped_with_dots_when_asked_are_escaped_in_every_family(
        standin, start_exporter_with, tmp_path):
    """prometheus_client honours ``escaping=dots`` (``_`` written ``__``); the families the
    exporter renders as text follow it too."""
    grpc_port, rest_port = standin
    exporter = start_exporter_with({
        "tfserving.grpc_address": f"127.0.0.1:{grpc_port}",
        "tfserving.rest_address": f"http://127.0.0.1:{rest_port}",
        "tfserving.model_config_file": write_models_config(str(tmp_path))})
    accept = {"Accept": "text/plain;version=1.0.0;escaping=dots"}
    text = wait_until(lambda: (lambda t: t if "tfserving__model__version__state{" in t
                               else None)(requests.get(exporter.url + "/metrics",
                                                       headers=accept, timeout=10).text),
                      timeout=30, message="escaped names")
    for family in ("tfserving__model__version__state", "tfserving__requests__total",
                   "tfserving__request__duration__seconds__bucket",
                   "tfserving__model__signature__info"):
        assert f"\n{family}{{" in text, family
    assert "\ntfserving_model_version_state{" not in text
