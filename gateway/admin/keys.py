"""/admin/access-keys/{id}: detail (with its routing strategy and quota), update,
revoke, rotate, and its Bedrock key."""

from __future__ import annotations

import msgspec
from aiohttp import web
from msgspec import UNSET, UnsetType

from gateway import audit, db, errors, keys, quota, routing, server
from gateway.admin import http


class BedrockKeyPut(msgspec.Struct, forbid_unknown_fields=True):
    api_key: str


class KeyDetail(keys.AccessKey):
    routing: str | None  # the key's own strategy; None: it follows its user
    quota: quota.QuotaView | None  # None until the plan reported one


class KeyPatch(keys.KeyUpdate):
    routing: str | UnsetType | None = UNSET


async def _detail(database: db.Database, key_id: int) -> KeyDetail:
    key = await keys.get(database, key_id)
    return KeyDetail(
        **msgspec.structs.asdict(key),
        routing=await routing.get_routing(database, "key", key_id),
        quota=await quota.get_state(database, key_id),
    )


async def detail(request: web.Request) -> web.Response:
    return http.json(await _detail(request.config_dict[server.DATABASE], http.path_id(request, "key_id")))


async def update(request: web.Request) -> web.Response:
    key_id = http.path_id(request, "key_id")
    spec = await http.body(request, KeyPatch)
    database = request.config_dict[server.DATABASE]
    fields = http.update_of(spec, keys.KeyUpdate)
    # The other fields first, so one PATCH can allow Bedrock and route to it.
    if audit.changed(fields) or isinstance(spec.routing, UnsetType):
        await keys.update(database, http.actor(request), key_id, fields)
    elif (await keys.get(database, key_id)).status != "active":
        raise errors.Conflict(f"access key {key_id} is revoked")  # as keys.update says it
    if not isinstance(spec.routing, UnsetType):
        await routing.set_routing(database, http.actor(request), "key", key_id, spec.routing)
    return http.json(await _detail(database, key_id))


async def revoke(request: web.Request) -> web.Response:
    key_id = http.path_id(request, "key_id")
    return http.json(await keys.revoke(request.config_dict[server.DATABASE], http.actor(request), key_id))


async def rotate(request: web.Request) -> web.Response:
    key_id = http.path_id(request, "key_id")
    config = request.config_dict[server.CONFIG]
    hasher = keys.KeyHasher(keys.load_secret(config.key_hash_secret, config.data_path))
    rotated = await keys.rotate(
        request.config_dict[server.DATABASE],
        hasher,
        request.config_dict[server.KEYRING],
        http.actor(request),
        key_id,
        config.key_rotation_grace_seconds,
    )
    return http.json(rotated, 201, {"cache-control": "no-store"})


async def bedrock_key(request: web.Request) -> web.Response:
    key_id = http.path_id(request, "key_id")
    return http.json(await keys.bedrock_key_state(request.config_dict[server.DATABASE], key_id))


async def put_bedrock_key(request: web.Request) -> web.Response:
    key_id = http.path_id(request, "key_id")
    spec = await http.body(request, BedrockKeyPut)
    state = await keys.set_bedrock_key(
        request.config_dict[server.DATABASE],
        request.config_dict[server.KEYRING],
        http.actor(request),
        key_id,
        spec.api_key,
    )
    return http.json(state)


async def delete_bedrock_key(request: web.Request) -> web.Response:
    key_id = http.path_id(request, "key_id")
    state = await keys.set_bedrock_key(
        request.config_dict[server.DATABASE], request.config_dict[server.KEYRING], http.actor(request), key_id, None
    )
    return http.json(state)


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/access-keys/{key_id}", detail)
    r.add_patch("/access-keys/{key_id}", update)
    r.add_delete("/access-keys/{key_id}", revoke)
    r.add_post("/access-keys/{key_id}/rotate", rotate)
    r.add_get("/access-keys/{key_id}/bedrock-key", bedrock_key)
    r.add_put("/access-keys/{key_id}/bedrock-key", put_bedrock_key)
    r.add_delete("/access-keys/{key_id}/bedrock-key", delete_bedrock_key)
