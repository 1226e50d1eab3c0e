"""/admin/usage: buckets with totals and per-model costs, top users, raw events, CSV,
and totals per Claude Code session or agent."""

from __future__ import annotations

import csv
import datetime as dt
import io

from aiohttp import web

from gateway import attribution, errors, server, usage_reports, users
from gateway.admin import http


def _range(request: web.Request) -> tuple[dt.datetime, dt.datetime]:
    report_tz = request.config_dict[server.CONFIG].report_tz
    return usage_reports.resolve_range(
        report_tz,
        http.query_choice(request, "period", (*usage_reports.PERIODS, "month")),
        http.query_time(request, "start", report_tz),
        http.query_time(request, "end", report_tz),
    )


def _filters(request: web.Request, *, events: bool = False) -> usage_reports.Filters:
    return usage_reports.Filters(
        user_id=http.query_id(request, "user"),
        team_id=http.query_id(request, "team"),
        key_id=http.query_id(request, "key"),
        model=http.query_str(request, "model"),
        provider=http.query_choice(request, "provider", usage_reports.PROVIDERS),
        status=http.query_int(request, "status", None, 100, 599) if events else None,
    )


async def report(request: web.Request) -> web.Response:
    config = request.config_dict[server.CONFIG]
    start, end = _range(request)
    result = await usage_reports.report(
        request.config_dict[server.DATABASE],
        start=start,
        end=end,
        report_tz=config.report_tz,
        filters=_filters(request),
        granularity=http.query_choice(request, "granularity", usage_reports.GRANULARITIES),
        minute_rollup_days=config.minute_rollup_days,
    )
    return http.json(result)


async def top_users(request: web.Request) -> web.Response:
    start, end = _range(request)
    limit, offset = http.page_args(request, default_limit=10)
    filters = _filters(request)
    filters.user_id = filters.key_id = None  # documented filters only: team, model, provider
    page = await usage_reports.top_users(
        request.config_dict[server.DATABASE],
        start=start,
        end=end,
        report_tz=request.config_dict[server.CONFIG].report_tz,
        filters=filters,
        order_by=http.query_choice(request, "order_by", ("cost", "requests", "tokens")) or "cost",
        limit=limit,
        offset=offset,
    )
    return http.json(page)


async def events(request: web.Request) -> web.Response:
    start, end = _range(request)
    limit, offset = http.page_args(request)
    page = await usage_reports.events(
        request.config_dict[server.DATABASE],
        start=start,
        end=end,
        filters=_filters(request, events=True),
        limit=limit,
        offset=offset,
    )
    return http.json(page)


def _csv_value(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return "" if value is None else value


async def export_csv(request: web.Request) -> web.StreamResponse:
    start, end = _range(request)
    filters = _filters(request, events=True)
    filters.check()  # refuse bad filters before the 200 goes out
    response = web.StreamResponse(
        headers={"content-type": "text/csv; charset=utf-8", "content-disposition": 'attachment; filename="usage.csv"'}
    )
    await response.prepare(request)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(usage_reports.EVENT_COLUMNS)
    rows = 0
    async for event in usage_reports.export_events(
        request.config_dict[server.DATABASE], start=start, end=end, filters=filters
    ):
        writer.writerow([_csv_value(getattr(event, c)) for c in usage_reports.EVENT_COLUMNS])
        rows += 1
        if rows % 500 == 0:
            await response.write(buffer.getvalue().encode())
            buffer.seek(0)
            buffer.truncate()
    await response.write(buffer.getvalue().encode())
    await response.write_eof()
    return response


# The summary is paged from at most this many groups, most recently active first.
MAX_GROUPS = 10_000


async def summary(request: web.Request) -> web.Response:
    by = http.query_choice(request, "by", attribution.GROUPINGS)
    if by is None:
        raise errors.ValidationFailed("by", f"by is required: one of {', '.join(attribution.GROUPINGS)}")
    start, end = _range(request)
    limit, offset = http.page_args(request)
    database = request.config_dict[server.DATABASE]
    user_id = http.query_id(request, "user")
    name = (await users.get(database, user_id)).name if user_id is not None else None
    groups = await attribution.summary(database, by=by, since=start, until=end, user=name, limit=MAX_GROUPS)
    return http.json(http.page_of(groups, limit, offset))


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/usage", report)
    r.add_get("/usage/top-users", top_users)
    r.add_get("/usage/events", events)
    r.add_get("/usage/export.csv", export_csv)
    r.add_get("/usage/summary", summary)
