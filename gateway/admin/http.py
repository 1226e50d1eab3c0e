"""What every admin handler shares: reading typed input from the request (path, query,
JSON body) with errors that name the field, and answering with msgspec-encoded JSON."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from gateway import audit, decoding, errors, paging, routing, server, usage_reports

T = TypeVar("T")

INT64_MAX = 2**63 - 1
ACTOR: web.RequestKey[audit.Actor] = web.RequestKey("admin_actor", audit.Actor)
ROLE: web.RequestKey[str] = web.RequestKey("admin_role", str)

_encode = msgspec.json.Encoder().encode


def json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """Money as decimal strings, times as ISO 8601 with an offset (msgspec's encodings)."""
    return web.Response(body=_encode(data), status=status, content_type="application/json", headers=headers)


def actor(request: web.Request) -> audit.Actor:
    return request[ACTOR]


def path_id(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= INT64_MAX:
        raise errors.ValidationFailed(name, f"{name} must be a positive integer")
    return int(raw)


def query_int(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise errors.ValidationFailed(name, f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise errors.ValidationFailed(name, f"{name} must be between {lo} and {hi}")
    return value


def query_id(request: web.Request, name: str) -> int | None:
    return query_int(request, name, None, 1, INT64_MAX)


def query_str(request: web.Request, name: str, max_length: int = 200) -> str | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if len(raw) > max_length:
        raise errors.ValidationFailed(name, f"{name} is at most {max_length} characters")
    if "\x00" in raw:
        raise errors.ValidationFailed(name, f"{name} must not contain NUL characters")
    return raw


def query_choice(request: web.Request, name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.query.get(name)
    if raw is not None and raw not in choices:
        raise errors.ValidationFailed(name, f"{name} must be one of {', '.join(choices)}")
    return raw


def page_args(request: web.Request, default_limit: int = paging.DEFAULT_LIMIT) -> tuple[int, int]:
    limit = query_int(request, "limit", default_limit, 1, paging.MAX_LIMIT)
    offset = query_int(request, "offset", 0, 0, 1_000_000_000)
    assert limit is not None and offset is not None
    return limit, offset


def page_of(items: list[T], limit: int, offset: int) -> paging.Page[T]:
    """A page of a list the service returns whole (small: one row per key, mapping or
    session group)."""
    return paging.Page(items=items[offset : offset + limit], total=len(items), limit=limit, offset=offset)


def query_time(request: web.Request, name: str, report_tz: str) -> dt.datetime | None:
    raw = query_str(request, name, 64)
    if raw is None:
        return None
    return usage_reports.parse_moment(raw, zoneinfo.ZoneInfo(report_tz), name)


# Admin bodies are small; the relay's 32 MB limit (the app that parses the request sets
# `client_max_size`, not this sub-app) is far too much here (issue 16).
MAX_BODY = 1024 * 1024


async def body(request: web.Request, cls: type[T], *, optional: bool = False) -> T:
    if (request.content_length or 0) > MAX_BODY:
        raise errors.RequestTooLarge(f"the request body is larger than {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > MAX_BODY:
            raise errors.RequestTooLarge(f"the request body is larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    data = b"".join(chunks)
    if optional and not data.strip():
        return msgspec.convert({}, cls)
    return decoding.json_body(data, cls, request.config_dict[server.CONFIG].max_json_depth)


def update_of(spec: Any, update_type: type[T]) -> T:
    """The service's update struct from the PATCH body's fields of the same names (the
    body may carry more, such as `routing`, which another service takes)."""
    return update_type(**{name: getattr(spec, name) for name in update_type.__struct_fields__})  # type: ignore[attr-defined]


async def update_owner(
    request: web.Request, service: Any, scope: routing.Scope, owner_id: int, spec: Any, update_type: type[Any]
) -> None:
    """PATCH of a user or team (`service`: gateway.users or gateway.teams): its own fields
    through the service's `update`, then `routing` when given. The routing service finds
    owners by name (the CLI's argument), so it gets the name after any rename."""
    database = request.config_dict[server.DATABASE]
    fields = update_of(spec, update_type)
    if audit.changed(fields) or isinstance(spec.routing, msgspec.UnsetType):
        owner = await service.update(database, actor(request), owner_id, fields)
    else:
        owner = await service.get(database, owner_id)
    if not isinstance(spec.routing, msgspec.UnsetType):
        await routing.set_routing(database, actor(request), scope, owner.name, spec.routing)
