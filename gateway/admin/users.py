"""/admin/users: create, list, detail (with its routing strategy and its keys' quota),
update, soft delete, deactivate, budget, keys, recent sessions."""

from __future__ import annotations

import msgspec
from aiohttp import web
from msgspec import UNSET, UnsetType

from gateway import attribution, db, keys, quota, routing, server, users
from gateway.admin import http

# Sessions are paged from at most this many of the user's latest (the service's cap).
MAX_SESSIONS = 1000


class UserDetail(users.User):
    routing: str | None  # the user's own strategy; None: it follows its team
    quota: list[quota.QuotaView]  # each of the user's keys the plan reported a quota for


class UserPatch(users.UserUpdate):
    routing: str | UnsetType | None = UNSET


async def _detail(database: db.Database, user_id: int) -> UserDetail:
    user = await users.get(database, user_id)
    return UserDetail(
        **msgspec.structs.asdict(user),
        routing=await routing.get_routing(database, "user", user_id),
        quota=await quota.list_states(database, user.name),
    )


async def create(request: web.Request) -> web.Response:
    spec = await http.body(request, users.UserCreate)
    user = await users.create(request.config_dict[server.DATABASE], http.actor(request), spec)
    return http.json(user, 201)


async def list_(request: web.Request) -> web.Response:
    limit, offset = http.page_args(request)
    page = await users.list_users(
        request.config_dict[server.DATABASE],
        http.query_str(request, "search"),
        limit,
        offset,
        team_id=http.query_id(request, "team"),
        status=http.query_choice(request, "status", ("active", "inactive")),
    )
    return http.json(page)


async def detail(request: web.Request) -> web.Response:
    return http.json(await _detail(request.config_dict[server.DATABASE], http.path_id(request, "user_id")))


async def update(request: web.Request) -> web.Response:
    user_id = http.path_id(request, "user_id")
    spec = await http.body(request, UserPatch)
    await http.update_owner(request, users, "user", user_id, spec, users.UserUpdate)
    return http.json(await _detail(request.config_dict[server.DATABASE], user_id))


async def sessions(request: web.Request) -> web.Response:
    user_id = http.path_id(request, "user_id")
    limit, offset = http.page_args(request, default_limit=20)
    days = http.query_int(request, "days", 30, 1, 366)
    assert days is not None
    database = request.config_dict[server.DATABASE]
    user = await users.get(database, user_id)
    groups = await attribution.recent_sessions(database, user.name, days=days, limit=MAX_SESSIONS)
    return http.json(http.page_of(groups, limit, offset))


async def delete(request: web.Request) -> web.Response:
    await users.delete(request.config_dict[server.DATABASE], http.actor(request), http.path_id(request, "user_id"))
    return web.Response(status=204)


async def deactivate(request: web.Request) -> web.Response:
    user_id = http.path_id(request, "user_id")
    return http.json(await users.deactivate(request.config_dict[server.DATABASE], http.actor(request), user_id))


async def budget(request: web.Request) -> web.Response:
    user_id = http.path_id(request, "user_id")
    config = request.config_dict[server.CONFIG]
    return http.json(await users.get_budget(request.config_dict[server.DATABASE], user_id, config.report_tz))


async def set_budget(request: web.Request) -> web.Response:
    user_id = http.path_id(request, "user_id")
    spec = await http.body(request, users.BudgetUpdate)
    config = request.config_dict[server.CONFIG]
    result = await users.set_budget(
        request.config_dict[server.DATABASE], http.actor(request), user_id, spec, config.report_tz
    )
    return http.json(result)


async def list_keys(request: web.Request) -> web.Response:
    user_id = http.path_id(request, "user_id")
    limit, offset = http.page_args(request)
    return http.json(await keys.list_for_user(request.config_dict[server.DATABASE], user_id, limit, offset))


async def issue_key(request: web.Request) -> web.Response:
    user_id = http.path_id(request, "user_id")
    spec = await http.body(request, keys.KeyIssue, optional=True)
    config = request.config_dict[server.CONFIG]
    hasher = keys.KeyHasher(keys.load_secret(config.key_hash_secret, config.data_path))
    issued = await keys.issue(request.config_dict[server.DATABASE], hasher, http.actor(request), user_id, spec)
    # The only answer that carries the raw key; it must not sit in any cache on the way.
    return http.json(issued, 201, {"cache-control": "no-store"})


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_post("/users", create)
    r.add_get("/users", list_)
    r.add_get("/users/{user_id}", detail)
    r.add_patch("/users/{user_id}", update)
    r.add_delete("/users/{user_id}", delete)
    r.add_post("/users/{user_id}/deactivate", deactivate)
    r.add_get("/users/{user_id}/budget", budget)
    r.add_put("/users/{user_id}/budget", set_budget)
    r.add_get("/users/{user_id}/access-keys", list_keys)
    r.add_post("/users/{user_id}/access-keys", issue_key)
    r.add_get("/users/{user_id}/sessions", sessions)
