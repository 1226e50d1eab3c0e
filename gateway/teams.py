"""Teams: a user belongs to at most one; a team may have a monthly Bedrock budget, alert
thresholds and a model allow-list. The service the CLI and the admin API share."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import asyncpg
import msgspec
from msgspec import UNSET, UnsetType

from gateway import audit, budget_rules, db, errors, paging


class Team(msgspec.Struct):
    id: int
    name: str
    description: str | None
    monthly_budget_usd: Decimal | None
    alert_thresholds: list[int]
    allowed_models: list[str] | None
    members: int
    created_at: dt.datetime


class TeamCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    description: str | None = None
    monthly_budget_usd: Decimal | None = None
    alert_thresholds: list[int] | None = None
    allowed_models: list[str] | None = None


class TeamUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields left UNSET stay as they are; None clears (unlimited, all models)."""

    name: str | UnsetType = UNSET
    description: str | UnsetType | None = UNSET
    monthly_budget_usd: Decimal | UnsetType | None = UNSET
    alert_thresholds: list[int] | UnsetType = UNSET
    allowed_models: list[str] | UnsetType | None = UNSET


def _team(row: asyncpg.Record) -> Team:
    return db.as_struct(Team, row)


async def get(database: db.Database, team_id: int) -> Team:
    row = await database.fetchrow("get-team", team_id)
    if row is None:
        raise errors.NotFound(f"no team with id {team_id}")
    return _team(row)


async def get_by_name(database: db.Database, name: str) -> Team:
    row = await database.fetchrow("get-team-by-name", name)
    if row is None:
        raise errors.NotFound(f"no team named {name!r}")
    return _team(row)


async def list_teams(
    database: db.Database, search: str | None = None, limit: int = paging.DEFAULT_LIMIT, offset: int = 0
) -> paging.Page[Team]:
    rows, total = await paging.fetch(database, "list-teams", (search,), limit, offset)
    return paging.Page(items=[_team(r) for r in rows], total=total, limit=limit, offset=offset)


async def create(database: db.Database, actor: audit.Actor, spec: TeamCreate) -> Team:
    name = budget_rules.name("name", spec.name, "team")
    values = {
        "name": name,
        "description": budget_rules.description(spec.description),
        "monthly_budget_usd": budget_rules.budget(spec.monthly_budget_usd),
        "alert_thresholds": None if spec.alert_thresholds is None else budget_rules.thresholds(spec.alert_thresholds),
        "allowed_models": budget_rules.models(spec.allowed_models),
    }
    try:
        async with database.transaction() as conn:
            team_id = await conn.fetchval(db.q("create-team"), *values.values())
            await audit.record(conn, actor, "team.create", "team", team_id, values)
    except asyncpg.UniqueViolationError:
        raise errors.Conflict(f"a team named {name!r} already exists") from None
    return await get(database, team_id)


async def update(database: db.Database, actor: audit.Actor, team_id: int, spec: TeamUpdate) -> Team:
    changes = audit.changed(spec)
    if not changes:
        raise errors.ValidationFailed(None, "nothing to update")
    changes.update(budget_rules.owner_changes(spec, "team"))
    args: list[object] = [team_id]
    for field in ("name", "description", "monthly_budget_usd", "alert_thresholds", "allowed_models"):
        args += [field in changes, changes.get(field)]
    try:
        async with database.transaction() as conn:
            if await conn.fetchval(db.q("update-team"), *args) is None:
                raise errors.NotFound(f"no team with id {team_id}")
            await audit.record(conn, actor, "team.update", "team", team_id, changes)
    except asyncpg.UniqueViolationError:
        raise errors.Conflict(f"a team named {changes['name']!r} already exists") from None
    return await get(database, team_id)


async def delete(database: db.Database, actor: audit.Actor, team_id: int) -> None:
    """Delete a team; its members stay, without a team."""
    async with database.transaction() as conn:
        await conn.execute(db.q("clear-team-members"), team_id)
        if await conn.fetchval(db.q("delete-team"), team_id) is None:
            raise errors.NotFound(f"no team with id {team_id}")
        await audit.record(conn, actor, "team.delete", "team", team_id)
