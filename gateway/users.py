"""Users: the service the CLI and the admin API share — create, list, update, budget,
deactivate (revokes every key; no way back) and soft delete (hidden, name freed, usage
kept). Every write runs in one transaction with its audit row."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal
from typing import Literal

import asyncpg
import msgspec
from msgspec import UNSET, UnsetType

from gateway import audit, budget_rules, db, errors, limits, paging


class User(msgspec.Struct):
    id: int
    name: str
    description: str | None
    status: str
    team_id: int | None
    team: str | None
    monthly_budget_usd: Decimal | None
    alert_thresholds: list[int]
    allowed_models: list[str] | None
    active_keys: int
    created_at: dt.datetime
    deactivated_at: dt.datetime | None


class UserCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    description: str | None = None
    team_id: int | None = None
    monthly_budget_usd: Decimal | None = None
    alert_thresholds: list[int] | None = None
    allowed_models: list[str] | None = None


class UserUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields left UNSET stay as they are; None clears (no team, unlimited, all models)."""

    name: str | UnsetType = UNSET
    description: str | UnsetType | None = UNSET
    team_id: int | UnsetType | None = UNSET
    monthly_budget_usd: Decimal | UnsetType | None = UNSET
    alert_thresholds: list[int] | UnsetType = UNSET
    allowed_models: list[str] | UnsetType | None = UNSET


class TeamBudget(msgspec.Struct):
    id: int
    name: str
    monthly_budget_usd: Decimal | None
    spent_usd: Decimal
    remaining_usd: Decimal | None


class Budget(msgspec.Struct):
    user_id: int
    monthly_budget_usd: Decimal | None
    alert_thresholds: list[int]
    spent_usd: Decimal
    remaining_usd: Decimal | None
    period_start: dt.datetime
    resets_at: dt.datetime
    team: TeamBudget | None


class BudgetUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    monthly_budget_usd: Decimal | None
    alert_thresholds: list[int] | UnsetType = UNSET


Status = Literal["active", "inactive"]


def _user(row: asyncpg.Record) -> User:
    return db.as_struct(User, row)


async def get(database: db.Database, user_id: int) -> User:
    row = await database.fetchrow("get-user", user_id)
    if row is None:
        raise errors.NotFound(f"no user with id {user_id}")
    return _user(row)


async def get_by_name(database: db.Database, name: str) -> User:
    row = await database.fetchrow("get-user-by-name", name)
    if row is None:
        raise errors.NotFound(f"no user named {name!r}")
    return _user(row)


async def list_users(
    database: db.Database,
    search: str | None = None,
    limit: int = paging.DEFAULT_LIMIT,
    offset: int = 0,
    *,
    team_id: int | None = None,
    status: str | None = None,
) -> paging.Page[User]:
    if status is not None and status not in ("active", "inactive"):
        raise errors.ValidationFailed("status", "status must be active or inactive")
    rows, total = await paging.fetch(database, "list-users", (search, team_id, status), limit, offset)
    return paging.Page(items=[_user(r) for r in rows], total=total, limit=limit, offset=offset)


async def _check_team(database: db.Database, team_id: int | None) -> None:
    if team_id is not None and await database.fetchrow("get-team", team_id) is None:
        raise errors.ValidationFailed("team_id", f"no team with id {team_id}")


async def create(database: db.Database, actor: audit.Actor, spec: UserCreate) -> User:
    name = budget_rules.name("name", spec.name, "user")
    values = {
        "name": name,
        "description": budget_rules.description(spec.description),
        "team_id": spec.team_id,
        "monthly_budget_usd": budget_rules.budget(spec.monthly_budget_usd),
        "alert_thresholds": None if spec.alert_thresholds is None else budget_rules.thresholds(spec.alert_thresholds),
        "allowed_models": budget_rules.models(spec.allowed_models),
    }
    await _check_team(database, spec.team_id)
    try:
        async with database.transaction() as conn:
            user_id = await conn.fetchval(db.q("create-user"), *values.values())
            await audit.record(conn, actor, "user.create", "user", user_id, values)
    except asyncpg.UniqueViolationError:
        raise errors.Conflict(f"a user named {name!r} already exists") from None
    except asyncpg.ForeignKeyViolationError:  # the team was deleted a moment ago
        raise errors.ValidationFailed("team_id", f"no team with id {spec.team_id}") from None
    return await get(database, user_id)


async def update(database: db.Database, actor: audit.Actor, user_id: int, spec: UserUpdate) -> User:
    changes = audit.changed(spec)
    if not changes:
        raise errors.ValidationFailed(None, "nothing to update")
    changes.update(budget_rules.owner_changes(spec, "user"))
    if not isinstance(spec.team_id, UnsetType):
        await _check_team(database, spec.team_id)
    args: list[object] = [user_id]
    for field in ("name", "description", "team_id", "monthly_budget_usd", "alert_thresholds", "allowed_models"):
        args += [field in changes, changes.get(field)]
    try:
        async with database.transaction() as conn:
            if await conn.fetchval(db.q("update-user"), *args) is None:
                raise errors.NotFound(f"no user with id {user_id}")
            await audit.record(conn, actor, "user.update", "user", user_id, changes)
    except asyncpg.UniqueViolationError:
        raise errors.Conflict(f"a user named {changes['name']!r} already exists") from None
    except asyncpg.ForeignKeyViolationError:
        raise errors.ValidationFailed("team_id", f"no team with id {changes['team_id']}") from None
    return await get(database, user_id)


async def deactivate(database: db.Database, actor: audit.Actor, user_id: int) -> User:
    """Deactivate a user and revoke all their keys; the NOTIFY the UPDATEs cause drops
    them from every running gateway's cache within milliseconds. There is no reactivation."""
    async with database.transaction() as conn:
        if await conn.fetchval(db.q("deactivate-user"), user_id) is None:
            current = await conn.fetchrow(db.q("get-user"), user_id)
            if current is None:
                raise errors.NotFound(f"no user with id {user_id}")
            raise errors.Conflict(f"user {current['name']!r} is already {current['status']}")
        revoked = [r["id"] for r in await conn.fetch(db.q("revoke-user-keys"), user_id)]
        await audit.record(
            conn, actor, "user.deactivate", "user", user_id, {"status": "inactive", "revoked_keys": revoked}
        )
    return await get(database, user_id)


async def delete(database: db.Database, actor: audit.Actor, user_id: int) -> None:
    """Soft delete: revoke every key, hide the user from lists, free the name; the usage
    rows stay (they keep the user id)."""
    async with database.transaction() as conn:
        if await conn.fetchval(db.q("delete-user"), user_id) is None:
            raise errors.NotFound(f"no user with id {user_id}")
        revoked = [r["id"] for r in await conn.fetch(db.q("revoke-user-keys"), user_id)]
        await audit.record(conn, actor, "user.delete", "user", user_id, {"status": "deleted", "revoked_keys": revoked})


def _remaining(budget: Decimal | None, spent: Decimal) -> Decimal | None:
    return None if budget is None else max(Decimal(0), budget - spent).quantize(Decimal("0.000001"))


async def get_budget(database: db.Database, user_id: int, report_tz: str) -> Budget:
    """The user's (and their team's) monthly budget and month-to-date Bedrock spend,
    from the month rollups (so events not yet flushed are not counted)."""
    user = await get(database, user_id)
    start = limits.month_start(dt.datetime.now(dt.UTC), zoneinfo.ZoneInfo(report_tz))
    spent = Decimal(await database.fetchval("get-user-month-spend", user_id, start))
    team = None
    if user.team_id is not None:
        row = await database.fetchrow("get-team", user.team_id)
        if row is not None:
            team_spent = Decimal(await database.fetchval("get-team-month-spend", user.team_id, start))
            team = TeamBudget(
                id=row["id"],
                name=row["name"],
                monthly_budget_usd=row["monthly_budget_usd"],
                spent_usd=team_spent,
                remaining_usd=_remaining(row["monthly_budget_usd"], team_spent),
            )
    return Budget(
        user_id=user.id,
        monthly_budget_usd=user.monthly_budget_usd,
        alert_thresholds=user.alert_thresholds,
        spent_usd=spent,
        remaining_usd=_remaining(user.monthly_budget_usd, spent),
        period_start=start,
        resets_at=limits.next_month(start),
        team=team,
    )


async def set_budget(
    database: db.Database, actor: audit.Actor, user_id: int, spec: BudgetUpdate, report_tz: str
) -> Budget:
    await update(
        database,
        actor,
        user_id,
        UserUpdate(monthly_budget_usd=spec.monthly_budget_usd, alert_thresholds=spec.alert_thresholds),
    )
    return await get_budget(database, user_id, report_tz)
