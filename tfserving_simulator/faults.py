"""Fault injection: latency, errors, bounded hangs, noisy or NaN outputs, per model/operation."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from dataclasses import dataclass

import numpy as np

from tfserving_simulator.errors import TF_CODES, ServingError, check_json_object

log = logging.getLogger(__name__)

OPERATIONS = frozenset({"status", "metadata", "predict", "classify", "regress", "metrics_page"})
PROTOCOLS = frozenset({"rest", "grpc"})
_OUTPUT_OPERATIONS = frozenset({"predict", "classify", "regress"})
MAX_HANG_SECONDS = 600.0


class FaultConfigError(ValueError):
    """A fault rule or fault file that cannot be used."""


@dataclass(frozen=True)
class FaultRule:
    """What to inject, and where: ``None`` / empty sets match everything.

    ``protocols`` holds ``"rest"`` and/or ``"grpc"`` (compared case-insensitively). A rule with
    a ``version`` only matches requests whose version is known and equal.
    """

    model: str | None = None
    version: int | None = None
    operations: frozenset = frozenset()
    protocols: frozenset = frozenset()
    latency_seconds: float = 0
    error_code: str | None = None
    error_message: str = "injected fault"
    hang: bool = False
    output_noise: float = 0.0
    nan_outputs: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "operations", frozenset(self.operations))
        object.__setattr__(self, "protocols", frozenset(p.lower() for p in self.protocols))
        if self.operations - OPERATIONS:
            raise FaultConfigError(f"unknown operations {sorted(self.operations - OPERATIONS)}; "
                                   f"known: {sorted(OPERATIONS)}")
        if self.protocols - PROTOCOLS:
            raise FaultConfigError(f"unknown protocols {sorted(self.protocols - PROTOCOLS)}; "
                                   f"known: {sorted(PROTOCOLS)}")
        if self.error_code is not None and (self.error_code not in TF_CODES
                                            or self.error_code == "OK"):
            raise FaultConfigError(f"error_code must be a TF error code name, "
                                   f"got {self.error_code!r}")
        for name in ("latency_seconds", "output_noise"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise FaultConfigError(f"{name} must be a number >= 0, got {value!r}")
        if self.latency_seconds > MAX_HANG_SECONDS:
            raise FaultConfigError(f"latency_seconds must be at most {MAX_HANG_SECONDS}")
        if self.version is not None and (isinstance(self.version, bool)
                                         or not isinstance(self.version, int)):
            raise FaultConfigError(f"version must be an integer, got {self.version!r}")

    def matches(self, protocol: str | None, operation: str | None, model: str | None,
                version: int | None) -> bool:
        if self.model is not None and model != self.model:
            return False
        if self.version is not None and version != self.version:
            return False
        if self.operations and operation not in self.operations:
            return False
        if self.protocols and (protocol or "").lower() not in self.protocols:
            return False
        return True


_RULE_FIELDS = {field.name for field in dataclasses.fields(FaultRule)}


def rule_from_dict(raw: object) -> FaultRule:
    """A rule from its JSON form (lists for ``operations``/``protocols``); unknown keys fail."""
    try:
        values = dict(check_json_object(raw, _RULE_FIELDS, "a rule"))
    except ValueError as err:
        raise FaultConfigError(str(err)) from None
    for name in ("operations", "protocols"):
        if name in values:
            if not isinstance(values[name], list) or not all(isinstance(v, str)
                                                              for v in values[name]):
                raise FaultConfigError(f"{name} must be a list of strings")
            values[name] = frozenset(values[name])
    for name in ("hang", "nan_outputs"):
        if name in values and not isinstance(values[name], bool):
            raise FaultConfigError(f"{name} must be true or false")
    for name in ("model", "error_message"):
        if values.get(name) is not None and not isinstance(values[name], str):
            raise FaultConfigError(f"{name} must be a string")
    return FaultRule(**values)


class Faults:
    """The active fault rules; front ends call ``before_request``, servables ``transform_outputs``."""

    def __init__(self, *, max_hang_seconds: float = MAX_HANG_SECONDS, seed: int = 0) -> None:
        self._changed = threading.Condition()
        self._rules: dict[int, FaultRule] = {}
        self._next_id = 1
        self._closed = False
        self._max_hang_seconds = min(max_hang_seconds, MAX_HANG_SECONDS)
        self._rng = np.random.default_rng(seed)
        self._file_path: str | None = None
        self._file_stamp: tuple[int, int] | None = None
        self._file_rule_ids: list[int] = []
        self.last_file_error: str | None = None

    def add(self, rule: FaultRule) -> int:
        with self._changed:
            rule_id = self._next_id
            self._next_id += 1
            self._rules[rule_id] = rule
            self._changed.notify_all()
            return rule_id

    def clear(self, rule_id: int | None = None) -> None:
        """Remove one rule, or all of them; hangs waiting on removed rules end."""
        with self._changed:
            if rule_id is None:
                self._rules.clear()
                self._file_rule_ids = []
            else:
                self._rules.pop(rule_id, None)
            self._changed.notify_all()

    def rules(self) -> dict[int, FaultRule]:
        with self._changed:
            return dict(self._rules)

    def close(self) -> None:
        """Release every hang and latency wait (server stop)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def before_request(self, protocol: str, operation: str, model: str | None,
                       version: int | None = None) -> None:
        """Apply matching rules: wait out latency, hang (bounded), then raise an injected error."""
        with self._changed:
            matching = [(rule_id, rule) for rule_id, rule in self._rules.items()
                        if rule.matches(protocol, operation, model, version)]
        if not matching:
            return
        latency = sum(rule.latency_seconds for _, rule in matching)
        if latency:
            self._wait(lambda: False, latency)
        for rule_id, rule in matching:
            if rule.hang:
                self._wait(lambda rule_id=rule_id: rule_id not in self._rules,
                           self._max_hang_seconds)
        with self._changed:
            still_active = [rule for rule_id, rule in matching if rule_id in self._rules]
        for rule in still_active:
            if rule.error_code is not None:
                raise ServingError(rule.error_code, rule.error_message)

    def _wait(self, done, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        with self._changed:
            while not self._closed and not done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._changed.wait(remaining)

    def transform_outputs(self, model: str, version: int,
                          outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Add Gaussian noise to, or NaN-fill, the float outputs of matching rules."""
        with self._changed:
            rules = [rule for rule in self._rules.values()
                     if (rule.output_noise or rule.nan_outputs)
                     and self._matches_outputs(rule, model, version)]
            if not rules:
                return outputs
            transformed = {}
            for alias, array in outputs.items():
                array = np.asarray(array)
                if array.dtype.kind == "f":
                    array = array.copy()
                    for rule in rules:
                        if rule.output_noise:
                            noise = self._rng.normal(0.0, rule.output_noise, array.shape)
                            array += noise.astype(array.dtype)
                        if rule.nan_outputs:
                            array[...] = np.nan
                transformed[alias] = array
            return transformed

    @staticmethod
    def _matches_outputs(rule: FaultRule, model: str, version: int) -> bool:
        # Output faults ignore protocols (the servable does not know them) and only need an
        # inference operation among the rule's operations, if it names any.
        if rule.model is not None and rule.model != model:
            return False
        if rule.version is not None and rule.version != version:
            return False
        return not rule.operations or bool(rule.operations & _OUTPUT_OPERATIONS)

    # --- fault file (--fault_config_file) ---

    def load_file(self, path: str) -> list[int]:
        """Replace the rules from the previous file with ``{"rules": [...]}`` read from ``path``."""
        try:
            # Stamped before reading: an edit racing with the read is picked up next time.
            stamp = _file_stamp(path)
        except OSError as err:
            raise FaultConfigError(f"cannot read fault file {path}: {err}") from err
        rules = read_fault_file(path)
        with self._changed:
            for rule_id in self._file_rule_ids:
                self._rules.pop(rule_id, None)
            self._file_rule_ids = []
            for rule in rules:
                rule_id = self._next_id
                self._next_id += 1
                self._rules[rule_id] = rule
                self._file_rule_ids.append(rule_id)
            self._file_path, self._file_stamp = path, stamp
            self.last_file_error = None
            self._changed.notify_all()
            return list(self._file_rule_ids)

    def reload_file_if_changed(self) -> bool:
        """Re-read the loaded fault file when its mtime or size changed; a bad file keeps the
        old rules (logged, and kept in ``last_file_error``). True when rules were replaced."""
        with self._changed:
            path, stamp = self._file_path, self._file_stamp
        if path is None:
            return False
        try:
            if _file_stamp(path) == stamp:
                return False
            self.load_file(path)
            return True
        except (OSError, FaultConfigError) as err:
            if str(err) != self.last_file_error:
                log.warning("keeping the previous fault rules: %s", err)
            self.last_file_error = str(err)
            return False


def _file_stamp(path: str) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_mtime_ns, stat.st_size


def read_fault_file(path: str) -> list[FaultRule]:
    """Parse a fault file; errors name the file and the rule index."""
    try:
        with open(path, encoding="utf-8") as file:
            raw = json.load(file)
    except OSError as err:
        raise FaultConfigError(f"cannot read fault file {path}: {err}") from err
    except ValueError as err:
        raise FaultConfigError(f"fault file {path} is not valid JSON: {err}") from err
    if not isinstance(raw, dict) or set(raw) != {"rules"} or not isinstance(raw["rules"], list):
        raise FaultConfigError(f"fault file {path} must be a JSON object "
                               '{"rules": [...]} with no other keys')
    rules = []
    for index, entry in enumerate(raw["rules"]):
        try:
            rules.append(rule_from_dict(entry))
        except (FaultConfigError, TypeError) as err:
            raise FaultConfigError(f"fault file {path}, rule {index}: {err}") from err
    return rules
