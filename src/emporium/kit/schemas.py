"""The shared schema vocabulary."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

T = TypeVar("T")


def reject_nul(value: str) -> str:
    # PostgreSQL text and JSONB cannot hold NUL; refuse it at the edge with a 422.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _invisible(char: str) -> bool:
    # Whitespace, and format characters such as U+200B ZERO WIDTH SPACE or U+FEFF, which
    # str.strip() keeps: a name of "\u200b" would pass a length check and print as nothing.
    return char.isspace() or unicodedata.category(char) == "Cf"


def trim(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # the str schema answers the wrong type with its own error
    start, end = 0, len(value)
    while start < end and _invisible(value[start]):
        start += 1
    while end > start and _invisible(value[end - 1]):
        end -= 1
    return value[start:end]


CleanStr = Annotated[str, AfterValidator(reject_nul)]
# Stack length limits on this to check them on the trimmed text: trimming runs before the
# str schema, so min_length=1 refuses "   " and "\u200b" as it refuses "".
TrimmedStr = Annotated[str, BeforeValidator(trim), AfterValidator(reject_nul)]


def error_message(error: Mapping[str, Any]) -> str:
    """A validation error's message, worded for a string where pydantic words it for any
    value: the limits stacked on ``TrimmedStr`` run after its validators, so a blank name
    would read "Value should have at least 1 item after validation, not 0"."""
    ctx = error.get("ctx") or {}
    kind = error.get("type")
    if (
        kind in ("too_short", "too_long")
        and ctx.get("field_type") == "Value"
        and isinstance(error.get("input"), str)
    ):
        limit = ctx["min_length" if kind == "too_short" else "max_length"]
        bound = "at least" if kind == "too_short" else "at most"
        return f"String should have {bound} {limit} character{'' if limit == 1 else 's'}"
    return str(error.get("msg", ""))


class Schema(BaseModel):
    # Request bodies declare their numbers and flags as StrictInt and StrictBool: the lax
    # defaults would read true as 1, "7" as 7 and "yes" as true, hiding a client's bug.
    model_config = ConfigDict(from_attributes=True)


class ListResource(Schema, Generic[T]):
    items: list[T]
    next_cursor: str | None = None
