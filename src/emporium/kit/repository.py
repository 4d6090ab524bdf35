"""Base for repositories: they build and run statements on the caller's session."""

from __future__ import annotations

from typing import Self

from sqlalchemy.ext.asyncio import AsyncSession


class Repository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> Self:
        return cls(session)
