"""Finds and loads the configured golden files: one golden set per model."""

from __future__ import annotations

import glob
import os

from exporter.canary.golden import GoldenError, GoldenSet, load_golden


def golden_paths(files: tuple[str, ...] | list[str], directory: str) -> list[str]:
    """The configured files, then every ``*.json`` of the directory, without repeats."""
    paths = list(files)
    if directory:
        paths += sorted(glob.glob(os.path.join(directory, "*.json")))
    return list(dict.fromkeys(os.path.abspath(p) for p in paths))


def load_golden_sets(files, directory: str,
                     max_examples: int) -> tuple[dict[str, GoldenSet], list[str]]:
    """Golden sets by model, and every problem found (a bad file does not stop the others)."""
    sets: dict[str, GoldenSet] = {}
    problems: list[str] = []
    for path in golden_paths(files, directory):
        try:
            golden = load_golden(path)
        except GoldenError as err:
            problems.extend(err.problems)
            continue
        if golden.n_examples > max_examples:
            problems.append(f"{path}: {golden.n_examples} examples, more than "
                            f"canary.max_examples ({max_examples})")
        elif golden.model in sets:
            problems.append(f"{path}: model {golden.model!r} already has a golden set in "
                            f"{sets[golden.model].path}; one golden file per model")
        else:
            sets[golden.model] = golden
    return sets, problems
