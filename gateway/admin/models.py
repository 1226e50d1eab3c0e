"""/admin/models: the Anthropic-name -> Bedrock-id map; set and remove a mapping; the
requested names nothing maps (served by the default model)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from gateway import model_map, server
from gateway.admin import http


class ModelPut(msgspec.Struct, forbid_unknown_fields=True):
    bedrock_model_id: str


async def list_(request: web.Request) -> web.Response:
    limit, offset = http.page_args(request)
    entries = await model_map.list_entries(request.config_dict[server.DATABASE])
    return http.json(http.page_of(entries, limit, offset))


async def put(request: web.Request) -> web.Response:
    spec = await http.body(request, ModelPut)
    entry = await model_map.set_entry(
        request.config_dict[server.DATABASE], http.actor(request), request.match_info["name"], spec.bedrock_model_id
    )
    return http.json(entry)


async def delete(request: web.Request) -> web.Response:
    database = request.config_dict[server.DATABASE]
    return http.json(await model_map.delete_entry(database, http.actor(request), request.match_info["name"]))


async def unmapped(request: web.Request) -> web.Response:
    limit, offset = http.page_args(request)
    since = http.query_time(request, "since", request.config_dict[server.CONFIG].report_tz)
    rows = await model_map.unmapped(request.config_dict[server.DATABASE], since)
    return http.json(http.page_of(rows, limit, offset))


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/models", list_)
    r.add_get("/models/unmapped", unmapped)
    r.add_put("/models/{name}", put)
    r.add_delete("/models/{name}", delete)
