"""Amazon Bedrock client for the fallback path: model mapping, request body preparation,
auth (Bedrock API key or SigV4), and InvokeModel / InvokeModelWithResponseStream /
CountTokens calls whose answers come back in Anthropic's formats.

Request/response shapes:
https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-anthropic-claude-messages.html
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModelWithResponseStream.html
Bedrock calls are never retried (SPEC §4): the caller has already failed over once.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
import orjson
import yarl

from gateway import errors
from gateway.config import Config
from gateway.eventstream import BedrockSSETranslator, OnEvent, bedrock_error, error_class

ANTHROPIC_VERSION = "bedrock-2023-05-31"
EVENTSTREAM = "application/vnd.amazon.eventstream"
_ERROR_BODY_LIMIT = 64 * 1024

# Anthropic model name (undated alias or dated id) → Bedrock model id / inference profile.
# https://docs.aws.amazon.com/bedrock/latest/userguide/models-supported.html and
# https://docs.aws.amazon.com/bedrock/latest/userguide/inference-profiles-support.html
DEFAULT_MODEL_MAP: Mapping[str, str] = {
    "claude-sonnet-4-5": "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "claude-haiku-4-5": "global.anthropic.claude-haiku-4-5-20251001-v1:0",
    "claude-opus-4-5": "global.anthropic.claude-opus-4-5-20251101-v1:0",
    "claude-opus-4-1": "us.anthropic.claude-opus-4-1-20250805-v1:0",
    "claude-opus-4": "us.anthropic.claude-opus-4-20250514-v1:0",
    "claude-sonnet-4": "us.anthropic.claude-sonnet-4-20250514-v1:0",
    "claude-3-7-sonnet": "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
    "claude-3-5-sonnet": "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
    "claude-3-5-sonnet-20240620": "us.anthropic.claude-3-5-sonnet-20240620-v1:0",
    "claude-3-5-haiku": "us.anthropic.claude-3-5-haiku-20241022-v1:0",
    "claude-3-opus": "us.anthropic.claude-3-opus-20240229-v1:0",
    "claude-3-haiku": "us.anthropic.claude-3-haiku-20240307-v1:0",
}

# What may follow a map key for it to match: nothing, a date, `-latest`, or a suffix such
# as Claude Code's `[1m]`. So `claude-opus-4-20250514` maps as `claude-opus-4`, but an
# unknown `claude-opus-4-9` does not silently become Opus 4.
_ALIAS_TAIL = re.compile(r"(?:-\d{8}|-latest)?(?:[\[@].*)?")
_GEO_PREFIX = re.compile(r"^[a-z]{2,6}(?:-[a-z]+)?\.(?=anthropic\.)")


def resolve_model(
    requested: str | None,
    key_model: str | None,
    config: Config,
    model_map: Mapping[str, str] = DEFAULT_MODEL_MAP,
) -> str:
    """The Bedrock model id: the key's own, else the mapping (longest matching name),
    else the configured default."""
    if key_model:
        return key_model
    if requested:
        best = ""
        for name in model_map:
            if len(name) > len(best) and requested.startswith(name) and _ALIAS_TAIL.fullmatch(requested, len(name)):
                best = name
        if best:
            return model_map[best]
    return config.bedrock_default_model


def base_model_id(model_id: str) -> str:
    """Strip an inference-profile prefix (`global.`, `us.`, `eu.`, `apac.`, …)."""
    return _GEO_PREFIX.sub("", model_id, count=1)


def endpoint(region: str, config: Config) -> str:
    """Bedrock runtime base URL for a region (or the configured override)."""
    if config.bedrock_endpoint_url:
        return config.bedrock_endpoint_url
    return f"https://bedrock-runtime.{region}.amazonaws.com"


def prepare_body(raw: bytes, anthropic_beta: str | None, config: Config) -> bytes:
    """Anthropic Messages body → Bedrock Invoke body: no `model`/`stream`, operator-stripped
    fields removed, `anthropic_version` and the allowed `anthropic_beta` values added."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.InvalidRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise errors.InvalidRequest("request body must be a JSON object")
    body.pop("model", None)
    body.pop("stream", None)
    for field in config.bedrock_strip_fields:
        body.pop(field, None)
    body["anthropic_version"] = ANTHROPIC_VERSION
    body.pop("anthropic_beta", None)
    if anthropic_beta:
        allowed = config.bedrock_beta_allowlist
        betas = list(dict.fromkeys(b for b in (v.strip() for v in anthropic_beta.split(",")) if b in allowed))
        if betas:
            body["anthropic_beta"] = betas
    return orjson.dumps(body)


# --- auth ----------------------------------------------------------------------------


class Auth(Protocol):
    async def headers(
        self,
        method: str,
        url: str,
        body: bytes,
        region: str,
        base: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """`base` (the headers that will be sent) plus the auth headers."""
        ...


class BearerAuth:
    """A Bedrock API key sent as a bearer token.
    https://docs.aws.amazon.com/bedrock/latest/userguide/api-keys-use.html"""

    __slots__ = ("_api_key",)

    def __init__(self, api_key: str) -> None:
        self._api_key = api_key

    def __repr__(self) -> str:
        return "BearerAuth(<redacted>)"

    async def headers(
        self,
        method: str,
        url: str,
        body: bytes,
        region: str,
        base: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        out = dict(base or {})
        out["Authorization"] = "Bearer " + self._api_key
        return out


class SigV4Auth:
    """SigV4 with the deployment's AWS credentials (default chain: env, ECS task role, …).

    `credentials` is a (possibly refreshable) aiobotocore credentials object; when omitted
    it is resolved once from aioboto3's default chain. Frozen credentials are taken per
    request so a refreshed task-role session is picked up.
    """

    __slots__ = ("_credentials", "_lock")

    def __init__(self, credentials: Any = None) -> None:
        self._credentials = credentials
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return "SigV4Auth(<credentials>)"

    async def _resolve(self) -> Any:
        if self._credentials is None:
            async with self._lock:
                if self._credentials is None:
                    import aioboto3  # only deployments signing with SigV4 pay for the import

                    credentials = await aioboto3.Session().get_credentials()
                    if credentials is None:
                        raise errors.FallbackAccessDenied("no AWS credentials in the default chain")
                    self._credentials = credentials
        return self._credentials

    async def headers(
        self,
        method: str,
        url: str,
        body: bytes,
        region: str,
        base: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        credentials = await self._resolve()
        frozen = await credentials.get_frozen_credentials()
        # botocore costs ~5 MB of memory: only deployments that sign with SigV4 load it.
        from botocore.auth import SigV4Auth as _BotocoreSigV4
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, data=body, headers=dict(base or {}))
        _BotocoreSigV4(frozen, "bedrock", region).add_auth(request)
        return dict(request.headers.items())


# --- calls ---------------------------------------------------------------------------


def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    # `seconds` bounds time to response headers (asyncio.timeout around the request) and
    # any silence inside the body; there is no total, so long answers may stream on.
    return aiohttp.ClientTimeout(total=None, connect=seconds, sock_read=seconds)


def _model_url(base_url: str, model_id: str, action: str) -> str:
    # Model ids contain ':' (…-v1:0) and ARNs contain '/': both percent-encoded, as the
    # AWS SDKs do; SigV4 then signs the path encoded once more (botocore does this).
    return f"{base_url.rstrip('/')}/model/{quote(model_id, safe='')}/{action}"


async def _raise_for_status(resp: aiohttp.ClientResponse) -> None:
    """Bedrock error response → the gateway error SPEC §4 maps it to."""
    raw = b""
    try:
        while len(raw) < _ERROR_BODY_LIMIT:
            piece = await resp.content.read(_ERROR_BODY_LIMIT - len(raw))
            if not piece:
                break
            raw += piece
    except (aiohttp.ClientError, OSError, TimeoutError):
        pass  # the status alone still maps to an error
    code = resp.headers.get("x-amzn-ErrorType", "")
    message = ""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        message = str(data.get("message") or data.get("Message") or "")
        if not code:
            code = str(data.get("__type") or "").rsplit("#", 1)[-1]
    error = error_class(code, resp.status)
    message = message or f"Bedrock returned HTTP {resp.status} {code.split(':', 1)[0]}".strip()
    raise bedrock_error(error, message, resp.headers.get("retry-after"))


def _unavailable(exc: BaseException) -> errors.GatewayError:
    kind = "timed out" if isinstance(exc, TimeoutError) else f"failed ({type(exc).__name__})"
    return errors.Overloaded(f"Bedrock request {kind}")


async def _post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    accept: str,
    auth: Auth,
    region: str,
    timeout: float,  # noqa: ASYNC109 - seconds to headers; used with asyncio.timeout
    deadline: float,
    proxy: str | None,
) -> aiohttp.ClientResponse:
    """POST and wait for the response headers; non-2xx and transport failures raise."""
    base = {"Content-Type": "application/json", "Accept": accept}
    headers = await auth.headers("POST", url, body, region, base)
    try:
        async with asyncio.timeout_at(deadline):
            resp = await session.post(
                # encoded=True: send the path exactly as signed (yarl would decode %3A)
                yarl.URL(url, encoded=True),
                data=body,
                headers=headers,
                timeout=_timeout(timeout),
                allow_redirects=False,
                proxy=proxy,  # HTTPS_PROXY: aiohttp tunnels https with CONNECT
            )
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise _unavailable(exc) from exc
    if resp.status >= 300:
        try:
            await _raise_for_status(resp)
        finally:
            resp.close()
    return resp


class BedrockResponse:
    """An answer from Bedrock in Anthropic form.

    Non-streaming: `body` is the Anthropic message JSON exactly as Bedrock sent it.
    Streaming: iterate (`async for chunk in response`, or `readany()` until b"") for
    Anthropic SSE bytes. Always
    `close()` it (or use `async with`): it owns the upstream connection.
    """

    __slots__ = (
        "_done",
        "_pending",
        "_resp",
        "body",
        "model_id",
        "request_id",
        "status",
        "stream",
        "translator",
    )

    def __init__(
        self,
        resp: aiohttp.ClientResponse,
        model_id: str,
        *,
        body: bytes = b"",
        translator: BedrockSSETranslator | None = None,
        pending: bytes = b"",
    ) -> None:
        self._resp = resp
        self.status = resp.status
        self.model_id = model_id
        self.request_id = resp.headers.get("x-amzn-RequestId", "")
        self.body = body
        self.stream = translator is not None
        self.translator = translator
        self._pending = pending
        self._done = translator is None

    def __aiter__(self) -> BedrockResponse:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.readany()
        if not chunk:
            raise StopAsyncIteration
        return chunk

    async def readany(self) -> bytes:
        """The SSE bytes of the frames that arrived since the last call; b"" at the end."""
        if self._pending:
            out, self._pending = self._pending, b""
            return out
        translator = self.translator
        if self._done or translator is None:
            return b""
        try:
            while True:
                try:
                    data = await self._resp.content.readany()
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    out = translator.fail(errors.Overloaded, _unavailable(exc).message)
                    self._finish(release=False)
                    return out
                if not data:
                    out = translator.finish()
                    self._finish(release=translator.failure is None)
                    return out
                out = translator.feed(data)
                if translator.finished:
                    self._finish(release=False)
                if out or self._done:
                    return out
        except BaseException:
            # cancellation (client went away) or anything unexpected: drop the connection
            self._finish(release=False)
            raise

    def _finish(self, *, release: bool) -> None:
        self._done = True
        if release:
            self._resp.release()
        else:
            self._resp.close()

    def close(self) -> None:
        """Release the upstream connection (closing it if the body was not read to the end)."""
        self._done = True
        self._pending = b""
        if self._resp.content.at_eof() and not self._resp.closed:
            self._resp.release()
        else:
            self._resp.close()

    async def __aenter__(self) -> BedrockResponse:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


async def invoke(
    session: aiohttp.ClientSession,
    *,
    base_url: str,
    model_id: str,
    body: bytes,
    stream: bool,
    auth: Auth,
    region: str,
    timeout: float,  # noqa: ASYNC109 - seconds to headers; used with asyncio.timeout
    on_event: OnEvent | None = None,
    proxy: str | None = None,
) -> BedrockResponse:
    """Call InvokeModel(WithResponseStream) with a prepared body (see `prepare_body`).

    Failures before the first byte raise `gateway.errors` types (SPEC §4), including a
    stream whose first frame is an exception; later ones become an SSE `error` event.
    `on_event(type, json)` sees every emitted SSE event (usage metering).
    """
    action = "invoke-with-response-stream" if stream else "invoke"
    url = _model_url(base_url, model_id, action)
    # One budget for the headers and the first output (or the whole JSON body).
    deadline = asyncio.get_running_loop().time() + timeout
    accept = EVENTSTREAM if stream else "application/json"
    resp = await _post(session, url, body, accept, auth, region, timeout, deadline, proxy)
    try:
        if not stream:
            try:
                async with asyncio.timeout_at(deadline):
                    data = await resp.read()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise _unavailable(exc) from exc
            resp.release()
            return BedrockResponse(resp, model_id, body=data)
        translator = BedrockSSETranslator(on_event)
        # Read up to the first SSE output so that a failure before it can still be an
        # HTTP error: nothing has reached the client yet.
        first = b""
        try:
            async with asyncio.timeout_at(deadline):
                while not first:
                    data = await resp.content.readany()
                    first = translator.feed(data) if data else translator.finish()
                    if not data:
                        break
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise _unavailable(exc) from exc
        failure = translator.failure
        if failure is not None and translator.emitted == 0:
            raise failure.exception()
        response = BedrockResponse(resp, model_id, translator=translator, pending=first)
        if translator.finished:
            response._finish(release=translator.failure is None and resp.content.at_eof())
        return response
    except BaseException:
        resp.close()
        raise


async def count_tokens(
    session: aiohttp.ClientSession,
    *,
    base_url: str,
    model_id: str,
    body: bytes,
    auth: Auth,
    region: str,
    timeout: float,  # noqa: ASYNC109 - seconds to headers; used with asyncio.timeout
    proxy: str | None = None,
) -> bytes:
    """Bedrock CountTokens for a prepared Invoke body → Anthropic `{"input_tokens": N}`.
    https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_CountTokens.html"""
    invoke_body = orjson.loads(body)
    if "max_tokens" not in invoke_body:
        # Anthropic's count_tokens takes no max_tokens, but the wrapped Invoke body must be
        # valid, and with thinking on it must exceed the thinking budget.
        thinking = invoke_body.get("thinking")
        budget = thinking.get("budget_tokens", 0) if isinstance(thinking, dict) else 0
        invoke_body["max_tokens"] = int(budget) + 1 if budget else 1
        body = orjson.dumps(invoke_body)
    payload = orjson.dumps({"input": {"invokeModel": {"body": base64.b64encode(body).decode()}}})
    # CountTokens takes a foundation model id, not an inference profile.
    url = _model_url(base_url, base_model_id(model_id), "count-tokens")
    deadline = asyncio.get_running_loop().time() + timeout
    resp = await _post(session, url, payload, "application/json", auth, region, timeout, deadline, proxy)
    try:
        async with asyncio.timeout_at(deadline):
            data = await resp.read()
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise _unavailable(exc) from exc
    finally:
        resp.release()
    try:
        tokens = int(orjson.loads(data)["inputTokens"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise errors.Overloaded("Bedrock CountTokens returned an unexpected body") from exc
    return orjson.dumps({"input_tokens": tokens})
