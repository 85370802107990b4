"""The exporter's glibc malloc settings: applied where the environment leaves them unset."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = ("import json; from exporter.allocator import tune_allocator; "
         "print(json.dumps(tune_allocator()))")


@pytest.mark.parametrize("environment, applied", [
    ({}, {"MALLOC_ARENA_MAX": 2, "MALLOC_MMAP_THRESHOLD_": 131072}),
    ({"MALLOC_ARENA_MAX": "4"}, {"MALLOC_MMAP_THRESHOLD_": 131072}),
    ({"MALLOC_ARENA_MAX": "4", "MALLOC_MMAP_THRESHOLD_": "65536"}, {}),
])
def test_settings_the_environment_makes_are_left_alone(environment, applied):
    env = {key: value for key, value in os.environ.items()
           if key not in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_")}
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            env={**env, **environment}, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == applied
