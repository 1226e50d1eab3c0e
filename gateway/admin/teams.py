"""/admin/teams: create, list, detail, update, delete."""

from __future__ import annotations

from aiohttp import web

from gateway import server, teams
from gateway.admin import http


async def create(request: web.Request) -> web.Response:
    spec = await http.body(request, teams.TeamCreate)
    return http.json(await teams.create(request.config_dict[server.DATABASE], http.actor(request), spec), 201)


async def list_(request: web.Request) -> web.Response:
    limit, offset = http.page_args(request)
    search = http.query_str(request, "search")
    return http.json(await teams.list_teams(request.config_dict[server.DATABASE], search, limit, offset))


async def detail(request: web.Request) -> web.Response:
    return http.json(await teams.get(request.config_dict[server.DATABASE], http.path_id(request, "team_id")))


async def update(request: web.Request) -> web.Response:
    team_id = http.path_id(request, "team_id")
    spec = await http.body(request, teams.TeamUpdate)
    return http.json(await teams.update(request.config_dict[server.DATABASE], http.actor(request), team_id, spec))


async def delete(request: web.Request) -> web.Response:
    await teams.delete(request.config_dict[server.DATABASE], http.actor(request), http.path_id(request, "team_id"))
    return web.Response(status=204)


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_post("/teams", create)
    r.add_get("/teams", list_)
    r.add_get("/teams/{team_id}", detail)
    r.add_patch("/teams/{team_id}", update)
    r.add_delete("/teams/{team_id}", delete)
