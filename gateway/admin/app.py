"""The admin sub-application: its routes, its error shape and its background jobs.

Errors are rendered here, never by the relay's Anthropic-shaped middleware:
`{"error": {"code", "message", "field"}}` with the stable codes of docs/openapi.yaml.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway import admins, db, decoding, errors, keys, resources, server
from gateway.admin import audit_log, auth, circuits, http, models, pricing, quota, teams, usage, users
from gateway.admin import keys as key_handlers
from gateway.config import Config

logger = structlog.get_logger("gateway.admin")
CATCH_ALL = web.AppKey("admin_catch_all", web.AbstractResource)


def openapi_path() -> Path:
    """Where docs/openapi.yaml is read from: the checkout's, or the wheel's copy."""
    return resources.openapi_spec()


def _error(
    status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    return http.json({"error": {"code": code, "message": message, "field": field}}, status, headers)


_CODES: tuple[tuple[type[errors.GatewayError], int, str], ...] = (
    (decoding.InvalidJson, 400, "bad_request"),
    (errors.ValidationFailed, 422, "validation_failed"),
    (errors.AuthenticationFailed, 401, "unauthorized"),
    (errors.PermissionDenied, 403, "forbidden"),
    (errors.NotFound, 404, "not_found"),
    (errors.Conflict, 409, "conflict"),
    (errors.RequestTooLarge, 413, "payload_too_large"),
    (errors.RateLimited, 429, "login_throttled"),
    (errors.InvalidRequest, 422, "validation_failed"),
)
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.GatewayError as exc:
        for cls, status, code in _CODES:
            if isinstance(exc, cls):
                headers = dict(exc.headers)
                if status == 401:
                    headers["www-authenticate"] = "Bearer"
                return _error(status, code, exc.message, getattr(exc, "field", None), headers)
        logger.warning("admin_error", error=type(exc).__name__, path=request.path)
        return _error(500, "internal_error", "the request failed; see the gateway log")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = {"allow": exc.headers["allow"]} if "allow" in exc.headers else None
        return _error(exc.status, _HTTP_CODES.get(exc.status, "bad_request"), exc.reason, None, allow)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        # Never a traceback or a library's message to the client; the log has the class.
        logger.exception("admin_unhandled", error=type(exc).__name__, path=request.path)
        return _error(500, "internal_error", "the request failed; see the gateway log")


async def not_found(request: web.Request) -> web.Response:
    """Every other path under /admin, so it gets this API's error shape (and 405 for a
    known path with another method)."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is request.app[CATCH_ALL]:
            continue
        match, methods = await resource.resolve(request)
        if match is None:
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, sorted(allowed))
    raise errors.NotFound(f"no such admin endpoint: {request.method} {request.path}")


async def openapi(_request: web.Request) -> web.Response:
    text = await asyncio.to_thread(openapi_path().read_text)
    return web.Response(text=text, content_type="application/yaml")


async def login(request: web.Request) -> web.Response:
    config = request.config_dict[server.CONFIG]
    spec = await http.body(request, admins.LoginRequest)
    token = await admins.login(
        request.config_dict[server.DATABASE],
        request.config_dict[auth.JWT_SECRET],
        config.jwt_ttl_seconds,
        admins.Throttle(config.login_max_failures, config.login_window_seconds),
        spec,
        auth.client_address(request),
    )
    return http.json(token)


async def me(request: web.Request) -> web.Response:
    who = http.actor(request)
    assert who.admin_id is not None
    return http.json(admins.Me(id=who.admin_id, username=who.name, role=request[http.ROLE]))


def create(config: Config) -> web.Application:
    """The sub-application to mount at /admin (its jobs run from `jobs_ctx` on the parent)."""
    app = web.Application(middlewares=[error_middleware, auth.auth_middleware], client_max_size=1024 * 1024)
    r = app.router
    r.add_post("/auth/login", login)
    r.add_get("/openapi.yaml", openapi)
    r.add_get("/me", me)
    users.add_routes(r)
    teams.add_routes(r)
    key_handlers.add_routes(r)
    usage.add_routes(r)
    pricing.add_routes(r)
    circuits.add_routes(r)
    audit_log.add_routes(r)
    quota.add_routes(r)
    models.add_routes(r)
    catch_all = r.add_route("*", "/{tail:.*}", not_found).resource
    assert catch_all is not None
    app[CATCH_ALL] = catch_all
    return app


async def revoke_expired_forever(database: db.Database, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            revoked = await keys.revoke_expired(database)
        except Exception as exc:  # try again next round; the grace only runs longer
            logger.warning("rotation_revoke_failed", error=type(exc).__name__)
            continue
        if revoked:
            logger.info("rotated_keys_revoked", access_key_ids=revoked)


async def jobs_ctx(app: web.Application) -> AsyncIterator[None]:
    """On the parent app, after the database: the JWT secret, the env bootstrap admin, and
    the revoker that ends rotated keys' grace periods (on every instance; idempotent)."""
    config = app[server.CONFIG]
    database = app[server.DATABASE]
    app[auth.JWT_SECRET] = await asyncio.to_thread(admins.load_jwt_secret, config.jwt_secret, config.data_path)
    if config.admin_username and config.admin_password_hash:
        await admins.bootstrap(database, config.admin_username, config.admin_password_hash)
    # A rotated key may outlive its grace by at most this period (plus NOTIFY's milliseconds).
    every = min(10.0, max(0.2, config.key_rotation_grace_seconds / 5))
    task = asyncio.create_task(revoke_expired_forever(database, every))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
