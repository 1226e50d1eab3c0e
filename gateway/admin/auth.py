"""Who is calling: the bearer token is checked on every admin request except login and
the OpenAPI document; viewers may read (GET) and nothing else."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway import admins, audit, errors, guard, server
from gateway.admin import http

JWT_SECRET = web.AppKey("admin_jwt_secret", bytes)
PUBLIC = frozenset({("POST", "/admin/auth/login"), ("GET", "/admin/openapi.yaml")})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def client_address(request: web.Request) -> str | None:
    # Behind a load balancer, the address it saw (CCPROXY_FORWARDED_HOPS; issue 16).
    return guard.client_address(request, request.config_dict[server.CONFIG].forwarded_hops)


def _bearer(request: web.Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.AuthenticationFailed("a bearer token is required (POST /admin/auth/login)")
    return token.strip()


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if (request.method, request.path) in PUBLIC or request.match_info.http_exception is not None:
        return await handler(request)
    token = _bearer(request)
    me = await admins.verify_token(request.config_dict[server.DATABASE], request.config_dict[JWT_SECRET], token)
    if request.method not in READ_METHODS and me.role != "admin":
        raise errors.PermissionDenied(f"the {me.role} role can read but not change anything")
    request[http.ACTOR] = audit.Actor("admin", me.username, admin_id=me.id, address=client_address(request))
    request[http.ROLE] = me.role
    return await handler(request)
