"""/admin/quota: each key's last plan quota reading and whether it is routed to Bedrock."""

from __future__ import annotations

from aiohttp import web

from gateway import quota, server, users
from gateway.admin import http


async def list_(request: web.Request) -> web.Response:
    database = request.config_dict[server.DATABASE]
    limit, offset = http.page_args(request)
    user_id = http.query_id(request, "user")
    # The admin API filters by id, like /admin/usage; the service takes the name.
    name = (await users.get(database, user_id)).name if user_id is not None else None
    return http.json(http.page_of(await quota.list_states(database, name), limit, offset))


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/quota", list_)
