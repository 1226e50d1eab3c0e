"""The audit log: who changed what, when and from where. Every mutating service writes
its row through `record` on the connection of its own transaction, so a change and its
audit row commit together or not at all."""

from __future__ import annotations

import datetime as dt
import getpass
from collections.abc import Mapping
from typing import Any, Literal

import asyncpg
import msgspec

from gateway import db, paging

ActorKind = Literal["admin", "cli", "system", "anonymous"]


class Actor(msgspec.Struct, frozen=True):
    """Who is acting: an admin (by token), the CLI (by OS user), the gateway itself, or
    an anonymous caller (a failed login names the username it tried)."""

    kind: ActorKind
    name: str
    admin_id: int | None = None
    address: str | None = None


SYSTEM = Actor("system", "system")


def cli_actor() -> Actor:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers with a bare uid)
        who = "unknown"
    return Actor("cli", f"cli:{who}")


class AuditEntry(msgspec.Struct):
    id: int
    at: dt.datetime
    actor: str
    actor_kind: str
    action: str
    target_type: str
    target_id: str | None
    changes: dict[str, Any]
    client_address: str | None


def changed(spec: msgspec.Struct) -> dict[str, Any]:
    """The fields of an update spec that were given (UNSET = not given): what changes,
    and what the audit row records."""
    return {f: v for f in spec.__struct_fields__ if (v := getattr(spec, f)) is not msgspec.UNSET}


# Field values that are secrets are recorded as having been set, never as themselves.
SECRET_SET = "(set)"  # noqa: S105 - a marker, not a secret


async def record(
    conn: asyncpg.Connection,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: object,
    changes: Mapping[str, Any] | None = None,
) -> None:
    """Write one audit row on `conn` (inside the caller's transaction)."""
    await conn.execute(
        db.q("insert-audit-entry"),
        actor.kind,
        actor.name,
        actor.admin_id,
        action,
        target_type,
        None if target_id is None else str(target_id),
        msgspec.to_builtins(dict(changes or {})),
        actor.address,
    )


async def list_entries(
    database: db.Database,
    *,
    actor: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    limit: int = paging.DEFAULT_LIMIT,
    offset: int = 0,
) -> paging.Page[AuditEntry]:
    rows, total = await paging.fetch(
        database, "list-audit-entries", (actor, action, target_type, target_id, start, end), limit, offset
    )
    items = [AuditEntry(**{f: r[f] for f in AuditEntry.__struct_fields__}) for r in rows]
    return paging.Page(items=items, total=total, limit=limit, offset=offset)
