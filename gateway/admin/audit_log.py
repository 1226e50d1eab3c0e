"""/admin/audit: the audit log, filtered and paged."""

from __future__ import annotations

from aiohttp import web

from gateway import audit, errors, server
from gateway.admin import http


async def list_(request: web.Request) -> web.Response:
    report_tz = request.config_dict[server.CONFIG].report_tz
    limit, offset = http.page_args(request)
    start, end = http.query_time(request, "start", report_tz), http.query_time(request, "end", report_tz)
    if start is not None and end is not None and end <= start:
        raise errors.ValidationFailed("end", "end must be after start")
    page = await audit.list_entries(
        request.config_dict[server.DATABASE],
        actor=http.query_str(request, "actor"),
        action=http.query_str(request, "action", 100),
        target_type=http.query_str(request, "target_type", 50),
        target_id=http.query_str(request, "target_id"),
        start=start,
        end=end,
        limit=limit,
        offset=offset,
    )
    return http.json(page)


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/audit", list_)
