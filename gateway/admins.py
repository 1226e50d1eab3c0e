"""Admin accounts (bcrypt), login with a throttle on failures, and the HS256 tokens the
admin API accepts. Tokens carry the admin's id and password version; a token is good only
while that admin exists and has not changed password since it was issued, and the role
is read from the database on every request (a demotion takes effect at once)."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import secrets
import time
from pathlib import Path
from typing import Literal

import asyncpg
import bcrypt
import msgspec

from gateway import audit, budget_rules, db, errors, keys, paging

Role = Literal["admin", "viewer"]
ROLES = ("admin", "viewer")
ALGORITHM = "HS256"
AUDIENCE = "ccproxy-admin"
ISSUER = "ccproxy"
TOKEN_TYPE = "admin-access"  # noqa: S105 - the typ claim, not a secret
BCRYPT_ROUNDS = 12
MAX_PASSWORD_BYTES = 72  # bcrypt reads no further; longer passwords are refused, not cut


class Admin(msgspec.Struct):
    id: int
    username: str
    role: str
    created_at: dt.datetime


class Me(msgspec.Struct):
    id: int
    username: str
    role: str


class Token(msgspec.Struct):
    access_token: str
    token_type: str
    expires_in: int


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True):
    username: str
    password: str


def load_jwt_secret(configured: str | None, data_path: Path) -> bytes:
    return keys.load_secret(configured, data_path, "jwt_secret")


def _check_password(password: str) -> bytes:
    raw = password.encode()
    if len(password) < 8:
        raise errors.ValidationFailed("password", "a password has at least 8 characters")
    if len(raw) > MAX_PASSWORD_BYTES:
        raise errors.ValidationFailed("password", f"a password has at most {MAX_PASSWORD_BYTES} bytes")
    return raw


def hash_password(password: str) -> str:
    return bcrypt.hashpw(_check_password(password), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()


def _role(role: str) -> str:
    if role not in ROLES:
        raise errors.ValidationFailed("role", "role must be admin or viewer")
    return role


async def create(database: db.Database, actor: audit.Actor, username: str, role: str, password: str) -> Admin:
    name = budget_rules.name("username", username, "admin")
    hashed = await asyncio.to_thread(hash_password, password)
    try:
        async with database.transaction() as conn:
            admin_id = await conn.fetchval(db.q("create-admin"), name, hashed, _role(role))
            await audit.record(
                conn, actor, "admin.create", "admin", admin_id, {"username": name, "role": role, "password": "(set)"}
            )
    except asyncpg.UniqueViolationError:
        raise errors.Conflict(f"an admin named {name!r} already exists") from None
    return await get_by_username(database, name)


async def get_by_username(database: db.Database, username: str) -> Admin:
    row = await database.fetchrow("get-admin-by-username", username)
    if row is None:
        raise errors.NotFound(f"no admin named {username!r}")
    return db.as_struct(Admin, row)


async def list_admins(database: db.Database, limit: int = paging.DEFAULT_LIMIT, offset: int = 0) -> paging.Page[Admin]:
    rows, total = await paging.fetch(database, "list-admins", (), limit, offset)
    return paging.Page(items=[db.as_struct(Admin, r) for r in rows], total=total, limit=limit, offset=offset)


async def delete(database: db.Database, actor: audit.Actor, username: str) -> None:
    """Delete an admin: its tokens stop working at once; its audit rows stay."""
    admin = await get_by_username(database, username)
    async with database.transaction() as conn:
        if await conn.fetchval(db.q("delete-admin"), admin.id) is None:
            raise errors.NotFound(f"no admin named {username!r}")
        await audit.record(conn, actor, "admin.delete", "admin", admin.id, {"username": admin.username})


async def set_password(database: db.Database, actor: audit.Actor, username: str, password: str) -> Admin:
    """Change an admin's password; every token issued before it stops working."""
    admin = await get_by_username(database, username)
    hashed = await asyncio.to_thread(hash_password, password)
    async with database.transaction() as conn:
        if await conn.fetchval(db.q("set-admin-password"), admin.id, hashed) is None:
            raise errors.NotFound(f"no admin named {username!r}")
        await audit.record(conn, actor, "admin.set_password", "admin", admin.id, {"password": "(set)"})
    return admin


async def bootstrap(database: db.Database, username: str, password_hash: str) -> None:
    """CCPROXY_ADMIN_USERNAME + CCPROXY_ADMIN_PASSWORD_HASH: make sure that admin exists
    with that hash and the admin role (every instance runs this at start-up)."""
    row = await database.fetchrow("get-admin-by-username", username)
    try:
        async with database.transaction() as conn:
            if row is None:
                admin_id = await conn.fetchval(db.q("create-admin"), username, password_hash, "admin")
                await audit.record(conn, audit.SYSTEM, "admin.create", "admin", admin_id, {"username": username})
            elif row["password_hash"] != password_hash or row["role"] != "admin":
                await conn.execute(db.q("set-admin-password"), row["id"], password_hash)
                await conn.execute(db.q("set-admin-role"), row["id"], "admin")
                await audit.record(
                    conn, audit.SYSTEM, "admin.set_password", "admin", row["id"], {"password": "(set)", "role": "admin"}
                )
    except asyncpg.UniqueViolationError:
        pass  # another instance created it at the same moment


# --- login --------------------------------------------------------------------------------


class Throttle(msgspec.Struct, frozen=True):
    max_failures: int
    window_seconds: float


@functools.cache
def _dummy_hash(rounds: int) -> bytes:
    """Checked when the username is unknown, so a miss costs what a wrong password costs
    and the answer's timing does not say whether the username exists."""
    return bcrypt.hashpw(b"not a password", bcrypt.gensalt(rounds))


def _verify(password: str, hashed: bytes) -> bool:
    raw = password.encode()
    if len(raw) > MAX_PASSWORD_BYTES:
        bcrypt.checkpw(b"x", hashed)  # same cost as a real check
        return False
    return bcrypt.checkpw(raw, hashed)


async def login(
    database: db.Database,
    secret: bytes,
    ttl_seconds: int,
    throttle: Throttle,
    request: LoginRequest,
    address: str | None,
) -> Token:
    """A token for a right username and password. Wrong ones get the same answer whether
    or not the username exists, leave an audit row, and after `max_failures` within the
    window (per username or per client address) logins are refused until it passes."""
    username = request.username.strip()
    if not username or len(username) > 200:
        raise errors.ValidationFailed("username", "username must be 1 to 200 characters")
    if not request.password or len(request.password) > 1024:
        raise errors.ValidationFailed("password", "password must be 1 to 1024 characters")
    counts = await database.fetchrow("count-recent-failed-logins", username.lower(), address, throttle.window_seconds)
    assert counts is not None
    attempt = audit.Actor("anonymous", username, address=address)
    if max(counts["by_username"], counts["by_address"]) >= throttle.max_failures:
        async with database.transaction() as conn:
            await audit.record(conn, attempt, "admin.login_failed", "admin", username.lower(), {"reason": "throttled"})
        raise errors.RateLimited(
            "too many failed logins; try again later",
            headers={"retry-after": str(int(throttle.window_seconds))},
        )
    row = await database.fetchrow("get-admin-by-username", username)
    hashed = row["password_hash"].encode() if row is not None else _dummy_hash(BCRYPT_ROUNDS)
    ok = await asyncio.to_thread(_verify, request.password, hashed)
    if row is None or not ok:
        async with database.transaction() as conn:
            await audit.record(
                conn, attempt, "admin.login_failed", "admin", username.lower(), {"reason": "credentials"}
            )
        raise errors.AuthenticationFailed("wrong username or password")
    async with database.transaction() as conn:
        who = audit.Actor("admin", row["username"], admin_id=row["id"], address=address)
        await audit.record(conn, who, "admin.login", "admin", row["id"])
    return Token(
        access_token=issue_token(secret, row["id"], row["password_version"], ttl_seconds),
        token_type="bearer",  # noqa: S106 - the OAuth token type
        expires_in=ttl_seconds,
    )


def issue_token(secret: bytes, admin_id: int, password_version: int, ttl_seconds: int) -> str:
    issued = int(time.time())
    claims = {
        "sub": str(admin_id),
        "pwv": password_version,
        "typ": TOKEN_TYPE,
        "aud": AUDIENCE,
        "iss": ISSUER,
        "iat": issued,
        "exp": issued + ttl_seconds,
        "jti": secrets.token_urlsafe(12),
    }
    import jwt  # imported here: PyJWT pulls in cryptography (~8 MB idle RSS) for a rare call

    return jwt.encode(claims, secret, algorithm=ALGORITHM)


async def verify_token(database: db.Database, secret: bytes, token: str) -> Me:
    import jwt  # imported here, like in issue_token: only admin API calls pay for it

    try:
        # algorithms pins HS256: `alg: none` and every other algorithm are refused.
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "aud", "iss", "typ", "pwv"]},
        )
    except jwt.PyJWTError:
        raise errors.AuthenticationFailed("invalid or expired token") from None
    if claims.get("typ") != TOKEN_TYPE or not str(claims.get("sub", "")).isdigit():
        raise errors.AuthenticationFailed("invalid or expired token")
    row = await database.fetchrow("get-admin", int(claims["sub"]))
    if row is None or row["password_version"] != claims["pwv"]:
        raise errors.AuthenticationFailed("invalid or expired token")
    return Me(id=row["id"], username=row["username"], role=row["role"])
