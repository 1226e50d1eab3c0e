"""/admin/access-keys/{id}: detail, update, revoke, rotate, and its Bedrock key."""

from __future__ import annotations

import msgspec
from aiohttp import web

from gateway import keys, server
from gateway.admin import http


class BedrockKeyPut(msgspec.Struct, forbid_unknown_fields=True):
    api_key: str


async def detail(request: web.Request) -> web.Response:
    return http.json(await keys.get(request.config_dict[server.DATABASE], http.path_id(request, "key_id")))


async def update(request: web.Request) -> web.Response:
    key_id = http.path_id(request, "key_id")
    spec = await http.body(request, keys.KeyUpdate)
    return http.json(await keys.update(request.config_dict[server.DATABASE], http.actor(request), key_id, spec))


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
