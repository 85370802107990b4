"""Model names (and base paths) from TF Serving's own ``models.config``.

TF Serving has no "list models" call, so a sidecar sharing the config volume reads the same
file. It is re-read when its modification time or size changes; a file that fails to parse
keeps the last good list and is reported once.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

from google.protobuf import text_format

from exporter.files import MODEL_CONFIG_MAX_BYTES, FileReadError, read_regular_file
from exporter.textclip import clip_text
from exporter.tfserving import protos

log = logging.getLogger(__name__)


class ModelConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ConfiguredModel:
    name: str
    base_path: str


def parse_model_config(text: str, source: str = "models.config") -> list[ConfiguredModel]:
    config = protos.model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as err:
        raise ModelConfigError(f"{source}: not a text-format ModelServerConfig: {err}") from None
    if config.WhichOneof("config") == "custom_model_config":
        raise ModelConfigError(f"{source}: custom_model_config is not supported; "
                               "use model_config_list")
    return [ConfiguredModel(c.name, c.base_path) for c in config.model_config_list.config]


class ModelSource:
    """Configured model names, united with those of a models.config file when one is set."""

    def __init__(self, names: list[str], config_file: str = "") -> None:
        self._names = list(dict.fromkeys(names))
        self._config_file = config_file
        self._lock = threading.Lock()
        self._file_models: list[ConfiguredModel] = []
        self._file_stamp: tuple[int, int] | None = None
        self._last_error: str | None = None

    def _refresh(self) -> None:
        try:
            stat = os.stat(self._config_file)
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self._file_stamp:
                return
            text = read_regular_file(self._config_file, MODEL_CONFIG_MAX_BYTES).decode("utf-8")
            models = parse_model_config(text, self._config_file)
        except (OSError, UnicodeDecodeError, ModelConfigError, FileReadError) as err:
            message = clip_text(str(err))
            if message != self._last_error:
                log.warning("cannot read model config file, keeping %d known models: %s",
                            len(self._file_models), message)
                self._last_error = message
            return
        self._file_models, self._file_stamp, self._last_error = models, stamp, None
        log.info("read %d models from %s", len(models), self._config_file)

    def models(self) -> list[str]:
        with self._lock:
            if self._config_file:
                self._refresh()
            return list(dict.fromkeys(self._names + [m.name for m in self._file_models]))

    def base_paths(self) -> dict[str, str]:
        with self._lock:
            return {m.name: m.base_path for m in self._file_models}
