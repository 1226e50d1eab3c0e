"""A fake Amazon Bedrock runtime that speaks the real wire formats (JSON and event stream).

It answers with the same Anthropic messages and events as `bench.fake_anthropic`, so a
fallback answer can be compared byte for byte with the plan's. It checks the body it is
sent (no `model`, no `stream`, `anthropic_version: bedrock-2023-05-31`) and the auth
(a Bedrock API key as a bearer token, or a SigV4 signature by its access key, verified
by re-signing with botocore).

What it answers is chosen per request like the fake Anthropic: the `x-fake-scenario`
header, else the next entry queued with `FakeBedrock.queue(...)` / `POST /_fake/queue`,
else the default (`text`). Scenarios (`kind` or `kind:arg`):
  text, tool_use, thinking, cache       — a normal answer of that shape
  events:N                               — a stream with N text deltas (bench)
  pace:MS                                — `text` with frames MS milliseconds apart
  split:N                                — `text`, written N bytes at a time
  throttle / denied / validation / unavailable — 429 / 403 / 400 / 503 Bedrock errors
  error:STATUS:ErrorType                 — any Bedrock error response
  exception_first[:type]                 — 200 stream whose first frame is an exception
                                           (default throttlingException)
  exception_midstream[:type]             — some chunks, then an exception frame
                                           (default modelStreamErrorException)
  slow_headers:SECONDS / reset           — delay the headers / drop the connection

APIs: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModel.html,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModelWithResponseStream.html,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_CountTokens.html
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hmac
from collections import deque
from typing import Any

import orjson
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from bench import fakes
from bench.fake_anthropic import Seen, message_json, stream_events
from gateway.eventstream import encode_frame

ERROR_NAMESPACE = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
NAMED_ERRORS = {
    "throttle": (429, "ThrottlingException", "Too many requests, please wait before trying again."),
    "denied": (
        403,
        "AccessDeniedException",
        "You don't have access to the model with the specified model ID.",
    ),
    "validation": (
        400,
        "ValidationException",
        "Malformed input request, please reformat your input and try again.",
    ),
    "unavailable": (
        503,
        "ServiceUnavailableException",
        "Bedrock is unable to process your request.",
    ),
}
# Status of each in-stream exception when the same failure ends a non-streaming call.
EXCEPTION_STATUS = {
    "throttlingException": 429,
    "validationException": 400,
    "modelStreamErrorException": 424,
    "modelTimeoutException": 408,
    "internalServerException": 500,
    "serviceUnavailableException": 503,
}
METRICS = {"invocationLatency": 812, "firstByteLatency": 215}
CHUNK_HEADERS = {
    ":event-type": "chunk",
    ":content-type": "application/json",
    ":message-type": "event",
}
COUNT_TOKENS = 42
MAX_SKEW = datetime.timedelta(minutes=5)


def anthropic_model(model_id: str) -> str:
    """What Bedrock reports as `model`: the Anthropic name inside the Bedrock id."""
    name = model_id.rsplit("anthropic.", 1)[-1]
    return name.split("-v", 1)[0] if "-v" in name else name


def event_json(event: bytes) -> bytes:
    """The `data:` JSON of one `event: …\\ndata: …\\n\\n` SSE event."""
    return event.split(b"\ndata: ", 1)[1].rstrip(b"\n")


def chunk_frame(event: bytes) -> bytes:
    return encode_frame(CHUNK_HEADERS, b'{"bytes":"' + base64.b64encode(event) + b'"}')


def exception_frame(exception_type: str, message: str) -> bytes:
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    body: dict[str, Any] = {"message": message}
    if exception_type == "modelStreamErrorException":
        body.update(originalStatusCode=500, originalMessage=message)
    return encode_frame(headers, orjson.dumps(body))


def bedrock_events(kind: str, model: str, n: int = 3) -> list[bytes]:
    """The Anthropic event JSONs Bedrock streams for an answer: fake Anthropic's events,
    with `amazon-bedrock-invocationMetrics` added to message_stop as Bedrock does."""
    out: list[bytes] = []
    input_tokens = output_tokens = 0
    for event in stream_events(kind, model, n):
        data = event_json(event)
        parsed = orjson.loads(data)
        if parsed["type"] == "message_start":
            input_tokens = parsed["message"]["usage"]["input_tokens"]
        elif parsed["type"] == "message_delta":
            output_tokens = parsed["usage"]["output_tokens"]
        elif parsed["type"] == "message_stop":
            metrics = {
                "inputTokenCount": input_tokens,
                "outputTokenCount": output_tokens,
                **METRICS,
            }
            data = orjson.dumps({**parsed, "amazon-bedrock-invocationMetrics": metrics})
        out.append(data)
    return out


def stream_body(kind: str, model: str, n: int = 3) -> bytes:
    return b"".join(chunk_frame(e) for e in bedrock_events(kind, model, n))


# What Bedrock's Invoke API accepts in a Claude body, written down independently of the
# gateway's own table (gateway/bedrock_features.py) so a mapping mistake there fails a test.
# https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-anthropic-claude-messages-request-response.html
ACCEPTED_BETAS = frozenset(
    {
        "interleaved-thinking-2025-05-14",
        "context-1m-2025-08-07",
        "context-management-2025-06-27",
        "effort-2025-11-24",
        "fine-grained-tool-streaming-2025-05-14",
        "tool-search-tool-2025-10-19",
        "tool-examples-2025-10-29",
        "extended-cache-ttl-2025-04-11",
        "mid-conversation-system-2026-04-07",
        "token-efficient-tools-2025-02-19",
        "computer-use-2024-10-22",
        "computer-use-2025-01-24",
        "output-128k-2025-02-19",
    }
)
TOP_FIELDS = frozenset(
    {
        "anthropic_version",
        "anthropic_beta",
        "max_tokens",
        "system",
        "messages",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "tools",
        "tool_choice",
        "thinking",
        "metadata",
    }
)
# Fields (top level or of a tool) Bedrock takes only with their beta in anthropic_beta.
BETA_FIELDS = {
    "context_management": "context-management-2025-06-27",
    "output_config": "effort-2025-11-24",
    "defer_loading": "tool-search-tool-2025-10-19",
    "input_examples": "tool-examples-2025-10-29",
}
OUTPUT_CONFIG_KEYS = frozenset({"effort"})
TOOL_FIELDS = frozenset({"name", "description", "input_schema", "type", "cache_control", "eager_input_streaming"})
TOOL_TYPE_PREFIXES = ("custom", "bash_", "text_editor_", "computer_", "tool_search_tool_")
CACHE_CONTROL_KEYS = frozenset({"type", "ttl"})
CACHE_TTLS = frozenset({"5m", "1h"})
BLOCK_TYPES = frozenset(
    {"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking", "tool_reference"}
)


def _extra(path: str) -> str:
    return f"{path}: Extra inputs are not permitted"


def _cache_problem(path: str, block: dict[str, Any]) -> str | None:
    control = block.get("cache_control")
    if control is None:
        return None
    if not isinstance(control, dict):
        return f"{path}.cache_control: Input should be an object"
    for key in control:
        if key not in CACHE_CONTROL_KEYS:
            return _extra(f"{path}.cache_control.{key}")
    if "ttl" in control and control["ttl"] not in CACHE_TTLS:
        return f"{path}.cache_control.ttl: Input should be '5m' or '1h'"
    return None


def invoke_body_problem(body: dict[str, Any]) -> str | None:
    """Bedrock's ValidationException message for a body it would refuse, else None."""
    betas = body.get("anthropic_beta") or []
    for beta in betas:
        if beta not in ACCEPTED_BETAS:
            return "invalid beta flag"
    for field in body:
        if field in TOP_FIELDS:
            continue
        needed = BETA_FIELDS.get(field)
        if needed is None or needed not in betas:
            return _extra(field)
    output_config = body.get("output_config")
    if isinstance(output_config, dict):
        for key in output_config:
            if key not in OUTPUT_CONFIG_KEYS:
                return _extra(f"output_config.{key}")
    for i, tool in enumerate(body.get("tools") or []):
        kind = str(tool.get("type", "custom"))
        if not kind.startswith(TOOL_TYPE_PREFIXES):
            return f"tools.{i}: Input tag '{kind}' found using 'type' does not match any of the expected tags"
        for key in tool:
            if key not in TOOL_FIELDS and not (key in BETA_FIELDS and BETA_FIELDS[key] in betas):
                return _extra(f"tools.{i}.{key}")
        problem = _cache_problem(f"tools.{i}", tool)
        if problem:
            return problem
    system = body.get("system")
    for i, block in enumerate(system if isinstance(system, list) else []):
        problem = _cache_problem(f"system.{i}", block)
        if problem:
            return problem
    for i, message in enumerate(body.get("messages") or []):
        role = message.get("role")
        if role not in ("user", "assistant") and not (
            role == "system" and "mid-conversation-system-2026-04-07" in betas
        ):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        content = message.get("content")
        for j, block in enumerate(content if isinstance(content, list) else []):
            if block.get("type") not in BLOCK_TYPES:
                tag = block.get("type")
                return f"messages.{i}.content.{j}: Input tag '{tag}' found using 'type' does not match any expected tag"
            problem = _cache_problem(f"messages.{i}.content.{j}", block)
            if problem:
                return problem
    return None


def error_response(status: int, error_type: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps({"message": message}),
        content_type="application/json",
        headers={"x-amzn-ErrorType": error_type + ERROR_NAMESPACE, "x-amzn-RequestId": "fake-err"},
    )


class FakeBedrock:
    """The fake's state: credentials it accepts, queued scenarios, requests seen."""

    def __init__(
        self,
        *,
        api_key: str = "fake-bedrock-api-key",
        access_key_id: str = "AKIDFAKEBEDROCK",
        secret_key: str = "fake-secret-key",  # noqa: S107 - a fake's test credential
        default: str = "text",
    ) -> None:
        self.api_key = api_key
        self.access_key_id = access_key_id
        self.secret_key = secret_key
        self.default = default
        self.scripted: deque[str] = deque()
        self.requests: list[Seen] = []
        self.sent: list[bytes] = []  # each streamed body, exactly as written
        self.record = True
        self._cache: dict[tuple[str, int, str], bytes] = {}

    def queue(self, *scenarios: str) -> None:
        self.scripted.extend(scenarios)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/model/{model_id}/invoke", self.invoke)
        app.router.add_post("/model/{model_id}/invoke-with-response-stream", self.invoke_stream)
        app.router.add_post("/model/{model_id}/count-tokens", self.count_tokens)
        app.router.add_post("/_fake/queue", self.queue_handler)
        return app

    async def queue_handler(self, request: web.Request) -> web.Response:
        data = await request.json()
        self.queue(*data["scenarios"])
        return web.json_response({"queued": len(self.scripted)})

    # --- checks ------------------------------------------------------------------

    def _scenario(self, request: web.Request) -> str:
        header = request.headers.get("x-fake-scenario")
        if header:
            return header
        if self.scripted:
            return self.scripted.popleft()
        return self.default

    def _authorized(self, request: web.Request, body: bytes) -> bool:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return hmac.compare_digest(auth[7:].encode(), self.api_key.encode())
        if auth.startswith("AWS4-HMAC-SHA256 "):
            return self._sigv4_valid(request, body, auth)
        return False

    def _sigv4_valid(self, request: web.Request, body: bytes, auth: str) -> bool:
        """Re-sign the request as received, with the same X-Amz-Date, and compare."""
        try:
            fields = dict(part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 ") :].split(","))
            access_key, day, region, service, terminal = fields["Credential"].split("/")
            signed = fields["SignedHeaders"].split(";")
            amz_date = request.headers["X-Amz-Date"]
        except (KeyError, ValueError):
            return False
        if access_key != self.access_key_id or service != "bedrock" or terminal != "aws4_request":
            return False
        if "host" not in signed or "x-amz-date" not in signed or not amz_date.startswith(day):
            return False
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
        if abs(datetime.datetime.now(datetime.UTC) - when) > MAX_SKEW:
            return False
        headers = {name: request.headers.get(name, "") for name in signed}
        url = f"{request.scheme}://{request.host}{request.raw_path}"
        aws = AWSRequest(method=request.method, url=url, data=body, headers=headers)
        aws.context["timestamp"] = amz_date
        token = request.headers.get("X-Amz-Security-Token")
        signer = SigV4Auth(Credentials(access_key, self.secret_key, token), "bedrock", region)
        canonical = signer.canonical_request(aws)
        expected = signer.signature(signer.string_to_sign(aws, canonical), aws)
        return hmac.compare_digest(expected, fields.get("Signature", ""))

    @staticmethod
    def _body_problem(raw: bytes) -> str | None:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return "Malformed input request: body is not JSON"
        if not isinstance(body, dict):
            return "Malformed input request: body is not an object"
        if body.get("anthropic_version") != "bedrock-2023-05-31":
            return "Malformed input request: anthropic_version must be bedrock-2023-05-31"
        for field in ("model", "stream"):
            if field in body:
                return f"Malformed input request: extraneous key [{field}] is not permitted"
        if "anthropic_beta" in body and not isinstance(body["anthropic_beta"], list):
            return "Malformed input request: anthropic_beta must be an array"
        return invoke_body_problem(body)

    async def _early(self, request: web.Request, body: bytes, scenario: str) -> web.StreamResponse | None:
        kind, _, arg = scenario.partition(":")
        if kind == "slow_headers":
            await asyncio.sleep(float(arg))
        if kind == "reset":
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError
        if not self._authorized(request, body):
            return error_response(
                403,
                "AccessDeniedException",
                "The security token included in the request is invalid.",
            )
        if kind in NAMED_ERRORS:
            return error_response(*NAMED_ERRORS[kind])
        if kind == "error":
            status, _, error_type = arg.partition(":")
            return error_response(int(status), error_type, f"fake {error_type}")
        return None

    async def _remember(self, request: web.Request) -> bytes:
        body = await request.read()
        if self.record:
            self.requests.append(Seen(request.method, request.path, request.query_string, dict(request.headers), body))
        return body

    async def _admit(self, request: web.Request) -> tuple[str, web.StreamResponse | None]:
        """Record an Invoke request; its scenario, and the answer if it is refused before
        any model work (a scripted error, or a body Bedrock would reject)."""
        raw = await self._remember(request)
        scenario = self._scenario(request)
        refusal = await self._early(request, raw, scenario)
        if refusal is None:
            problem = self._body_problem(raw)
            if problem:
                refusal = error_response(400, "ValidationException", problem)
        return scenario, refusal

    # --- handlers ----------------------------------------------------------------

    async def invoke(self, request: web.Request) -> web.StreamResponse:
        scenario, refusal = await self._admit(request)
        if refusal is not None:
            return refusal
        kind, _, arg = scenario.partition(":")
        if kind.startswith("exception_"):
            exc = arg or ("throttlingException" if kind == "exception_first" else "modelStreamErrorException")
            name = exc[0].upper() + exc[1:]
            return error_response(EXCEPTION_STATUS.get(exc, 500), name, f"fake {exc}")
        message = message_json(kind, anthropic_model(request.match_info["model_id"]))
        usage = message["usage"]
        return web.Response(
            body=orjson.dumps(message),
            content_type="application/json",
            headers={
                "x-amzn-RequestId": "fake-invoke",
                "X-Amzn-Bedrock-Input-Token-Count": str(usage["input_tokens"]),
                "X-Amzn-Bedrock-Output-Token-Count": str(usage["output_tokens"]),
                "X-Amzn-Bedrock-Invocation-Latency": str(METRICS["invocationLatency"]),
            },
        )

    def _events_body(self, n: int, model: str) -> bytes:
        return fakes.cached(self._cache, ("events", n, model), lambda: stream_body("events", model, n))

    async def invoke_stream(self, request: web.Request) -> web.StreamResponse:
        scenario, refusal = await self._admit(request)
        if refusal is not None:
            return refusal
        kind, _, arg = scenario.partition(":")
        model = anthropic_model(request.match_info["model_id"])
        response = web.StreamResponse(
            headers={
                "content-type": "application/vnd.amazon.eventstream",
                "x-amzn-RequestId": "fake-stream",
                "X-Amzn-Bedrock-Content-Type": "application/json",
            }
        )
        await response.prepare(request)
        if kind == "events":
            body = self._events_body(int(arg or 20), model)
            await response.write(body)
            if self.record:
                self.sent.append(body)
            await response.write_eof()
            return response
        if kind == "exception_first":
            frames = [exception_frame(arg or "throttlingException", "fake exception before output")]
        elif kind == "exception_midstream":
            events = bedrock_events("text", model)[:4]
            frames = [chunk_frame(e) for e in events]
            frames.append(exception_frame(arg or "modelStreamErrorException", "fake midstream failure"))
        else:
            shape = kind if kind in ("tool_use", "thinking", "cache") else "text"
            frames = [chunk_frame(e) for e in bedrock_events(shape, model)]
        sent = bytearray()
        for frame in frames:
            if kind == "split":
                step = int(arg or 7)
                for offset in range(0, len(frame), step):
                    piece = frame[offset : offset + step]
                    sent += piece
                    await response.write(piece)
                    await asyncio.sleep(0)
                continue
            if kind == "pace":
                await asyncio.sleep(float(arg) / 1000)
            sent += frame
            await response.write(frame)
        if self.record:
            self.sent.append(bytes(sent))
        await response.write_eof()
        return response

    async def count_tokens(self, request: web.Request) -> web.StreamResponse:
        raw = await self._remember(request)
        scenario = self._scenario(request)
        early = await self._early(request, raw, scenario)
        if early is not None:
            return early
        model_id = request.match_info["model_id"]
        if not model_id.startswith("anthropic."):
            return error_response(400, "ValidationException", "The provided model identifier is invalid.")
        try:
            inner = base64.b64decode(orjson.loads(raw)["input"]["invokeModel"]["body"], validate=True)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return error_response(400, "ValidationException", "Malformed CountTokens input")
        problem = self._body_problem(inner)
        if problem:
            return error_response(400, "ValidationException", problem)
        return web.json_response({"inputTokens": COUNT_TOKENS}, headers={"x-amzn-RequestId": "fake-count"})


async def serve(host: str, port: int, default: str = "text") -> None:
    fake = FakeBedrock(default=default)
    fake.record = False
    await fakes.serve_app(fake.app(), host, port, "fake bedrock")


def main() -> None:
    fakes.run(serve, fakes.arguments(__doc__.splitlines()[0], 8200).parse_args())


if __name__ == "__main__":
    main()
