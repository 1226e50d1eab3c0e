"""/admin/teams: create, list, detail (with its routing strategy), update, delete."""

from __future__ import annotations

import msgspec
from aiohttp import web
from msgspec import UNSET, UnsetType

from gateway import db, routing, server, teams
from gateway.admin import http


class TeamDetail(teams.Team):
    routing: str | None  # None: plan_first, the default


class TeamPatch(teams.TeamUpdate):
    routing: str | UnsetType | None = UNSET


async def _detail(database: db.Database, team_id: int) -> TeamDetail:
    team = await teams.get(database, team_id)
    return TeamDetail(**msgspec.structs.asdict(team), routing=await routing.get_routing(database, "team", team_id))


async def create(request: web.Request) -> web.Response:
    spec = await http.body(request, teams.TeamCreate)
    return http.json(await teams.create(request.config_dict[server.DATABASE], http.actor(request), spec), 201)


async def list_(request: web.Request) -> web.Response:
    limit, offset = http.page_args(request)
    search = http.query_str(request, "search")
    return http.json(await teams.list_teams(request.config_dict[server.DATABASE], search, limit, offset))


async def detail(request: web.Request) -> web.Response:
    return http.json(await _detail(request.config_dict[server.DATABASE], http.path_id(request, "team_id")))


async def update(request: web.Request) -> web.Response:
    team_id = http.path_id(request, "team_id")
    spec = await http.body(request, TeamPatch)
    await http.update_owner(request, teams, "team", team_id, spec, teams.TeamUpdate)
    return http.json(await _detail(request.config_dict[server.DATABASE], team_id))


async def delete(request: web.Request) -> web.Response:
    await teams.delete(request.config_dict[server.DATABASE], http.actor(request), http.path_id(request, "team_id"))
    return web.Response(status=204)


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_post("/teams", create)
    r.add_get("/teams", list_)
    r.add_get("/teams/{team_id}", detail)
    r.add_patch("/teams/{team_id}", update)
    r.add_delete("/teams/{team_id}", delete)
