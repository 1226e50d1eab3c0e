"""Users: the service the CLI uses now and the admin API will use later."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg

from gateway import db, errors, teams


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


async def update(
    database: db.Database,
    name: str,
    *,
    monthly_budget: Decimal | None = teams.UNSET,
    allowed_models: list[str] | None = teams.UNSET,
    team: str | None = teams.UNSET,
    alert_thresholds: list[int] | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """Change a user's budget (None = unlimited), model allow-list (None = all), team
    (None = no team) or alert thresholds; fields left UNSET stay as they are."""
    user = await get_by_name(database, name)
    team_id = None
    if team is not teams.UNSET and team is not None:
        team_id = (await teams.get_by_name(database, team))["id"]
    row = await database.fetchrow(
        "update-user-limits",
        user["id"],
        monthly_budget is not teams.UNSET,
        None if monthly_budget is teams.UNSET else monthly_budget,
        allowed_models is not teams.UNSET,
        None if allowed_models is teams.UNSET else allowed_models,
        team is not teams.UNSET,
        team_id,
        teams._thresholds(alert_thresholds),
        description,
    )
    assert row is not None
    return db.record_dict(row)
