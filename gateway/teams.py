"""Teams: a user belongs to at most one; a team may have a monthly Bedrock budget and a
model allow-list. The service the CLI uses now and the admin API will use later."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg

from gateway import db, errors

UNSET: Any = object()  # "leave as it is", distinct from None ("unlimited" / "all models")


async def create(
    database: db.Database,
    name: str,
    *,
    description: str | None = None,
    monthly_budget: Decimal | None = None,
    allowed_models: list[str] | None = None,
) -> dict[str, Any]:
    name = name.strip()
    if not name or len(name) > 200:
        raise errors.InvalidRequest("team name must be 1 to 200 characters")
    try:
        row = await database.fetchrow("create-team", name, description, monthly_budget, allowed_models)
    except asyncpg.UniqueViolationError:
        raise errors.InvalidRequest(f"a team named {name!r} already exists") from None
    assert row is not None
    return db.record_dict(row)


async def get_by_name(database: db.Database, name: str) -> dict[str, Any]:
    row = await database.fetchrow("get-team-by-name", name)
    if row is None:
        raise errors.NotFound(f"no team named {name!r}")
    return db.record_dict(row)


async def list_teams(database: db.Database) -> list[dict[str, Any]]:
    return [db.record_dict(r) for r in await database.fetch("list-teams")]


def _thresholds(values: list[int] | None) -> list[int] | None:
    if values is not None and any(not 1 <= v <= 1000 for v in values):
        raise errors.InvalidRequest("alert thresholds are percentages between 1 and 1000")
    return sorted(set(values)) if values is not None else None


async def update(
    database: db.Database,
    name: str,
    *,
    monthly_budget: Decimal | None = UNSET,
    allowed_models: list[str] | None = UNSET,
    alert_thresholds: list[int] | None = None,
) -> dict[str, Any]:
    team = await get_by_name(database, name)
    row = await database.fetchrow(
        "update-team",
        team["id"],
        monthly_budget is not UNSET,
        None if monthly_budget is UNSET else monthly_budget,
        allowed_models is not UNSET,
        None if allowed_models is UNSET else allowed_models,
        _thresholds(alert_thresholds),
    )
    assert row is not None
    return db.record_dict(row)
