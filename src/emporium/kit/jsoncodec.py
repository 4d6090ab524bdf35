"""JSON on the hot paths, through orjson: the same text as the standard library's
compact form, several times faster to make and to read.

Keys that are not strings become strings and unknown types raise ``TypeError``, as
with :func:`json.dumps`; ``default`` turns unknown values into JSON ones, and with it
datetimes go through ``default`` too, so the text does not change with the library.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS
_WITH_DEFAULT = _OPTIONS | orjson.OPT_PASSTHROUGH_DATETIME

loads = orjson.loads


def dumps(value: Any, default: Callable[[Any], Any] | None = None) -> str:
    return dumps_bytes(value, default).decode()


def dumps_bytes(value: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    if default is None:
        return orjson.dumps(value, option=_OPTIONS)
    return orjson.dumps(value, default=default, option=_WITH_DEFAULT)
