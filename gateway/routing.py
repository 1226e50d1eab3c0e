"""Routing strategy per team, user or access key (SPEC §3): `plan_first` (the default)
or `bedrock_only`, which never calls the plan. The most specific setting wins (key, then
user, then team); the key cache resolves it with the key (`KeyContext.routing`).

`bedrock_only` needs Bedrock for every key it would apply to, so setting it where a key
has none is refused, naming the key. A key that loses its Bedrock afterwards gets a clear
500 for the operator rather than a silent plan call.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from gateway import audit, db, errors

PLAN_FIRST = "plan_first"
BEDROCK_ONLY = "bedrock_only"
STRATEGIES = (PLAN_FIRST, BEDROCK_ONLY)
INHERIT = "inherit"  # clears a setting: the key follows its user, the user its team

Scope = Literal["key", "user", "team"]


class RoutingSetting(msgspec.Struct, frozen=True):
    scope: str
    id: int
    name: str  # the key's prefix, or the user's or team's name
    routing: str | None  # None: inherited


def parse(raw: str) -> str | None:
    value = raw.strip().lower().replace("-", "_")
    if value in STRATEGIES:
        return value
    if value in (INHERIT, "none", ""):
        return None
    raise errors.InvalidRequest(f"routing must be {PLAN_FIRST}, {BEDROCK_ONLY} or {INHERIT}, not {raw!r}")


async def _target_id(database: db.Database, scope: Scope, target: str | int) -> int:
    if scope == "key":
        return int(target)
    query = "get-user-by-name" if scope == "user" else "get-team-by-name"
    row = await database.fetchrow(query, str(target))
    if row is None:
        raise errors.NotFound(f"no {scope} named {target!r}")
    return int(row["id"])


async def set_routing(
    database: db.Database, actor: audit.Actor, scope: Scope, target: str | int, routing: str | None
) -> RoutingSetting:
    """Set (or with None, clear) the routing strategy of a key (by id), user or team (by
    name), with its audit row in the same transaction."""
    if routing is not None and routing not in STRATEGIES:
        raise errors.ValidationFailed("routing", f"routing must be {PLAN_FIRST} or {BEDROCK_ONLY}, not {routing!r}")
    target_id = await _target_id(database, scope, target)
    async with database.transaction() as conn:
        if routing == BEDROCK_ONLY:
            stranded = await conn.fetch(db.q("list-keys-left-without-bedrock"), scope, target_id)
            if stranded:
                named = ", ".join(f"{r['id']} ({r['prefix']}…)" for r in stranded[:5])
                more = f" and {len(stranded) - 5} more" if len(stranded) > 5 else ""
                raise errors.ValidationFailed(
                    "routing",
                    f"cannot set {BEDROCK_ONLY} on {scope} {target}: access key {named}{more} has no Bedrock "
                    f"and {BEDROCK_ONLY} never calls the plan, so its requests would have nowhere to go; "
                    "register a Bedrock key (ccproxy keys bedrock-key ID) or allow the deployment's "
                    "credentials (ccproxy keys update ID --bedrock-default-credentials) first",
                )
        row = await conn.fetchrow(db.q(f"set-{scope}-routing"), target_id, routing)
        if row is not None:
            await audit.record(conn, actor, f"{scope}.routing", scope, target_id, {"routing": routing})
    if row is None:
        raise errors.NotFound(f"no active access key with id {target_id}")
    name = row["prefix"] + "…" if scope == "key" else row["name"]
    return RoutingSetting(scope=scope, id=int(row["id"]), name=name, routing=row["routing"])


async def get_routing(database: db.Database, scope: Scope, target_id: int) -> str | None:
    """A key's, user's or team's own setting (None: inherited), for the detail answers."""
    value = await database.fetchval(f"get-{scope}-routing", target_id)
    return str(value) if value is not None else None
