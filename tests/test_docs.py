"""The README documents what the code does: the config table and every exported metric."""

import os
import re

from exporter.config_docs import config_reference_markdown

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        return handle.read()


def test_readme_opens_with_the_two_setup_commands():
    first_block = re.search(r"```sh\n(.*?)```", readme(), re.S).group(1).strip().splitlines()
    assert first_block == ["pip install . && tfserving-exporter demo",
                           "pip install -e '.[test]' && python -m pytest"]


def test_ci_runs_the_readme_test_command():
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as handle:
        assert "pip install -q -e '.[test]' && python -m pytest" in handle.read()


def test_readme_config_reference_is_current():
    assert config_reference_markdown().rstrip("\n") in readme()


def test_every_exported_metric_is_documented(simulator, start_exporter_for):
    from tfserving_simulator.demo_files import STANDIN_GOLDEN_DIR
    from tests.helpers import sample_value

    exporter = start_exporter_for(simulator, canary__golden_dir=STANDIN_GOLDEN_DIR,
                                  canary__interval="100ms")
    text = exporter.metrics_until(lambda t: sample_value(
        t, "tfserving_canary_accuracy_ratio", model="image_classifier", version="1") == 1,
        message="canary results for every canary metric")
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    documented = readme()
    missing = sorted(n for n in names if n.startswith("tfserving_") and f"`{n}`" not in documented)
    assert not missing, missing


def test_every_behaviour_reference_section_pointer_resolves():
    # Code and tests cite TF Serving's behaviour as "docs/tfserving-behaviour.md §5.2" (and
    # "§2.3, §3.3" after it); each cited section must exist in that file.
    import glob
    import re

    reference = os.path.join(ROOT, "docs", "tfserving-behaviour.md")
    with open(reference, encoding="utf-8") as handle:
        sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)[. ]", handle.read(), re.M))
    cited: dict[str, list[str]] = {}
    for path in glob.glob(os.path.join(ROOT, "**", "*.*"), recursive=True):
        if not path.endswith((".py", ".md")) or path == reference or "/.git/" in path:
            continue
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        old_style = "reference " + "§"  # spelt apart so this file does not match itself
        assert old_style not in text.lower(), \
            f"{path}: cite docs/tfserving-behaviour.md and a section"
        for match in re.finditer(r"tfserving-behaviour\.md (§[\d.]+(?:, §[\d.]+)*)", text):
            for number in re.findall(r"§(\d+(?:\.\d+)?)", match.group(1)):
                cited.setdefault(number, []).append(os.path.relpath(path, ROOT))
    assert cited, "no pointers found: the pattern is wrong"
    missing = {number: where for number, where in cited.items() if number not in sections}
    assert not missing, missing
