"""What users read about the settings, written from their declarations in exporter/config.py:
README's configuration table and the annotated examples/config.yaml.

scripts/sync_chart_files.py writes both (``--check`` fails CI when one is stale), so a new
setting reaches them without being written down twice.
"""

from __future__ import annotations

import json
import textwrap

import yaml

from exporter.config import SCHEMA, SECTION_DOCS, Setting
from exporter.config_kinds import BOOLEAN, STRING, STRING_LIST

EXAMPLE_WIDTH = 95
EXAMPLE_HEADER = """\
# tfserving-exporter configuration: every setting, each at its default.
# Written by scripts/sync_chart_files.py from the declarations in exporter/config.py.
# Check a file with `tfserving-exporter check-config --config.file examples/config.yaml`.
# Command-line flags (shown as "flag:") override the values here. Unknown keys are errors.
# Durations are Prometheus-style: 500ms, 10s, 1m30s, 1h, 2d (units ms, s, m, h, d, w, y).
"""


def config_reference_markdown() -> str:
    """The README's configuration reference: one table row per setting."""
    lines = ["| key | type | default | flag | description |", "|---|---|---|---|---|"]
    for s in SCHEMA:
        flag = f"`{s.flag}`" if s.flag else ""
        lines.append(f"| `{s.path}` | {s.kind.doc_name} | `{s.default_text}` | {flag} | "
                     f"{s.doc.replace('|', chr(92) + '|')} |")
    return "\n".join(lines) + "\n"


def flag_usage(setting: Setting) -> str:
    """How the setting's flag is written on a command line."""
    if setting.kind is BOOLEAN:
        return f"{setting.flag} / {setting.flag.replace('--', '--no-', 1)}"
    if setting.kind is STRING_LIST:
        return f"{setting.flag} (repeatable; replaces this list)"
    return setting.flag


def _yaml_value(setting: Setting) -> str:
    if setting.kind is STRING:
        return json.dumps(setting.default)  # quoted, so "" and "host:port" read as written
    return yaml.safe_dump(setting.default, default_flow_style=True).splitlines()[0]


def _comment(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, EXAMPLE_WIDTH, initial_indent=indent + "# ",
                         subsequent_indent=indent + "# ", break_on_hyphens=False)


def config_example_yaml() -> str:
    """examples/config.yaml: every section and setting with its doc, default and flag."""
    lines = [EXAMPLE_HEADER.rstrip("\n")]
    opened: set[str] = set()
    for setting in SCHEMA:
        *sections, leaf = setting.path.split(".")
        for depth in range(len(sections)):
            path = ".".join(sections[:depth + 1])
            if path not in opened:
                opened.add(path)
                indent = "  " * depth
                if depth == 0:
                    lines.append("")
                lines += _comment(SECTION_DOCS[path], indent)
                lines.append(f"{indent}{sections[depth]}:")
        indent = "  " * len(sections)
        if not sections:
            lines.append("")
        note = setting.doc.replace("`", "")
        if setting.flag:
            note += f" flag: {flag_usage(setting)}"
        lines += _comment(note, indent)
        lines.append(f"{indent}{leaf}: {_yaml_value(setting)}")
    return "\n".join(lines) + "\n"
