"""Users: the service the CLI uses now and the admin API will use later."""

from __future__ import annotations

from typing import Any

import asyncpg

from gateway import db, errors


async def create(database: db.Database, name: str, description: str | None = None) -> dict[str, Any]:
    name = name.strip()
    if not name or len(name) > 200:
        raise errors.InvalidRequest("user name must be 1 to 200 characters")
    try:
        row = await database.fetchrow("create-user", name, description)
    except asyncpg.UniqueViolationError:
        raise errors.InvalidRequest(f"a user named {name!r} already exists") from None
    assert row is not None
    return db.record_dict(row)


async def get_by_name(database: db.Database, name: str) -> dict[str, Any]:
    row = await database.fetchrow("get-user-by-name", name)
    if row is None:
        raise errors.NotFound(f"no user named {name!r}")
    return db.record_dict(row)


async def list_users(
    database: db.Database, search: str | None = None, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    rows = await database.fetch("list-users", search, limit, offset)
    return [db.record_dict(r) for r in rows]
