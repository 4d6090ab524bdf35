"""The server's secret key: keys the fingerprints of requests that carry card numbers.

``EMPORIUM_SECRET_KEY`` sets it; every process and machine serving the same database
must share it. Unset (a development setup on one machine), the key is generated once
into ``secret_key`` under the data directory and read from there by every process.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from emporium.config import Settings

FILE_NAME = "secret_key"
MIN_LENGTH = 32


def secret_key(settings: Settings) -> bytes:
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    return _load_or_create(settings.data_dir.resolve() / FILE_NAME)


def _load_or_create(path: Path) -> bytes:
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside, then linked into place: a process starting beside this one reads
    # either no file or the whole key, and the first link wins.
    tmp = path.with_name(f".{FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process linked first
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> bytes:
    key = path.read_text(encoding="utf-8").strip()
    if len(key) < MIN_LENGTH:
        raise RuntimeError(f"{path} holds no usable secret key; remove it to make a new one")
    return key.encode()
