"""/admin/users: create, list, detail, update, soft delete, deactivate, budget, keys."""

from __future__ import annotations

from aiohttp import web

from gateway import keys, server, users
from gateway.admin import http


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
    return http.json(await users.get(request.config_dict[server.DATABASE], http.path_id(request, "user_id")))


async def update(request: web.Request) -> web.Response:
    user_id = http.path_id(request, "user_id")
    spec = await http.body(request, users.UserUpdate)
    return http.json(await users.update(request.config_dict[server.DATABASE], http.actor(request), user_id, spec))


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
