"""/admin/circuits: keys whose plan circuit is open; reset one."""

from __future__ import annotations

from aiohttp import web

from gateway import circuit, server
from gateway.admin import http


async def list_(request: web.Request) -> web.Response:
    limit, offset = http.page_args(request)
    return http.json(await circuit.list_states(request.config_dict[server.DATABASE], limit, offset))


async def reset(request: web.Request) -> web.Response:
    key_id = http.path_id(request, "key_id")
    return http.json(await circuit.reset(request.config_dict[server.DATABASE], http.actor(request), key_id))


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/circuits", list_)
    r.add_post("/circuits/{key_id}/reset", reset)
