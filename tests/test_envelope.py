"""Envelope encryption of Bedrock API keys: local master key file and KMS (fake KMS)."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import stat
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from gateway import config as config_module
from gateway import envelope
from gateway.envelope import (
    EnvelopeError,
    KmsKeyring,
    LocalKeyring,
    SecretCache,
    keyring_from_config,
    seal,
    unseal,
)

SECRET = b"ABSKQmVkcm9ja0FQSUtleS1zZWNyZXQtdmFsdWU="
OWNER = "ak_owner_0001"


@pytest.fixture
def keyring(tmp_path: Path) -> LocalKeyring:
    return LocalKeyring(tmp_path / "data" / envelope.MASTER_KEY_FILE)


async def test_seal_then_unseal_round_trips(keyring):
    blob = await seal(keyring, SECRET, OWNER)
    assert SECRET not in blob
    assert blob[0] == envelope.VERSION
    assert await unseal(keyring, blob, OWNER) == SECRET
    assert await seal(keyring, SECRET, OWNER) != blob  # fresh data key and nonce each time


async def test_tampering_with_any_byte_of_the_blob_is_rejected(keyring):
    blob = await seal(keyring, SECRET, OWNER)
    wrapped_len = int.from_bytes(blob[1:3], "big")
    regions = {
        "version": 0,
        "wrapped length": 1,
        "wrapped data key": 3 + wrapped_len // 2,
        "nonce": 3 + wrapped_len + 5,
        "ciphertext": 3 + wrapped_len + envelope.NONCE + 3,
        "tag": len(blob) - 1,
    }
    for offset in regions.values():
        bad = bytearray(blob)
        bad[offset] ^= 0x01
        with pytest.raises(EnvelopeError):
            await unseal(keyring, bytes(bad), OWNER)
    for cut in (0, 2, 3 + wrapped_len, len(blob) - 1):
        with pytest.raises(EnvelopeError):
            await unseal(keyring, blob[:cut], OWNER)
    with pytest.raises(EnvelopeError):
        await unseal(keyring, blob + b"\x00", OWNER)


async def test_every_single_bit_flip_is_rejected(keyring):
    blob = await seal(keyring, b"k", OWNER)
    for offset in range(len(blob)):
        bad = bytearray(blob)
        bad[offset] ^= 0x80
        with pytest.raises(EnvelopeError):
            await unseal(keyring, bytes(bad), OWNER)


async def test_blob_of_another_owner_is_rejected(keyring):
    blob = await seal(keyring, SECRET, OWNER)
    with pytest.raises(EnvelopeError):
        await unseal(keyring, blob, "ak_owner_0002")
    with pytest.raises(EnvelopeError):
        await unseal(keyring, blob, OWNER + "\x00")


async def test_another_master_key_cannot_open_the_blob(keyring, tmp_path):
    blob = await seal(keyring, SECRET, OWNER)
    other = LocalKeyring(tmp_path / "other.key")
    with pytest.raises(EnvelopeError):
        await unseal(other, blob, OWNER)


async def test_master_key_file_is_private_and_reused(keyring):
    blob = await seal(keyring, SECRET, OWNER)
    path = keyring.path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes()) == 32
    before = path.read_bytes()
    again = LocalKeyring(path)  # a restart: same file, same key
    assert await unseal(again, blob, OWNER) == SECRET
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left


async def test_concurrent_first_use_agrees_on_one_master_key(tmp_path):
    path = tmp_path / "race.key"
    keyrings = [LocalKeyring(path) for _ in range(8)]
    blobs = await asyncio.gather(*(seal(k, SECRET, OWNER) for k in keyrings))
    for k in keyrings:
        for blob in blobs:
            assert await unseal(k, blob, OWNER) == SECRET


async def test_master_key_file_of_wrong_size_is_refused(tmp_path):
    path = tmp_path / "bad.key"
    path.write_bytes(b"short")
    with pytest.raises(EnvelopeError, match="32 bytes"):
        await seal(LocalKeyring(path), SECRET, OWNER)


def test_keyring_from_config_picks_file_or_kms(tmp_path):
    local = config_module.load({"CCPROXY_DATA_DIR": str(tmp_path)})
    ring = keyring_from_config(local)
    assert isinstance(ring, LocalKeyring)
    assert ring.path == tmp_path.resolve() / envelope.MASTER_KEY_FILE
    arn = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    kms = keyring_from_config(local.replace(kms_key_id=arn))
    assert isinstance(kms, KmsKeyring)
    assert (kms.key_id, kms.region) == (arn, "eu-west-1")
    alias = keyring_from_config(local.replace(kms_key_id="alias/ccproxy"))
    assert isinstance(alias, KmsKeyring) and alias.region == local.bedrock_default_region


def test_nothing_secret_shows_in_reprs(keyring):
    cache = SecretCache()
    cache.put(OWNER, SECRET)
    for text in (repr(cache), repr(keyring), str(cache)):
        assert SECRET.decode() not in text


# --- cache ----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_keeps_values_for_ttl_then_forgets():
    clock = Clock()
    cache = SecretCache(ttl=300, clock=clock)
    assert cache.get(OWNER) is None
    cache.put(OWNER, SECRET)
    clock.now += 299.9
    assert cache.get(OWNER) == SECRET
    clock.now += 0.1
    assert cache.get(OWNER) is None
    assert len(cache) == 0


def test_cache_invalidate_drops_at_once():
    cache = SecretCache(clock=Clock())
    cache.put(OWNER, SECRET)
    cache.put("other", b"x")
    cache.invalidate(OWNER)
    cache.invalidate("never-seen")
    assert cache.get(OWNER) is None
    assert cache.get("other") == b"x"


async def test_cache_unsealed_decrypts_once_then_serves_from_memory(keyring):
    blob = await seal(keyring, SECRET, OWNER)
    calls = 0
    real = keyring.decrypt_data_key

    async def counting(wrapped: bytes) -> bytes:
        nonlocal calls
        calls += 1
        return await real(wrapped)

    keyring.decrypt_data_key = counting  # type: ignore[method-assign]
    cache = SecretCache(clock=Clock())
    assert await cache.unsealed(keyring, blob, OWNER) == SECRET
    assert await cache.unsealed(keyring, blob, OWNER) == SECRET
    assert calls == 1
    cache.invalidate(OWNER)
    assert await cache.unsealed(keyring, blob, OWNER) == SECRET
    assert calls == 2


# --- KMS, against a fake KMS speaking the JSON 1.1 protocol ---------------------------
# https://docs.aws.amazon.com/kms/latest/APIReference/API_GenerateDataKey.html


class FakeKms:
    def __init__(self) -> None:
        self.keys: dict[bytes, tuple[bytes, dict[str, str]]] = {}
        self.targets: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        target = request.headers.get("X-Amz-Target", "")
        self.targets.append(target)
        assert request.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 ")
        body = orjson.loads(await request.read())
        if target == "TrentService.GenerateDataKey":
            assert body["KeySpec"] == "AES_256"
            plaintext, blob = os.urandom(32), b"fakekms-" + os.urandom(40)
            self.keys[blob] = (plaintext, body.get("EncryptionContext", {}))
            return self._ok({"KeyId": body["KeyId"], "Plaintext": plaintext, "CiphertextBlob": blob})
        if target == "TrentService.Decrypt":
            blob = base64.b64decode(body["CiphertextBlob"])
            found = self.keys.get(blob)
            if found is None or found[1] != body.get("EncryptionContext", {}):
                return web.Response(
                    status=400,
                    body=orjson.dumps({"__type": "InvalidCiphertextException", "message": "no"}),
                    content_type="application/x-amz-json-1.1",
                )
            return self._ok({"KeyId": body.get("KeyId"), "Plaintext": found[0]})
        return web.Response(status=400, text="unknown target")

    @staticmethod
    def _ok(data: dict[str, object]) -> web.Response:
        encoded = {k: base64.b64encode(v).decode() if isinstance(v, bytes) else v for k, v in data.items()}
        return web.Response(body=orjson.dumps(encoded), content_type="application/x-amz-json-1.1")


@pytest.fixture
async def kms_url():
    fake = FakeKms()
    app = web.Application()
    app.router.add_post("/", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", fake
    await runner.cleanup()


def _session():
    import aioboto3

    return aioboto3.Session(aws_access_key_id="AKIDTEST", aws_secret_access_key="test-secret", region_name="us-east-1")


async def test_kms_keyring_round_trips_and_rejects_foreign_blobs(kms_url):
    url, fake = kms_url
    ring = KmsKeyring("alias/ccproxy", "us-east-1", endpoint_url=url, session=_session())
    try:
        blob = await seal(ring, SECRET, OWNER)
        assert await unseal(ring, blob, OWNER) == SECRET
        assert fake.targets == ["TrentService.GenerateDataKey", "TrentService.Decrypt"]
        with pytest.raises(EnvelopeError):
            await unseal(ring, blob, "someone-else")
        wrapped_len = int.from_bytes(blob[1:3], "big")
        bad = bytearray(blob)
        bad[3 + wrapped_len - 1] ^= 1  # the KMS ciphertext blob
        with pytest.raises(EnvelopeError, match="InvalidCiphertextException"):
            await unseal(ring, bytes(bad), OWNER)
    finally:
        await ring.close()


async def test_secret_values_never_appear_in_envelope_errors(keyring):
    blob = await seal(keyring, SECRET, OWNER)
    with pytest.raises(EnvelopeError) as info:
        await unseal(keyring, blob, "x")
    assert SECRET.decode() not in str(info.value)
    assert secrets.compare_digest(await unseal(keyring, blob, OWNER), SECRET)
