"""Access keys: issue, list, update, revoke, rotate and Bedrock-key registration (the
service the CLI and admin API share), and the in-memory cache the request path reads,
kept true by PostgreSQL LISTEN/NOTIFY.

A key is `ak_` + 32 random bytes in URL-safe base64. Only HMAC-SHA256(server secret, key)
is stored; the full key is shown once, at issue.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import asyncpg
import msgspec
import structlog
from msgspec import UNSET, UnsetType

from gateway import audit, db, envelope, errors, paging

KEY_PREFIX = "ak_"
KEY_BYTES = 32
# ak_ + at least 43 base64url characters (32 bytes); longer keys are allowed for the future.
KEY_PATTERN = re.compile(r"^ak_[A-Za-z0-9_-]{43,128}$")
NOTIFY_CHANNEL = "ccproxy_keys"

log = structlog.get_logger("gateway.keys")


def generate() -> str:
    return KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).rstrip(b"=").decode()


def mask(key: str) -> str:
    """What logs and lists show of a key: `ak_` + 6 characters + `…`."""
    prefix = key[:9]
    # Only printable ASCII reaches a log line: a path may carry any byte (issue 16).
    return (
        prefix + "…"
        if key.startswith(KEY_PREFIX) and prefix.isascii() and prefix.isprintable()
        else "(not an access key)"
    )


def display_prefix(key: str) -> str:
    return key[:9]


def load_secret(configured: str | None, data_path: Path, file_name: str = "key_hash_secret") -> bytes:
    """A server secret (the key-hash HMAC secret; the admin JWT secret): the configured
    one, else one generated once into the data dir."""
    if configured:
        return configured.encode()
    path = data_path / file_name
    if not path.exists():
        data_path.mkdir(parents=True, exist_ok=True)
        fresh = secrets.token_urlsafe(48).encode()
        # O_EXCL: two processes starting at once cannot both write a different secret.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(fresh)
                handle.flush()
                os.fsync(handle.fileno())
    return path.read_bytes().strip()


class KeyHasher:
    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def digest(self, key: str) -> bytes:
        return hmac.new(self._secret, key.encode(), hashlib.sha256).digest()


# --- the service: what the CLI and the admin API call ----------------------------------


class AccessKey(msgspec.Struct):
    """A key as the faces show it: never the key itself, only its prefix (`ak_` + 6)."""

    id: int
    user_id: int
    user_name: str
    prefix: str
    status: str
    bedrock_region: str | None
    bedrock_model: str | None
    bedrock_default_credentials: bool
    bedrock_key_registered: bool
    rpm_limit: int | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    expires_at: dt.datetime | None
    replaced_by: int | None


class IssuedKey(AccessKey):
    """The one answer that carries the raw key (issue); nothing stores it."""

    raw_key: str


class RotatedKey(IssuedKey):
    replaces: int
    old_key_expires_at: dt.datetime


class KeyIssue(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    bedrock_region: str | None = None
    bedrock_model: str | None = None
    rpm_limit: int | None = None


class KeyUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields left UNSET stay; None resets region/model to the defaults, removes the rpm limit."""

    bedrock_region: str | UnsetType | None = UNSET
    bedrock_model: str | UnsetType | None = UNSET
    bedrock_default_credentials: bool | UnsetType = UNSET
    rpm_limit: int | UnsetType | None = UNSET


class BedrockKeyState(msgspec.Struct):
    access_key_id: int
    registered: bool


def _region(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    if len(value) > 50 or not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d+", value.strip()):
        raise errors.ValidationFailed("bedrock_region", f"{value!r} is not an AWS region such as 'eu-west-1'")
    return value.strip()


def _model(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    if len(value) > 300 or any(c.isspace() for c in value.strip()):
        raise errors.ValidationFailed("bedrock_model", "a Bedrock model id is up to 300 characters without spaces")
    return value.strip()


def _rpm(value: int | None) -> int | None:
    if value is not None and not 1 <= value <= 1_000_000:
        raise errors.ValidationFailed("rpm_limit", "the rpm limit is 1 to 1000000 requests per minute (or none)")
    return value


async def get(database: db.Database, key_id: int) -> AccessKey:
    row = await database.fetchrow("get-key", key_id)
    if row is None:
        raise errors.NotFound(f"no access key with id {key_id}")
    return db.as_struct(AccessKey, row)


async def list_for_user(
    database: db.Database, user_id: int, limit: int = paging.DEFAULT_LIMIT, offset: int = 0
) -> paging.Page[AccessKey]:
    if await database.fetchrow("get-user", user_id) is None:
        raise errors.NotFound(f"no user with id {user_id}")
    rows, total = await paging.fetch(database, "list-keys-for-user", (user_id,), limit, offset)
    return paging.Page(items=[db.as_struct(AccessKey, r) for r in rows], total=total, limit=limit, offset=offset)


async def _insert(
    conn: asyncpg.Connection,
    hasher: KeyHasher,
    user_id: int,
    region: str | None,
    model: str | None,
    rpm_limit: int | None,
    default_credentials: bool,
) -> tuple[int, str]:
    key = generate()
    key_id = await conn.fetchval(
        db.q("insert-key"),
        user_id,
        hasher.digest(key),
        display_prefix(key),
        region,
        model,
        rpm_limit,
        None,
        default_credentials,
    )
    return int(key_id), key


async def issue(
    database: db.Database, hasher: KeyHasher, actor: audit.Actor, user_id: int, spec: KeyIssue | None = None
) -> IssuedKey:
    """Issue a key for an active user; the answer holds the raw key (shown once)."""
    spec = spec or KeyIssue()
    region, model, rpm_limit = _region(spec.bedrock_region), _model(spec.bedrock_model), _rpm(spec.rpm_limit)
    async with database.transaction() as conn:
        user = await conn.fetchrow(db.q("get-user"), user_id)
        if user is None:
            raise errors.NotFound(f"no user with id {user_id}")
        if user["status"] != "active":
            raise errors.Conflict(f"user {user['name']!r} is {user['status']}; keys need an active user")
        key_id, key = await _insert(conn, hasher, user_id, region, model, rpm_limit, False)
        await audit.record(
            conn,
            actor,
            "key.issue",
            "access_key",
            key_id,
            {"user_id": user_id, "bedrock_region": region, "bedrock_model": model, "rpm_limit": rpm_limit},
        )
    issued = await get(database, key_id)
    return IssuedKey(**msgspec.structs.asdict(issued), raw_key=key)


async def rotate(
    database: db.Database,
    hasher: KeyHasher,
    keyring: envelope.Keyring,
    actor: audit.Actor,
    key_id: int,
    grace_seconds: float,
) -> RotatedKey:
    """Issue a successor inheriting the Bedrock key, region, model, default-credentials
    use and rpm limit. The old key keeps working for `grace_seconds`; then the periodic
    revoker (`revoke_expired`, on every instance) revokes it."""
    async with database.transaction() as conn:
        old = await conn.fetchrow(db.q("lock-key"), key_id)
        if old is None:
            raise errors.NotFound(f"no access key with id {key_id}")
        if old["status"] != "active":
            raise errors.Conflict(f"access key {key_id} is revoked; only an active key can be rotated")
        if old["expires_at"] is not None:
            raise errors.Conflict(f"access key {key_id} was already rotated")
        if old["user_status"] != "active":
            raise errors.Conflict(f"the user of access key {key_id} is {old['user_status']}")
        new_id, key = await _insert(
            conn,
            hasher,
            old["user_id"],
            old["bedrock_region"],
            old["bedrock_model"],
            old["rpm_limit"],
            old["bedrock_default_credentials"],
        )
        if old["bedrock_key_blob"] is not None:
            # The sealed key is bound to its access key's id; re-seal it for the new one.
            secret = await envelope.unseal(keyring, old["bedrock_key_blob"], bedrock_owner(key_id))
            blob = await envelope.seal(keyring, secret, bedrock_owner(new_id))
            await conn.execute(db.q("set-key-bedrock-blob"), new_id, blob)
        expires = await conn.fetchval(db.q("expire-rotated-key"), key_id, new_id, grace_seconds)
        await audit.record(
            conn, actor, "key.rotate", "access_key", key_id, {"replaced_by": new_id, "expires_at": expires}
        )
    issued = await get(database, new_id)
    return RotatedKey(**msgspec.structs.asdict(issued), raw_key=key, replaces=key_id, old_key_expires_at=expires)


async def revoke_expired(database: db.Database) -> list[int]:
    """Revoke rotated keys whose grace period is over (every instance runs this)."""
    async with database.transaction() as conn:
        revoked = [r["id"] for r in await conn.fetch(db.q("revoke-expired-keys"))]
        for key_id in revoked:
            await audit.record(
                conn, audit.SYSTEM, "key.revoke", "access_key", key_id, {"reason": "rotation grace over"}
            )
    return revoked


async def revoke(database: db.Database, actor: audit.Actor, key_id: int) -> AccessKey:
    async with database.transaction() as conn:
        if await conn.fetchval(db.q("revoke-key"), key_id) is None:
            row = await conn.fetchrow(db.q("get-key"), key_id)
            if row is None:
                raise errors.NotFound(f"no access key with id {key_id}")
            raise errors.Conflict(f"access key {key_id} is already revoked")
        await audit.record(conn, actor, "key.revoke", "access_key", key_id, {"status": "revoked"})
    return await get(database, key_id)


def bedrock_owner(key_id: int) -> str:
    """The associated data that binds a sealed Bedrock key to its access key."""
    return f"access-key:{key_id}"


async def update(database: db.Database, actor: audit.Actor, key_id: int, spec: KeyUpdate) -> AccessKey:
    """Change an active key's Bedrock region/model (None = the defaults), its permission
    to use the deployment's own AWS credentials, or its rpm limit (None = no limit)."""
    changes = audit.changed(spec)
    if not changes:
        raise errors.ValidationFailed(None, "nothing to update")
    if not isinstance(spec.bedrock_region, UnsetType):
        changes["bedrock_region"] = _region(spec.bedrock_region)
    if not isinstance(spec.bedrock_model, UnsetType):
        changes["bedrock_model"] = _model(spec.bedrock_model)
    if not isinstance(spec.rpm_limit, UnsetType):
        changes["rpm_limit"] = _rpm(spec.rpm_limit)
    args: list[object] = [key_id]
    for field in ("bedrock_region", "bedrock_model", "bedrock_default_credentials", "rpm_limit"):
        args += [field in changes, changes.get(field)]
    async with database.transaction() as conn:
        if await conn.fetchval(db.q("update-key-bedrock"), *args) is None:
            await _refuse_inactive(conn, key_id)
        await audit.record(conn, actor, "key.update", "access_key", key_id, changes)
    return await get(database, key_id)


async def _refuse_inactive(conn: asyncpg.Connection, key_id: int) -> None:
    if await conn.fetchrow(db.q("get-key"), key_id) is None:
        raise errors.NotFound(f"no access key with id {key_id}")
    raise errors.Conflict(f"access key {key_id} is revoked")


async def bedrock_key_state(database: db.Database, key_id: int) -> BedrockKeyState:
    key = await get(database, key_id)
    return BedrockKeyState(access_key_id=key_id, registered=key.bedrock_key_registered)


async def set_bedrock_key(
    database: db.Database, keyring: envelope.Keyring, actor: audit.Actor, key_id: int, secret: str | None
) -> BedrockKeyState:
    """Register (or with None, remove) a key's Bedrock API key, sealed with envelope
    encryption. The NOTIFY this update causes drops every instance's decrypted copy."""
    blob = None
    if secret is not None:
        secret = secret.strip()
        if not secret:
            raise errors.ValidationFailed("api_key", "the Bedrock API key is empty")
        if len(secret) > 4096:
            raise errors.ValidationFailed("api_key", "the Bedrock API key is longer than 4096 characters")
        blob = await envelope.seal(keyring, secret.encode(), bedrock_owner(key_id))
    async with database.transaction() as conn:
        if await conn.fetchval(db.q("set-key-bedrock-blob"), key_id, blob) is None:
            if await conn.fetchrow(db.q("get-key"), key_id) is None:
                raise errors.NotFound(f"no access key with id {key_id}")
            if blob is not None:
                raise errors.Conflict(f"access key {key_id} is revoked")
        action = "key.bedrock_key_set" if blob is not None else "key.bedrock_key_remove"
        await audit.record(
            conn, actor, action, "access_key", key_id, {"bedrock_key": audit.SECRET_SET if blob is not None else None}
        )
    return BedrockKeyState(access_key_id=key_id, registered=blob is not None)


# --- the request path's view --------------------------------------------------------------


class KeyContext:
    """What a request knows about its access key; built from one database row."""

    __slots__ = (
        "alert_thresholds",
        "allowed_models",
        "bedrock_default_credentials",
        "bedrock_key_blob",
        "bedrock_model",
        "bedrock_region",
        "key_hash",
        "key_id",
        "monthly_budget_usd",
        "prefix",
        "routing",
        "rpm_limit",
        "team_alert_thresholds",
        "team_allowed_models",
        "team_budget_usd",
        "team_id",
        "team_name",
        "user_id",
        "user_name",
    )

    def __init__(self, row: asyncpg.Record) -> None:
        self.key_id: int = row["id"]
        self.user_id: int = row["user_id"]
        self.user_name: str = row["user_name"]
        self.prefix: str = row["prefix"]
        self.key_hash: bytes = row["key_hash"]
        self.bedrock_region: str | None = row["bedrock_region"]
        self.bedrock_model: str | None = row["bedrock_model"]
        self.bedrock_key_blob: bytes | None = row["bedrock_key_blob"]
        self.bedrock_default_credentials: bool = row["bedrock_default_credentials"]
        self.rpm_limit: int | None = row["rpm_limit"]
        self.monthly_budget_usd: Decimal | None = row["monthly_budget_usd"]
        self.alert_thresholds: list[int] = row["alert_thresholds"]
        self.allowed_models: list[str] | None = row["allowed_models"]
        self.team_id: int | None = row["team_id"]
        self.team_name: str | None = row["team_name"]
        self.team_budget_usd: Decimal | None = row["team_budget_usd"]
        self.team_alert_thresholds: list[int] = row["team_alert_thresholds"] or []
        self.team_allowed_models: list[str] | None = row["team_allowed_models"]
        self.routing: str = row["routing"]  # plan_first | bedrock_only, resolved key → user → team


def _same_context(a: KeyContext, b: KeyContext) -> bool:
    return all(getattr(a, name) == getattr(b, name) for name in KeyContext.__slots__)


class KeyCache:
    """Access keys the request path has seen, held in memory.

    Known keys are answered from a dict; an unknown key costs one query and is then
    remembered as unknown for a short time, so a flood of bad keys cannot flood the
    database. Every change to a key (or its user) arrives as a NOTIFY and evicts it at
    once; a periodic refresh backs that up, and a lost listener connection clears all.
    """

    def __init__(
        self,
        database: db.Database,
        hasher: KeyHasher,
        negative_ttl: float,
        on_evict: Callable[[int], None] | None = None,
    ) -> None:
        self._db = database
        self._on_evict = on_evict
        self._hasher = hasher
        self._negative_ttl = negative_ttl
        self._by_hash: dict[bytes, KeyContext] = {}
        self._unknown: dict[bytes, float] = {}
        self._inflight: dict[bytes, asyncio.Future[KeyContext | None]] = {}

    def __len__(self) -> int:
        return len(self._by_hash)

    async def lookup(self, key: str) -> KeyContext:
        """The key's context, or NotFound (for malformed, unknown or revoked keys alike)."""
        if not KEY_PATTERN.match(key):
            raise errors.NotFound("Not found")
        digest = self._hasher.digest(key)
        ctx = self._by_hash.get(digest)
        if ctx is not None and hmac.compare_digest(ctx.key_hash, digest):
            return ctx
        expires = self._unknown.get(digest)
        if expires is not None:
            if expires > time.monotonic():
                raise errors.NotFound("Not found")
            del self._unknown[digest]
        ctx = await self._load(digest)
        if ctx is None:
            raise errors.NotFound("Not found")
        return ctx

    async def _load(self, digest: bytes) -> KeyContext | None:
        # Concurrent first requests for one key share one query.
        pending = self._inflight.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[KeyContext | None] = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        try:
            try:
                row = await self._db.fetchrow("get-key-context", digest)
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                raise errors.ServiceUnavailable(
                    "The access key store is unavailable; try again shortly.",
                    headers={"retry-after": "5"},
                ) from exc
            ctx = KeyContext(row) if row is not None else None
            if ctx is None:
                if len(self._unknown) > 100_000:
                    self._unknown.clear()
                self._unknown[digest] = time.monotonic() + self._negative_ttl
            else:
                self._by_hash[digest] = ctx
            future.set_result(ctx)
            return ctx
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            del self._inflight[digest]

    def evict_key_id(self, key_id: int) -> None:
        for digest, ctx in list(self._by_hash.items()):
            if ctx.key_id == key_id:
                del self._by_hash[digest]
        if self._on_evict is not None:
            self._on_evict(key_id)
        # A new key may have been remembered as unknown a moment before it was issued.
        self._unknown.clear()

    def clear(self) -> None:
        for ctx in list(self._by_hash.values()):
            if self._on_evict is not None:
                self._on_evict(ctx.key_id)
        self._by_hash.clear()
        self._unknown.clear()

    async def refresh(self) -> None:
        """Re-read every cached key and apply any change a lost NOTIFY hid: a changed key
        is replaced, a revoked one dropped, and either way `on_evict` runs, so a decrypted
        Bedrock key cached for it is dropped too (not served for up to its 5 minutes)."""
        digests = list(self._by_hash)
        if not digests:
            return
        rows = await self._db.fetch("get-key-contexts", digests)
        fresh = {bytes(r["key_hash"]): KeyContext(r) for r in rows}
        for digest in digests:
            cached = self._by_hash.get(digest)
            if cached is None:  # evicted while the query ran; the next lookup reloads it
                continue
            now = fresh.get(digest)
            if now is not None and _same_context(cached, now):
                continue
            if now is None:
                del self._by_hash[digest]
            else:
                self._by_hash[digest] = now
            if self._on_evict is not None:
                self._on_evict(cached.key_id)

    async def refresh_forever(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh()
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                log.warning("key_refresh_failed", error=type(exc).__name__)

    def on_notify(self, payload: str) -> None:
        try:
            self.evict_key_id(int(payload))
        except ValueError:
            self.clear()
