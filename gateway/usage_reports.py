"""Usage reporting, for the CLI and the admin API: buckets over time with totals and a
per-model breakdown, top users, the raw events and their export — read from the rollups
(and, for raw rows, from usage_events). The hot-path writer is `gateway/usage.py`.

Ranges are resolved here, once, for both faces: a `period` ending now, or `start`/`end`,
or by default the current month so far, in the reporting time zone.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any, Literal

import msgspec

from gateway import db, errors, paging

GRANULARITIES = ("month", "week", "day", "hour", "minute")
GROUPINGS = ("user", "key", "model", *GRANULARITIES)
PERIODS = {
    "1h": dt.timedelta(hours=1),
    "24h": dt.timedelta(hours=24),
    "7d": dt.timedelta(days=7),
    "30d": dt.timedelta(days=30),
    "90d": dt.timedelta(days=90),
}
PROVIDERS = ("plan", "bedrock", "none")
MAX_BUCKETS = 2000
AUTO_BUCKETS = 200  # the finest granularity with at most this many buckets is picked

Granularity = Literal["minute", "hour", "day", "week", "month"]


class Totals(msgspec.Struct):
    requests: int = 0
    plan_requests: int = 0
    bedrock_requests: int = 0
    fallback_requests: int = 0
    error_requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: Decimal = Decimal(0)


class Bucket(Totals, kw_only=True):
    bucket_start: dt.datetime


class ModelCost(Totals, kw_only=True):
    model: str


class UsageReport(msgspec.Struct):
    granularity: str
    start: dt.datetime
    end: dt.datetime
    report_tz: str
    buckets: list[Bucket]
    totals: Totals
    by_model: list[ModelCost]


class TopUser(msgspec.Struct):
    user_id: int
    user_name: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    share: float


class UsageEventRow(msgspec.Struct):
    request_id: uuid.UUID
    created_at: dt.datetime
    user_id: int
    user_name: str
    access_key_id: int
    access_key_prefix: str
    endpoint: str
    provider: str
    is_fallback: bool
    model: str | None
    upstream_model: str | None
    status: int
    error_class: str | None
    stream: bool
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_creation_5m_tokens: int
    cache_creation_1h_tokens: int
    cache_read_input_tokens: int
    cost_usd: Decimal
    latency_ms: float
    ttfb_ms: float | None
    session_id: str | None


EVENT_COLUMNS = UsageEventRow.__struct_fields__


class Filters(msgspec.Struct, kw_only=True):
    """What every report may be narrowed to (None = any)."""

    user_id: int | None = None
    team_id: int | None = None
    key_id: int | None = None
    model: str | None = None
    provider: str | None = None
    status: int | None = None

    def check(self) -> None:
        if self.provider is not None and self.provider not in PROVIDERS:
            raise errors.ValidationFailed("provider", f"provider must be one of {', '.join(PROVIDERS)}")
        if self.status is not None and not 100 <= self.status <= 599:
            raise errors.ValidationFailed("status", "status is an HTTP status between 100 and 599")
        if self.model is not None and len(self.model) > 200:
            raise errors.ValidationFailed("model", "model is at most 200 characters")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- ranges ----------------------------------------------------------------------------------


def parse_moment(raw: str, zone: zoneinfo.ZoneInfo, field: str) -> dt.datetime:
    """An ISO 8601 date or date-time; without an offset it is in the reporting zone."""
    try:
        value = dt.datetime.fromisoformat(raw.strip())
    except ValueError:
        raise errors.ValidationFailed(field, f"{raw!r} is not a date or date-time (YYYY-MM-DD[THH:MM])") from None
    return value if value.tzinfo else value.replace(tzinfo=zone)


def resolve_range(
    report_tz: str,
    period: str | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    *,
    at: dt.datetime | None = None,
) -> tuple[dt.datetime, dt.datetime]:
    """The range a report covers: `period` ending now, or [start, end) (end defaults to
    now), or by default the current month so far in the reporting zone."""
    zone = zoneinfo.ZoneInfo(report_tz)
    moment = at or now()
    if period is not None:
        if start is not None or end is not None:
            raise errors.ValidationFailed("period", "give either period or start/end, not both")
        if period == "month":
            return month_start(moment, zone), moment
        if period not in PERIODS:
            raise errors.ValidationFailed("period", f"period must be one of {', '.join([*PERIODS, 'month'])}")
        return moment - PERIODS[period], moment
    if start is None:
        if end is not None:
            raise errors.ValidationFailed("start", "end needs a start")
        return month_start(moment, zone), moment
    end = end or moment
    if end <= start:
        raise errors.ValidationFailed("end", "end must be after start")
    return start, end


def month_start(moment: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    return moment.astimezone(zone).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def floor(moment: dt.datetime, granularity: str, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """The start of the bucket holding `moment`, as the rollups compute it (date_trunc in
    the reporting zone)."""
    local = moment.astimezone(zone).replace(second=0, microsecond=0)
    if granularity == "minute":
        return local
    local = local.replace(minute=0)
    if granularity == "hour":
        return local
    local = local.replace(hour=0)
    if granularity == "day":
        return local
    if granularity == "week":
        return (local - dt.timedelta(days=local.weekday())).replace(tzinfo=zone)
    return local.replace(day=1)


def step(moment: dt.datetime, granularity: str, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """The next bucket start (local wall time for days and longer, so DST days are whole)."""
    if granularity == "minute":
        return (moment.astimezone(dt.UTC) + dt.timedelta(minutes=1)).astimezone(zone)
    if granularity == "hour":
        return (moment.astimezone(dt.UTC) + dt.timedelta(hours=1)).astimezone(zone)
    local = moment.astimezone(zone).replace(tzinfo=None)
    if granularity == "day":
        local += dt.timedelta(days=1)
    elif granularity == "week":
        local += dt.timedelta(days=7)
    else:
        local = (local.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return local.replace(tzinfo=zone)


def ceil(moment: dt.datetime, granularity: str, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    start = floor(moment, granularity, zone)
    return start if start == moment else step(start, granularity, zone)


def _bucket_count(start: dt.datetime, end: dt.datetime, granularity: str) -> float:
    approx = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400, "month": 30 * 86400}
    return (end - start).total_seconds() / approx[granularity]


def pick_bucket_granularity(start: dt.datetime, end: dt.datetime) -> str:
    for granularity in ("minute", "hour", "day", "week", "month"):
        if _bucket_count(start, end, granularity) <= AUTO_BUCKETS:
            return granularity
    return "month"


# --- the reports -----------------------------------------------------------------------------


async def report(
    database: db.Database,
    *,
    start: dt.datetime,
    end: dt.datetime,
    report_tz: str,
    filters: Filters,
    granularity: str | None = None,
    minute_rollup_days: int = 14,
) -> UsageReport:
    """Buckets over [start, end) widened to whole buckets, with totals and per-model costs."""
    filters.check()
    zone = zoneinfo.ZoneInfo(report_tz)
    if granularity is None:
        granularity = pick_bucket_granularity(start, end)
    elif granularity not in GRANULARITIES:
        raise errors.ValidationFailed("granularity", f"granularity must be one of {', '.join(GRANULARITIES)}")
    first, last = floor(start, granularity, zone), ceil(end, granularity, zone)
    if _bucket_count(first, last, granularity) > MAX_BUCKETS:
        raise errors.ValidationFailed(
            "granularity", f"more than {MAX_BUCKETS} {granularity} buckets; choose a coarser granularity"
        )
    if granularity == "minute" and first < now() - dt.timedelta(days=minute_rollup_days):
        raise errors.ValidationFailed(
            "granularity", f"minute buckets are kept {minute_rollup_days} days; choose hour or coarser"
        )
    where = (filters.user_id, filters.team_id, filters.key_id, filters.model, filters.provider)
    rows = await database.fetch("report-usage-buckets", granularity, first, last, report_tz, *where)
    buckets = [db.as_struct(Bucket, r) for r in rows]
    by_model = [
        db.as_struct(ModelCost, r)
        for r in await database.fetch("report-usage-by-model", granularity, first, last, *where)
    ]
    totals = Totals()
    for field in Totals.__struct_fields__:
        setattr(totals, field, sum((getattr(b, field) for b in buckets), getattr(totals, field)))
    return UsageReport(
        granularity=granularity,
        start=first,
        end=last,
        report_tz=report_tz,
        buckets=buckets,
        totals=totals,
        by_model=by_model,
    )


async def top_users(
    database: db.Database,
    *,
    start: dt.datetime,
    end: dt.datetime,
    report_tz: str,
    filters: Filters,
    order_by: str = "cost",
    limit: int = 10,
    offset: int = 0,
) -> paging.Page[TopUser]:
    """Users ranked over [start, end) widened to whole hours (the finest rollup kept forever)."""
    filters.check()
    if order_by not in ("cost", "requests", "tokens"):
        raise errors.ValidationFailed("order_by", "order_by must be cost, requests or tokens")
    zone = zoneinfo.ZoneInfo(report_tz)
    first, last = floor(start, "hour", zone), ceil(end, "hour", zone)
    args = ("hour", first, last, filters.team_id, filters.model, filters.provider, order_by)
    rows, total = await paging.fetch(database, "report-top-users", args, limit, offset)
    return paging.Page(items=[db.as_struct(TopUser, r) for r in rows], total=total, limit=limit, offset=offset)


def _event_args(start: dt.datetime | None, end: dt.datetime | None, filters: Filters) -> tuple[Any, ...]:
    filters.check()
    return (
        start,
        end,
        filters.user_id,
        filters.team_id,
        filters.key_id,
        filters.model,
        filters.provider,
        filters.status,
    )


async def events(
    database: db.Database,
    *,
    start: dt.datetime | None,
    end: dt.datetime | None,
    filters: Filters,
    limit: int = paging.DEFAULT_LIMIT,
    offset: int = 0,
) -> paging.Page[UsageEventRow]:
    """The raw usage rows in [start, end) (None = open-ended), newest first."""
    rows, total = await paging.fetch(database, "list-usage-events", _event_args(start, end, filters), limit, offset)
    return paging.Page(items=[db.as_struct(UsageEventRow, r) for r in rows], total=total, limit=limit, offset=offset)


async def export_events(
    database: db.Database, *, start: dt.datetime | None, end: dt.datetime | None, filters: Filters
) -> AsyncIterator[UsageEventRow]:
    """Every row `events` would page through, streamed from a server-side cursor."""
    args = _event_args(start, end, filters)
    async with database.transaction() as conn:
        async for record in conn.cursor(db.q("export-usage-events"), *args, prefetch=500):
            yield db.as_struct(UsageEventRow, record)


async def recent(database: db.Database, limit: int = 20, user_id: int | None = None) -> list[UsageEventRow]:
    """The latest events, newest first (`ccproxy usage recent`)."""
    page = await events(database, start=None, end=None, filters=Filters(user_id=user_id), limit=limit)
    return page.items


# --- the CLI's grouped summary ------------------------------------------------------------------


def _aligned(moment: dt.datetime, granularity: str) -> bool:
    if moment.second or moment.microsecond:
        return False
    if granularity == "minute":
        return True
    if moment.minute:
        return False
    if granularity == "hour":
        return True
    if moment.hour:
        return False
    if granularity == "day":
        return True
    if granularity == "week":
        return moment.weekday() == 0
    return moment.day == 1


def pick_granularity(since: dt.datetime, until: dt.datetime, by: str) -> str:
    """The coarsest rollup whose buckets tile [since, until) exactly (times in the
    reporting zone), so totals from rollups equal the sum of the events."""
    if by in GRANULARITIES:
        if not (_aligned(since, by) and _aligned(until, by)):
            raise errors.ValidationFailed("by", f"--by {by} needs --since and --until on {by} boundaries")
        return by
    for granularity in ("month", "day", "hour", "minute"):
        if _aligned(since, granularity) and _aligned(until, granularity):
            return granularity
    raise errors.ValidationFailed("since", "--since and --until must be whole minutes")


class SummaryGroup(msgspec.Struct):
    group_key: str | None
    requests: int
    fallback_requests: int
    error_requests: int
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    cost_usd: Decimal


class SummaryTotals(msgspec.Struct):
    requests: int = 0
    fallback_requests: int = 0
    error_requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: Decimal = Decimal(0)


class Summary(msgspec.Struct):
    by: str
    granularity: str
    since: str
    until: str
    report_tz: str
    groups: list[SummaryGroup]
    totals: SummaryTotals


def default_summary_range(report_tz: str, at: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """This month so far, to the end of the current hour (whole hours tile it)."""
    zone = zoneinfo.ZoneInfo(report_tz)
    local_now = (at or now()).astimezone(zone)
    next_hour = local_now.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    return month_start(local_now, zone), next_hour


async def summary(
    database: db.Database,
    *,
    by: str,
    since: dt.datetime | None,
    until: dt.datetime | None,
    report_tz: str,
    user: str | None = None,
    minute_rollup_days: int = 14,
) -> Summary:
    """Usage totals grouped by user, key, model or time bucket, read from the rollups.
    `since`/`until` are aware datetimes (None: this month to the end of this hour);
    alignment is judged in the reporting zone."""
    if by not in GROUPINGS:
        raise errors.ValidationFailed("by", f"--by must be one of {', '.join(GROUPINGS)}")
    default_since, default_until = default_summary_range(report_tz)
    since, until = since or default_since, until or default_until
    if until <= since:
        raise errors.ValidationFailed("until", "--until must be after --since")
    zone = zoneinfo.ZoneInfo(report_tz)
    granularity = pick_granularity(since.astimezone(zone), until.astimezone(zone), by)
    if granularity == "minute" and since < now() - dt.timedelta(days=minute_rollup_days):
        raise errors.ValidationFailed(
            "since",
            f"minute rollups are kept {minute_rollup_days} days; use hour-aligned --since/--until for older ranges",
        )
    group = "bucket" if by in GRANULARITIES else by
    rows = await database.fetch("summarize-usage", granularity, since, until, group, report_tz, user)
    groups = [db.as_struct(SummaryGroup, r) for r in rows]
    totals = SummaryTotals()
    for field in SummaryTotals.__struct_fields__:
        setattr(totals, field, sum((getattr(g, field) for g in groups), getattr(totals, field)))
    return Summary(
        by=by,
        granularity=granularity,
        since=since.isoformat(),
        until=until.isoformat(),
        report_tz=report_tz,
        groups=groups,
        totals=totals,
    )
