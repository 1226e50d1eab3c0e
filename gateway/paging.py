"""Pages: every list a service returns is a slice of a larger result and says its total."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import asyncpg
import msgspec

from gateway import db, errors

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class Page(msgspec.Struct, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


def check(limit: int, offset: int) -> None:
    """Raise ValidationFailed naming `limit` or `offset` when out of range."""
    if not 1 <= limit <= MAX_LIMIT:
        raise errors.ValidationFailed("limit", f"limit must be between 1 and {MAX_LIMIT}")
    if offset < 0:
        raise errors.ValidationFailed("offset", "offset must be 0 or more")


async def fetch(
    database: db.Database, query: str, args: Sequence[Any], limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    """Run a named list query whose last two parameters are LIMIT and OFFSET and whose
    rows carry `total` (count(*) OVER ()); return the page and the total. A page past
    the end has no row to carry the total, so the first row is asked for it."""
    check(limit, offset)
    rows = await database.fetch(query, *args, limit, offset)
    if rows:
        return rows, int(rows[0]["total"])
    if offset == 0:
        return [], 0
    first = await database.fetch(query, *args, 1, 0)
    return [], int(first[0]["total"]) if first else 0
