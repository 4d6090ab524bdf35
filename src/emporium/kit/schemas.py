"""The shared schema vocabulary."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

T = TypeVar("T")


def reject_nul(value: str) -> str:
    # PostgreSQL text and JSONB cannot hold NUL; refuse it at the edge with a 422.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


CleanStr = Annotated[str, AfterValidator(reject_nul)]
# Stack length limits on this to check them on the trimmed text. Pydantic checks limits
# placed after a validator before it strips, so strip_whitespace=True with min_length=1 on
# CleanStr let "   " through and stored "".
TrimmedStr = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(reject_nul)]


class Schema(BaseModel):
    # Request bodies declare their numbers and flags as StrictInt and StrictBool: the lax
    # defaults would read true as 1, "7" as 7 and "yes" as true, hiding a client's bug.
    model_config = ConfigDict(from_attributes=True)


class ListResource(Schema, Generic[T]):
    items: list[T]
    next_cursor: str | None = None
