"""Access keys: format, secret, HMAC storage, and the in-memory cache kept true by
LISTEN/NOTIFY across every running instance (SPEC §7)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import pytest

from bench.fake_anthropic import FakeAnthropic
from gateway import audit, errors, keys, users

if TYPE_CHECKING:
    from conftest import Gateway

BODY = orjson.dumps(
    {"model": "claude-sonnet-4-5-20250929", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
)
PLAN = {"x-api-key": "sk-ant-developer-own-key", "anthropic-version": "2023-06-01"}
KEY_RE = r"^ak_[A-Za-z0-9_-]{43,}$"


async def status_of(http: aiohttp.ClientSession, gateway: Gateway, key: str) -> int:
    async with http.post(f"{gateway.url}/ak/{key}/v1/messages", data=BODY, headers=PLAN) as resp:
        await resp.read()
        return resp.status


async def wait_for_status(
    http: aiohttp.ClientSession, gateways: list[Gateway], key: str, want: int, within: float
) -> float:
    """Poll every gateway until each answers `want`; return the seconds it took."""
    started = time.monotonic()
    pending = list(gateways)
    while pending:
        pending = [g for g in pending if await status_of(http, g, key) != want]
        if not pending:
            break
        if time.monotonic() - started > within:
            raise AssertionError(f"{len(pending)} gateway(s) still not answering {want} after {within} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


# --- format ------------------------------------------------------------------------------------


def test_generated_keys_are_ak_plus_32_random_bytes_in_url_safe_base64() -> None:
    import re

    for _ in range(200):
        key = keys.generate()
        assert re.match(KEY_RE, key), key
        assert keys.KEY_PATTERN.match(key)
        body = key[3:]
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        assert len(raw) >= 32


def test_generated_keys_are_unique_and_look_random() -> None:
    generated = [keys.generate() for _ in range(5000)]
    assert len(set(generated)) == len(generated)
    # 5000 keys × 32 bytes: every byte value should appear, roughly evenly.
    counts = [0] * 256
    for key in generated:
        body = key[3:]
        for byte in base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)):
            counts[byte] += 1
    expected = 5000 * 32 / 256
    assert min(counts) > expected * 0.7
    assert max(counts) < expected * 1.3


def test_mask_shows_ak_and_six_characters_only() -> None:
    key = keys.generate()
    masked = keys.mask(key)
    assert masked == key[:9] + "…"
    assert key[9:] not in masked
    assert "sk-ant" not in keys.mask("sk-ant-api03-secret-value")
    assert "Bearer" not in keys.mask("Bearer abc")


def test_the_key_pattern_rejects_malformed_keys() -> None:
    good = keys.generate()
    for bad in ("", "ak_", "ak_short", "sk-ant-" + good[3:], good[:-5], good + "!", good.replace("ak_", "AK_")):
        assert not keys.KEY_PATTERN.match(bad), bad


# --- the HMAC secret -------------------------------------------------------------------------


def test_a_configured_secret_is_used_and_nothing_is_written(tmp_path: Path) -> None:
    assert keys.load_secret("configured-secret", tmp_path / "data") == b"configured-secret"
    assert not (tmp_path / "data" / "key_hash_secret").exists()


def test_the_generated_secret_is_written_once_with_mode_0600_and_reused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = keys.load_secret(None, data)
    path = data / "key_hash_secret"
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32
    mtime = path.stat().st_mtime_ns
    assert keys.load_secret(None, data) == first
    assert keys.load_secret("", data) == first
    assert path.stat().st_mtime_ns == mtime
    assert keys.load_secret(None, tmp_path / "other") != first


def test_the_hash_is_hmac_sha256_with_the_secret() -> None:
    key = keys.generate()
    hasher = keys.KeyHasher(b"s1")
    assert hasher.digest(key) == hmac.new(b"s1", key.encode(), hashlib.sha256).digest()
    assert hasher.digest(key) != keys.KeyHasher(b"s2").digest(key)
    assert hasher.digest(key) != hashlib.sha256(key.encode()).digest()


async def test_the_database_never_holds_the_key_text(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    issued = await gateway.issue_key("alice")
    key = issued["key"]
    assert await status_of(http, gateway, key) == 200
    await gateway.flush_usage()
    async with gateway.database.acquire() as conn:
        row = await conn.fetchrow("SELECT key_hash, prefix FROM access_keys WHERE id = $1", issued["id"])
        tables = [r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")]
        dump = "\n".join(
            [str(r[0]) for t in tables for r in await conn.fetch(f'SELECT to_jsonb(t)::text FROM "{t}" t')]  # noqa: S608
        )
    assert bytes(row["key_hash"]) == hmac.new(b"test-secret-for-hmac", key.encode(), hashlib.sha256).digest()
    assert row["prefix"] == key[:9]
    assert key[9:] not in dump
    assert key[9:30] not in dump
    assert key[3:].encode().hex() not in dump


# --- issue, list, revoke ------------------------------------------------------------------------


async def test_issue_list_and_revoke(gateway: Gateway) -> None:
    issued = await gateway.issue_key("alice", bedrock_region="eu-west-1")
    alice = await users.get_by_name(gateway.database, "ALICE")
    listed = (await keys.list_for_user(gateway.database, alice.id)).items
    assert [k.id for k in listed] == [issued["id"]]
    assert listed[0].prefix == issued["key"][:9]  # the faces add the "…"
    assert listed[0].bedrock_region == "eu-west-1"
    assert issued["key"] not in repr(listed)
    assert all(not hasattr(k, "key_hash") and not hasattr(k, "raw_key") for k in listed)
    revoked = await keys.revoke(gateway.database, audit.SYSTEM, issued["id"])
    assert revoked.status == "revoked"
    with pytest.raises(errors.Conflict, match="already revoked"):
        await keys.revoke(gateway.database, audit.SYSTEM, issued["id"])
    with pytest.raises(errors.NotFound):
        await keys.revoke(gateway.database, audit.SYSTEM, 987654)
    with pytest.raises(errors.NotFound, match="nobody"):
        await users.get_by_name(gateway.database, "nobody")


async def test_keys_are_issued_only_to_existing_active_users(gateway: Gateway) -> None:
    await gateway.issue_key("alice")
    with pytest.raises(errors.NotFound, match="zed"):
        await users.get_by_name(gateway.database, "zed")
    with pytest.raises(errors.NotFound, match="424242"):
        await keys.issue(gateway.database, keys.KeyHasher(b"x"), audit.SYSTEM, 424242)
    async with gateway.database.acquire() as conn:
        await conn.execute("UPDATE users SET status = 'inactive' WHERE name = 'alice'")
    alice = await users.get_by_name(gateway.database, "alice")
    with pytest.raises(errors.Conflict, match="inactive"):
        await keys.issue(gateway.database, keys.KeyHasher(b"x"), audit.SYSTEM, alice.id)


# --- the request path's cache across instances ---------------------------------------------------


async def test_a_revocation_reaches_two_instances_within_one_second(
    tmp_path: Path, gateway_factory: Any, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    first = await gateway_factory(fake[1])
    second = await gateway_factory(fake[1], data_dir=str(tmp_path / "second"))  # own journal
    issued = await first.issue_key("alice")
    key = issued["key"]
    for gateway in (first, second):
        assert await status_of(http, gateway, key) == 200  # now cached in both
    # Revoked from a third party (the CLI does this), not through either instance.
    async with first.database.acquire() as conn:
        await conn.execute("UPDATE access_keys SET status = 'revoked', revoked_at = now() WHERE id = $1", issued["id"])
    took = await wait_for_status(http, [first, second], key, 404, within=1.0)
    assert took < 1.0
    # And it stays revoked (no stale cache entry comes back).
    await asyncio.sleep(0.1)
    assert [await status_of(http, g, key) for g in (first, second)] == [404, 404]


async def test_revoke_through_the_service_reaches_running_instances(
    tmp_path: Path, gateway_factory: Any, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    first = await gateway_factory(fake[1])
    second = await gateway_factory(fake[1], data_dir=str(tmp_path / "second"))  # own journal
    keep = (await first.issue_key("alice"))["key"]
    issued = await first.issue_key("alice")
    for gateway in (first, second):
        assert await status_of(http, gateway, issued["key"]) == 200
        assert await status_of(http, gateway, keep) == 200
    await keys.revoke(second.database, audit.SYSTEM, issued["id"])
    assert await wait_for_status(http, [first, second], issued["key"], 404, within=1.0) < 1.0
    for gateway in (first, second):
        assert await status_of(http, gateway, keep) == 200  # only that key


async def test_deactivating_a_user_stops_all_their_keys_within_one_second(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    a1 = (await gateway.issue_key("alice"))["key"]
    a2 = (await gateway.issue_key("alice"))["key"]
    bob = (await gateway.issue_key("bob"))["key"]
    for key in (a1, a2, bob):
        assert await status_of(http, gateway, key) == 200
    async with gateway.database.acquire() as conn:
        await conn.execute("UPDATE users SET status = 'inactive' WHERE name = 'alice'")
    assert await wait_for_status(http, [gateway], a1, 404, within=1.0) < 1.0
    assert await wait_for_status(http, [gateway], a2, 404, within=1.0) < 1.0
    assert await status_of(http, gateway, bob) == 200


async def test_an_unknown_key_that_is_then_issued_works_within_one_second(
    gateway_factory: Any, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession, monkeypatch: Any
) -> None:
    # A long negative cache: only the NOTIFY of the new key can make it work in time.
    gateway = await gateway_factory(fake[1], key_cache_negative_seconds="60")
    key = keys.generate()
    assert await status_of(http, gateway, key) == 404
    assert await status_of(http, gateway, key) == 404  # remembered as unknown
    monkeypatch.setattr(keys, "generate", lambda: key)
    issued = await gateway.issue_key("alice")
    assert issued["key"] == key
    assert await wait_for_status(http, [gateway], key, 200, within=1.0) < 1.0


async def test_the_periodic_refresh_applies_changes_a_missed_notify_hid_and_drops_decrypted_keys(
    gateway: Gateway,
) -> None:
    """Issue 13 §4: with NOTIFY suppressed (this cache has no listener), a rotated Bedrock
    key must not be served from the old decrypted copy until it expires."""
    from gateway import envelope, server

    keyring = gateway.app[server.KEYRING]
    secrets = envelope.SecretCache()
    evicted: list[int] = []

    def on_evict(key_id: int) -> None:
        evicted.append(key_id)
        secrets.invalidate(keys.bedrock_owner(key_id))

    hasher = keys.KeyHasher(keys.load_secret(gateway.config.key_hash_secret, gateway.config.data_path))
    cache = keys.KeyCache(gateway.database, hasher, 2, on_evict=on_evict)
    issued = await gateway.issue_key("alice")
    other = await gateway.issue_key("bob")
    owner = keys.bedrock_owner(issued["id"])
    await keys.set_bedrock_key(gateway.database, keyring, audit.SYSTEM, issued["id"], "ABSK-old")
    ctx = await cache.lookup(issued["key"])
    await cache.lookup(other["key"])
    assert ctx.bedrock_key_blob is not None
    assert await secrets.unsealed(keyring, ctx.bedrock_key_blob, owner) == b"ABSK-old"

    await cache.refresh()  # nothing changed: nothing evicted
    assert evicted == []

    await keys.set_bedrock_key(
        gateway.database, keyring, audit.SYSTEM, issued["id"], "ABSK-new"
    )  # its NOTIFY is missed
    await cache.refresh()
    assert evicted == [issued["id"]]  # the changed key only
    assert secrets.get(owner) is None  # the old decrypted copy is gone
    ctx = await cache.lookup(issued["key"])
    assert ctx.bedrock_key_blob is not None
    assert await secrets.unsealed(keyring, ctx.bedrock_key_blob, owner) == b"ABSK-new"

    await keys.revoke(gateway.database, audit.SYSTEM, issued["id"])
    await cache.refresh()
    assert evicted == [issued["id"], issued["id"]]
    with pytest.raises(errors.NotFound):
        await cache.lookup(issued["key"])
    assert (await cache.lookup(other["key"])).key_id == other["id"]  # untouched throughout


async def test_a_lost_listener_reconnects_and_revocations_still_arrive(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    issued = await gateway.issue_key("alice")
    key = issued["key"]
    assert await status_of(http, gateway, key) == 200
    async with gateway.database.acquire() as conn:
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()"
        )
    assert killed >= 1
    await asyncio.sleep(0.6)  # the listener's first reconnect backoff is 0.2 s
    assert await status_of(http, gateway, key) == 200
    await keys.revoke(gateway.database, audit.SYSTEM, issued["id"])
    assert await wait_for_status(http, [gateway], key, 404, within=1.0) < 1.0


# --- KeyCache against a counting stand-in database ------------------------------------------------


class Row(dict):  # type: ignore[type-arg]
    def __missing__(self, _name: str) -> None:
        return None


class CountingDatabase:
    def __init__(self, rows: dict[bytes, Row], delay: float = 0.05, fail: BaseException | None = None) -> None:
        self.rows = rows
        self.delay = delay
        self.fail = fail
        self.calls = 0

    async def fetchrow(self, name: str, digest: bytes) -> Row | None:
        assert name == "get-key-context"
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return self.rows.get(digest)


def _cache(rows: dict[bytes, Row] | None = None, **kwargs: Any) -> tuple[keys.KeyCache, CountingDatabase]:
    database = CountingDatabase(rows or {}, **kwargs)
    cache = keys.KeyCache(database, keys.KeyHasher(b"unit"), 30.0)  # type: ignore[arg-type]
    return cache, database


def _row_for(key: str, key_id: int = 7) -> tuple[bytes, Row]:
    digest = keys.KeyHasher(b"unit").digest(key)
    return digest, Row(id=key_id, user_id=1, user_name="alice", prefix=key[:9], key_hash=digest)


async def test_concurrent_first_lookups_share_one_query() -> None:
    key = keys.generate()
    digest, row = _row_for(key)
    cache, database = _cache({digest: row})
    found = await asyncio.gather(*(cache.lookup(key) for _ in range(50)))
    assert database.calls == 1
    assert {ctx.key_id for ctx in found} == {7}
    await cache.lookup(key)
    assert database.calls == 1  # answered from memory


async def test_unknown_keys_cost_one_query_then_are_remembered() -> None:
    cache, database = _cache()
    key = keys.generate()
    results = await asyncio.gather(*(cache.lookup(key) for _ in range(20)), return_exceptions=True)
    assert all(isinstance(r, errors.NotFound) for r in results)
    assert database.calls == 1
    with pytest.raises(errors.NotFound):
        await cache.lookup(key)
    assert database.calls == 1


async def test_malformed_keys_never_reach_the_database() -> None:
    cache, database = _cache()
    for bad in ("", "ak_short", "sk-ant-api03-abc", "x" * 50, "ak_" + "!" * 43):
        with pytest.raises(errors.NotFound):
            await cache.lookup(bad)
    assert database.calls == 0


async def test_an_eviction_makes_the_next_lookup_ask_again() -> None:
    key = keys.generate()
    digest, row = _row_for(key, key_id=9)
    cache, database = _cache({digest: row})
    await cache.lookup(key)
    cache.evict_key_id(9)
    del database.rows[digest]
    with pytest.raises(errors.NotFound):
        await cache.lookup(key)
    assert database.calls == 2


async def test_a_database_outage_is_a_503_and_is_not_remembered_as_unknown() -> None:
    key = keys.generate()
    cache, database = _cache(fail=OSError("connection refused"))
    with pytest.raises(errors.GatewayError) as caught:
        await cache.lookup(key)
    assert caught.value.status == 503
    assert not isinstance(caught.value, errors.NotFound)
    digest, row = _row_for(key)
    database.fail = None
    database.rows[digest] = row
    assert (await cache.lookup(key)).key_id == 7


def test_the_request_path_compares_digests_in_constant_time() -> None:
    import inspect

    source = inspect.getsource(keys.KeyCache.lookup)
    assert "compare_digest" in source
