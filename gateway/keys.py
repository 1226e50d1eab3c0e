"""Access keys: issue, list, revoke (the service the CLI and admin API share), and the
in-memory cache the request path reads, kept true by PostgreSQL LISTEN/NOTIFY.

A key is `ak_` + 32 random bytes in URL-safe base64. Only HMAC-SHA256(server secret, key)
is stored; the full key is shown once, at issue.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from gateway import db, envelope, errors

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
    return key[:9] + "…" if key.startswith(KEY_PREFIX) else "(not an access key)"


def display_prefix(key: str) -> str:
    return key[:9]


def load_secret(configured: str | None, data_path: Path) -> bytes:
    """The HMAC secret: the configured one, else one generated once into the data dir."""
    if configured:
        return configured.encode()
    path = data_path / "key_hash_secret"
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


async def issue(
    database: db.Database,
    hasher: KeyHasher,
    user_name: str,
    *,
    bedrock_region: str | None = None,
    bedrock_model: str | None = None,
) -> dict[str, Any]:
    """Issue a key for an active user; the returned dict holds the full key (shown once)."""
    user = await database.fetchrow("get-user-by-name", user_name)
    if user is None:
        raise errors.NotFound(f"no user named {user_name!r}")
    if user["status"] != "active":
        raise errors.InvalidRequest(f"user {user_name!r} is {user['status']}; keys need an active user")
    key = generate()
    row = await database.fetchrow(
        "insert-key", user["id"], hasher.digest(key), display_prefix(key), bedrock_region, bedrock_model
    )
    assert row is not None
    result = db.record_dict(row)
    result["key"] = key
    result["user"] = user["name"]
    return result


async def list_for_user(database: db.Database, user_name: str) -> list[dict[str, Any]]:
    user = await database.fetchrow("get-user-by-name", user_name)
    if user is None:
        raise errors.NotFound(f"no user named {user_name!r}")
    rows = await database.fetch("list-keys-for-user", user["id"])
    return [{**db.record_dict(r), "prefix": r["prefix"] + "…"} for r in rows]


async def revoke(database: db.Database, key_id: int) -> dict[str, Any]:
    row = await database.fetchrow("get-key", key_id)
    if row is None:
        raise errors.NotFound(f"no access key with id {key_id}")
    if row["status"] == "revoked":
        raise errors.InvalidRequest(f"access key {key_id} is already revoked")
    await database.execute("revoke-key", key_id)
    return {"id": key_id, "status": "revoked", "prefix": row["prefix"] + "…"}


def bedrock_owner(key_id: int) -> str:
    """The associated data that binds a sealed Bedrock key to its access key."""
    return f"access-key:{key_id}"


async def update_bedrock(
    database: db.Database,
    key_id: int,
    *,
    region: str | None = None,
    model: str | None = None,
    default_credentials: bool | None = None,
    rpm_limit: int | None = None,
) -> dict[str, Any]:
    """Set a key's Bedrock region/model ('' resets to the defaults) or its permission to
    use the deployment's own AWS credentials."""
    if await database.fetchrow("update-key-bedrock", key_id, region, model, default_credentials, rpm_limit) is None:
        raise errors.NotFound(f"no active access key with id {key_id}")
    row = await database.fetchrow("get-key", key_id)
    assert row is not None
    return {**db.record_dict(row), "prefix": row["prefix"] + "…"}


async def set_bedrock_key(
    database: db.Database, keyring: envelope.Keyring, key_id: int, secret: str | None
) -> dict[str, Any]:
    """Register (or with None, remove) a key's Bedrock API key, sealed with envelope
    encryption. The NOTIFY this update causes drops every instance's decrypted copy."""
    blob = None
    if secret is not None:
        secret = secret.strip()
        if not secret:
            raise errors.InvalidRequest("the Bedrock API key is empty")
        blob = await envelope.seal(keyring, secret.encode(), bedrock_owner(key_id))
    if await database.fetchrow("set-key-bedrock-blob", key_id, blob) is None:
        raise errors.NotFound(f"no active access key with id {key_id}")
    return {"id": key_id, "bedrock_key": "registered" if blob is not None else "removed"}


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
