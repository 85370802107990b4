"""Model server configuration: ModelConfig / VersionPolicy and the text-format parser."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Iterable

from google.protobuf import text_format

from tfserving_simulator.errors import ServingError
from tfserving_wire import protos


@dataclass(frozen=True)
class VersionPolicy:
    """``model_version_policy``: which discovered versions are aspired (to be served)."""

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("latest", "all", "specific"):
            raise ValueError(f"unknown version policy {self.kind!r}")
        # TF Serving treats latest { num_versions: 0 } as 1.
        object.__setattr__(self, "num_versions", max(1, int(self.num_versions)))
        object.__setattr__(self, "versions", tuple(sorted({int(v) for v in self.versions})))

    @classmethod
    def latest(cls, num_versions: int = 1) -> "VersionPolicy":
        return cls("latest", num_versions)

    @classmethod
    def all(cls) -> "VersionPolicy":
        return cls("all")

    @classmethod
    def specific(cls, versions: Iterable[int]) -> "VersionPolicy":
        return cls("specific", versions=tuple(versions))

    def aspired(self, discovered: Iterable[int]) -> set[int]:
        versions = set(discovered)
        if self.kind == "all":
            return versions
        if self.kind == "specific":
            return versions & set(self.versions)
        return set(sorted(versions, reverse=True)[: self.num_versions])


@dataclass(frozen=True)
class ModelConfig:
    """One ``config`` entry of a ``model_config_list``."""

    name: str
    base_path: str
    policy: VersionPolicy = field(default_factory=VersionPolicy.latest)
    version_labels: dict[str, int] = field(default_factory=dict)
    platform: str = "tensorflow"


def validate_model_configs(models: Iterable[ModelConfig]) -> list[ModelConfig]:
    """TF Serving's ModelConfigList checks (unique names, absolute base paths, platform)."""
    models = list(models)
    seen: set[str] = set()
    for model in models:
        if not model.name:
            raise ServingError("INVALID_ARGUMENT", "Model name must not be empty")
        if model.name in seen:
            raise ServingError("INVALID_ARGUMENT",
                               f"Illegal to list model {model.name} multiple times in config list")
        seen.add(model.name)
        if not (posixpath.isabs(model.base_path) or "://" in model.base_path):
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Expected model {model.name} to have an absolute path or URI; instead has "
                f"relative path {model.base_path}")
        if model.platform not in ("", "tensorflow"):
            raise ServingError("INVALID_ARGUMENT",
                               f"Model {model.name} requested unsupported platform "
                               f"{model.platform}; the simulator serves tensorflow models only")
    return models


def model_configs_from_proto(config) -> list[ModelConfig]:
    """ModelConfigs from a ``ModelServerConfig`` message (also used by HandleReloadConfigRequest)."""
    if config.WhichOneof("config") != "model_config_list":
        raise ServingError(
            "INVALID_ARGUMENT",
            "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
            "ModelConfigList is currently supported")
    models = []
    for entry in config.model_config_list.config:
        policy_proto = entry.model_version_policy
        choice = policy_proto.WhichOneof("policy_choice")
        if choice == "all":
            policy = VersionPolicy.all()
        elif choice == "specific":
            policy = VersionPolicy.specific(policy_proto.specific.versions)
        elif choice == "latest":
            policy = VersionPolicy.latest(policy_proto.latest.num_versions)
        else:
            policy = VersionPolicy.latest()
        models.append(ModelConfig(entry.name, entry.base_path, policy,
                                  dict(entry.version_labels), entry.model_platform))
    return validate_model_configs(models)


def parse_model_config_text(text: str) -> list[ModelConfig] | None:
    """Parse a text-format ``ModelServerConfig`` (``--model_config_file``); None when it sets
    no config at all, which ServerCore::ReloadConfig takes as "no action" (an empty
    ``model_config_list {}`` is a list without models, which unloads them all)."""
    config = protos.model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as err:
        raise ServingError("INVALID_ARGUMENT",
                           f"Invalid protobuf file: ModelServerConfig: {err}") from err
    if config.WhichOneof("config") is None:
        return None
    return model_configs_from_proto(config)
