"""Usage grouped by Claude Code's attribution headers: per session
(`x-claude-code-session-id`) and per agent (`x-claude-code-agent-id`, a subagent's
requests; its parent in `x-claude-code-parent-agent-id`). Service functions for the CLI
(`ccproxy usage summary --by session|agent`), the admin API and the dashboard's user
page (recent sessions with tokens and cost)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import msgspec

from gateway import db, errors

GROUPINGS = ("session", "agent")


class Group(msgspec.Struct, frozen=True):
    """One session's or agent's totals; `group_key` is '' for requests without the header
    (for agents: the main conversation)."""

    group_key: str
    user: str
    session_id: str | None
    parent_agent_id: str | None
    requests: int
    fallback_requests: int
    error_requests: int
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    cost_usd: Decimal
    first_seen: dt.datetime
    last_seen: dt.datetime


async def summary(
    database: db.Database,
    *,
    by: str,
    since: dt.datetime,
    until: dt.datetime,
    user: str | None = None,
    limit: int = 1000,
) -> list[Group]:
    """Totals per session or agent over [since, until), most recently active first."""
    if by not in GROUPINGS:
        raise errors.InvalidRequest(f"--by must be one of {', '.join(GROUPINGS)}")
    if until <= since:
        raise errors.InvalidRequest("--until must be after --since")
    rows = await database.fetch("summarize-usage-by-attribution", by, since, until, user, limit)
    return [Group(**dict(r)) for r in rows]


async def recent_sessions(database: db.Database, user: str, *, days: int = 30, limit: int = 20) -> list[Group]:
    """A user's latest sessions with their tokens and cost (the dashboard's user page)."""
    until = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    since = until - dt.timedelta(days=days)
    groups = await summary(database, by="session", since=since, until=until, user=user, limit=limit + 1)
    return [g for g in groups if g.group_key][:limit]
