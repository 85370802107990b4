"""Reading the files the exporter is pointed at without trusting them.

Every file the exporter reads (its config, TF Serving's models.config, golden files and their
.npz data, the web config, TLS material) may be replaced by something hostile or broken: a FIFO
that never delivers, ``/dev/zero``, a file far larger than any real one, or a file an editor is
half-way through rewriting. ``read_regular_file`` opens without blocking, accepts only regular
files, caps the size, and (with ``consistent``) insists on a read that no writer disturbed.
"""

from __future__ import annotations

import os
import stat

# Defaults per kind of file; each is far above any real file of that kind, and low enough that
# what is parsed from it stays within the exporter's memory budget (README "Limits and
# guarantees").
CONFIG_FILE_MAX_BYTES = 1 << 20
MODEL_CONFIG_MAX_BYTES = 4 << 20
SMALL_FILE_MAX_BYTES = 1 << 20  # web config, certificates and keys

# A read that a writer disturbs is tried again this many times before it is reported.
_CONSISTENT_READ_ATTEMPTS = 3


class FileReadError(ValueError):
    """The file cannot be used. ``str()`` names the file and the reason; ``reason`` alone is
    for callers that name the file their own way."""

    def __init__(self, path: str, reason: str, too_large: bool = False) -> None:
        super().__init__(f'cannot read "{path}": {reason}')
        self.path = path
        self.reason = reason
        self.too_large = too_large


def _stamp(info: os.stat_result) -> tuple[int, int, int, int]:
    return info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns


def _open_regular(path: str) -> tuple[int, os.stat_result]:
    """An open descriptor of ``path`` and its stat, or FileReadError when it cannot be opened
    or is not a regular file."""
    # O_NONBLOCK: opening a FIFO for reading must not wait for a writer (it would hang the
    # scrape or reload that asked). It has no effect on reads of a regular file.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise FileReadError(path, err.strerror or str(err)) from None
    try:
        info = os.fstat(fd)
    except OSError as err:
        os.close(fd)
        raise FileReadError(path, err.strerror or str(err)) from None
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise FileReadError(path, _not_regular(info.st_mode))
    return fd, info


def _read_once(path: str, max_bytes: int) -> tuple[bytes, tuple, tuple]:
    fd, before = _open_regular(path)
    try:
        if before.st_size > max_bytes:
            raise FileReadError(path, f"{before.st_size} bytes, more than the limit of "
                                      f"{max_bytes}", too_large=True)
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:  # grew while being read
                raise FileReadError(path, f"more than the limit of {max_bytes} bytes",
                                    too_large=True)
        after = os.fstat(fd)
    except OSError as err:
        raise FileReadError(path, err.strerror or str(err)) from None
    finally:
        os.close(fd)
    return b"".join(chunks), _stamp(before), _stamp(after)


def _not_regular(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "Is a directory"  # as open() of a directory for reading says
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return f"not a regular file ({name})"
    return "not a regular file"


def read_regular_file(path: str, max_bytes: int, consistent: bool = False) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; FileReadError otherwise.

    With ``consistent`` the read must not overlap a write: the file's identity, size and
    times are the same before and after, and a second read gives the same bytes. A file being
    rewritten is tried again a few times, then refused: applying half a config is worse than
    keeping the running one.
    """
    for _ in range(_CONSISTENT_READ_ATTEMPTS if consistent else 1):
        data, before, after = _read_once(path, max_bytes)
        if not consistent:
            return data
        if before == after and len(data) == before[1]:
            again, before2, after2 = _read_once(path, max_bytes)
            if again == data and before2 == after2 == before:
                return data
    raise FileReadError(path, f"it changed while being read ({_CONSISTENT_READ_ATTEMPTS} "
                              "attempts); try again once it is written")


def is_readable_regular_file(path: str) -> str | None:
    """None when ``path`` opens as a regular file, else the reason (for config checks)."""
    try:
        fd, _ = _open_regular(path)
    except FileReadError as err:
        return err.reason
    os.close(fd)
    return None
