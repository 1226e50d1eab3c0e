"""Envelope encryption of Bedrock API keys at rest, and the short-lived cache of decrypted ones.

Each secret gets its own random 256-bit data key; the secret is sealed with AES-256-GCM
under it and only the data key's wrapped form is stored beside it. The data key comes
from AWS KMS `GenerateDataKey` when a KMS key is configured
(https://docs.aws.amazon.com/kms/latest/APIReference/API_GenerateDataKey.html), else it is
wrapped with AES-256-GCM under a local 32-byte master key file in the data directory.

Blob layout (version 1):

    0x01 | wrapped_len:u16 | wrapped data key | nonce (12) | ciphertext + GCM tag (16)

The GCM associated data is a fixed label, the owner (e.g. the access key id) and the
blob's header, so a blob copied to another owner, or edited anywhere, fails to open.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.config import Config

VERSION = 1
NONCE = 12
KEY_BYTES = 32
MASTER_KEY_FILE = "bedrock-master.key"
_LABEL = b"ccproxy/bedrock-key/v1\x00"
_WRAP_AAD = b"ccproxy/data-key/v1"
_u16 = struct.Struct("!H")
# KMS encryption context: logged by CloudTrail and required again on Decrypt.
# https://docs.aws.amazon.com/kms/latest/developerguide/encrypt_context.html
KMS_CONTEXT = {"purpose": "ccproxy-bedrock-key"}


class EnvelopeError(Exception):
    """A blob cannot be opened (tampered, wrong owner, wrong key) or a key is unusable."""


class Keyring(Protocol):
    async def generate_data_key(self) -> tuple[bytes, bytes]:
        """A fresh data key: (plaintext, wrapped)."""
        ...

    async def decrypt_data_key(self, wrapped: bytes) -> bytes:
        """The plaintext of a wrapped data key; EnvelopeError when it cannot be unwrapped."""
        ...


class LocalKeyring:
    """Data keys wrapped under a local master key file (created 0600 on first use)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._master: AESGCM | None = None

    def __repr__(self) -> str:
        return f"LocalKeyring({str(self.path)!r})"

    def _aead(self) -> AESGCM:
        AESGCM, _ = _crypto()
        if self._master is None:
            self._master = AESGCM(self._load_or_create())
        return self._master

    def _load_or_create(self) -> bytes:
        try:
            key = self.path.read_bytes()
        except FileNotFoundError:
            key = self._create()
        if len(key) != KEY_BYTES:
            raise EnvelopeError(f"master key file {self.path} is not {KEY_BYTES} bytes")
        return key

    def _create(self) -> bytes:
        """Write a new key atomically: a private temp file, then link() it into place, so a
        concurrent creator (another worker) can never leave a half-written or second key."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = secrets.token_bytes(KEY_BYTES)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(key)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                return self.path.read_bytes()  # someone else won the race: use theirs
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return key

    async def generate_data_key(self) -> tuple[bytes, bytes]:
        plaintext = secrets.token_bytes(KEY_BYTES)
        nonce = secrets.token_bytes(NONCE)
        return plaintext, nonce + self._aead().encrypt(nonce, plaintext, _WRAP_AAD)

    async def decrypt_data_key(self, wrapped: bytes) -> bytes:
        if len(wrapped) != NONCE + KEY_BYTES + 16:
            raise EnvelopeError("wrapped data key has the wrong length")
        aead = self._aead()
        _, invalid_tag = _crypto()
        try:
            return aead.decrypt(wrapped[:NONCE], wrapped[NONCE:], _WRAP_AAD)
        except invalid_tag:
            raise EnvelopeError("data key does not open with this master key") from None


class KmsKeyring:
    """Data keys from AWS KMS (`GenerateDataKey` AES_256 / `Decrypt`), via aioboto3.

    The client is created on first use and kept; `close()` it at shutdown.
    """

    def __init__(
        self,
        key_id: str,
        region: str,
        *,
        endpoint_url: str | None = None,
        session: Any = None,
    ) -> None:
        self.key_id = key_id
        self.region = region
        self._endpoint_url = endpoint_url
        self._session = session
        self._client: Any = None
        self._stack: contextlib.AsyncExitStack | None = None

    def __repr__(self) -> str:
        return f"KmsKeyring({self.key_id!r}, {self.region!r})"

    async def _kms(self) -> Any:
        if self._client is None:
            import aioboto3  # only KMS deployments pay for the import

            session = self._session or aioboto3.Session()
            stack = contextlib.AsyncExitStack()
            self._client = await stack.enter_async_context(
                session.client("kms", region_name=self.region, endpoint_url=self._endpoint_url)
            )
            self._stack = stack
        return self._client

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
        self._stack = self._client = None

    async def generate_data_key(self) -> tuple[bytes, bytes]:
        from botocore.exceptions import BotoCoreError, ClientError

        kms = await self._kms()
        try:
            out = await kms.generate_data_key(KeyId=self.key_id, KeySpec="AES_256", EncryptionContext=KMS_CONTEXT)
        except (BotoCoreError, ClientError) as exc:
            raise EnvelopeError(f"KMS GenerateDataKey failed: {_kms_reason(exc)}") from None
        return bytes(out["Plaintext"]), bytes(out["CiphertextBlob"])

    async def decrypt_data_key(self, wrapped: bytes) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        kms = await self._kms()
        try:
            out = await kms.decrypt(CiphertextBlob=wrapped, KeyId=self.key_id, EncryptionContext=KMS_CONTEXT)
        except (BotoCoreError, ClientError) as exc:
            raise EnvelopeError(f"KMS Decrypt failed: {_kms_reason(exc)}") from None
        plaintext = bytes(out["Plaintext"])
        if len(plaintext) != KEY_BYTES:
            raise EnvelopeError("KMS returned a data key of the wrong length")
        return plaintext


def _kms_reason(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", type(exc).__name__))
    return type(exc).__name__


def keyring_from_config(config: Config) -> Keyring:
    """KMS when `kms_key_id` is set (region from the key ARN, else the Bedrock default),
    else the master key file in the data directory."""
    if config.kms_key_id:
        parts = config.kms_key_id.split(":")
        region = parts[3] if config.kms_key_id.startswith("arn:") and len(parts) > 3 else ""
        return KmsKeyring(config.kms_key_id, region or config.bedrock_default_region)
    return LocalKeyring(config.data_path / MASTER_KEY_FILE)


def _aad(owner: str, header: bytes) -> bytes:
    raw_owner = owner.encode()
    return _LABEL + _u16.pack(len(raw_owner)) + raw_owner + header


def _crypto() -> tuple[type[AESGCM], type[Exception]]:
    """cryptography costs ~6 MB of memory; it loads with the first Bedrock key used."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM, InvalidTag


async def seal(keyring: Keyring, secret: bytes, owner: str) -> bytes:
    """Encrypt `secret` for `owner` under a fresh data key; returns the blob to store."""
    data_key, wrapped = await keyring.generate_data_key()
    if len(wrapped) > 0xFFFF:
        raise EnvelopeError("wrapped data key too long")
    header = bytes((VERSION,)) + _u16.pack(len(wrapped)) + wrapped
    nonce = secrets.token_bytes(NONCE)
    aesgcm, _ = _crypto()
    sealed = aesgcm(data_key).encrypt(nonce, secret, _aad(owner, header))
    return header + nonce + sealed


async def unseal(keyring: Keyring, blob: bytes, owner: str) -> bytes:
    """Decrypt a blob made by `seal` for the same owner; EnvelopeError otherwise."""
    if len(blob) < 3 or blob[0] != VERSION:
        raise EnvelopeError("unknown envelope version")
    (wrapped_len,) = _u16.unpack_from(blob, 1)
    header_end = 3 + wrapped_len
    if len(blob) < header_end + NONCE + 16:
        raise EnvelopeError("envelope truncated")
    data_key = await keyring.decrypt_data_key(blob[3:header_end])
    nonce = blob[header_end : header_end + NONCE]
    aesgcm, invalid_tag = _crypto()
    try:
        return aesgcm(data_key).decrypt(nonce, blob[header_end + NONCE :], _aad(owner, blob[:header_end]))
    except (invalid_tag, ValueError):
        raise EnvelopeError("envelope does not open (tampered, or another owner's)") from None


class SecretCache:
    """Decrypted secrets by owner for `ttl` seconds (SPEC §4: 5 min), dropped at once by
    `invalidate` on rotate/revoke. Never shows its values."""

    __slots__ = ("_clock", "_entries", "ttl")

    def __init__(self, ttl: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[float, bytes]] = {}

    def __repr__(self) -> str:
        return f"SecretCache({len(self._entries)} entries, ttl={self.ttl})"

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, owner: str) -> bytes | None:
        entry = self._entries.get(owner)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[owner]
            return None
        return entry[1]

    def put(self, owner: str, secret: bytes) -> None:
        self._entries[owner] = (self._clock() + self.ttl, secret)
        if len(self._entries) > 4096:
            self._prune()

    def invalidate(self, owner: str) -> None:
        self._entries.pop(owner, None)

    def clear(self) -> None:
        self._entries.clear()

    def _prune(self) -> None:
        now = self._clock()
        for owner in [o for o, (expires, _) in self._entries.items() if expires <= now]:
            del self._entries[owner]

    async def unsealed(self, keyring: Keyring, blob: bytes, owner: str) -> bytes:
        """The cached secret, else `unseal` it and cache it."""
        cached = self.get(owner)
        if cached is None:
            cached = await unseal(keyring, blob, owner)
            self.put(owner, cached)
        return cached
