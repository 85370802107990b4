"""Model names (and base paths) from TF Serving's own ``models.config``.

TF Serving has no "list models" call, so a sidecar sharing the config volume reads the same
file. It is re-read when its size or times change; a file that fails to parse keeps the last
good list and is reported once.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

from google.protobuf import text_format

from exporter.files import MODEL_CONFIG_MAX_BYTES, FileReadError, read_regular_file
from exporter.textclip import clip_text
from tfserving_wire import protos

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
    """Configured model names, united with those of a models.config file when one is set.

    The file is read when the source is made (at start and on reload) and again, in the
    background, whenever its size or times change: parsing a large text-format file takes
    seconds in Python, which a scrape cannot wait for. Scrapes use the last list read.
    """

    def __init__(self, names: list[str], config_file: str = "") -> None:
        self._names = list(dict.fromkeys(names))
        self._config_file = config_file
        self._lock = threading.Lock()
        self._file_models: list[ConfiguredModel] = []
        self._tried_stamp: tuple | None = None  # the file as it was at the last attempt
        self._refreshing = False
        self._last_error: str | None = None
        if config_file:
            self._tried_stamp = self._stamp()
            self._refresh()

    def _stamp(self) -> tuple | None:
        try:
            info = os.stat(self._config_file)
        except OSError:
            return None
        return info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns

    def _refresh(self) -> None:
        try:
            text = read_regular_file(self._config_file, MODEL_CONFIG_MAX_BYTES,
                                     consistent=True).decode("utf-8")
            if not text.strip():
                # What a rewrite that truncates first leaves for a moment: keep the last
                # list rather than drop every model from one scrape.
                raise ModelConfigError(f"{self._config_file}: empty (being rewritten?)")
            models = parse_model_config(text, self._config_file)
        except (UnicodeDecodeError, ModelConfigError, FileReadError) as err:
            message = clip_text(str(err))
            with self._lock:
                known, repeated = len(self._file_models), message == self._last_error
                self._last_error = message
            if not repeated:
                log.warning("cannot read model config file, keeping %d known models: %s",
                            known, message)
            return
        with self._lock:
            self._file_models, self._last_error = models, None
        log.info("read %d models from %s", len(models), self._config_file)

    def _refresh_in_background(self) -> None:
        try:
            self._refresh()
        finally:
            with self._lock:
                self._refreshing = False

    def _follow_file(self) -> None:
        stamp = self._stamp()
        with self._lock:
            if stamp == self._tried_stamp or self._refreshing:
                return
            self._tried_stamp, self._refreshing = stamp, True
        threading.Thread(target=self._refresh_in_background, name="models-config",
                         daemon=True).start()

    def models(self) -> list[str]:
        """The models, after looking whether the file changed (once per scrape)."""
        if self._config_file:
            self._follow_file()
        return self.current()

    def current(self) -> list[str]:
        """The models as last read, without looking at the file."""
        with self._lock:
            return list(dict.fromkeys(self._names + [m.name for m in self._file_models]))

    def base_paths(self) -> dict[str, str]:
        with self._lock:
            return {m.name: m.base_path for m in self._file_models}
