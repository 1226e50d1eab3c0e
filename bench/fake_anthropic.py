"""A fake Anthropic Messages API that speaks the real wire format (SSE and JSON).

Used by the tests and the bench. What it answers is chosen per request by a scenario:
the `x-fake-scenario` request header (for direct calls), else the next entry queued with
`FakeAnthropic.queue(...)` / `POST /_fake/queue`, else the default (`text`).

Scenario strings are `kind` or `kind:arg`:
  text, tool_use, thinking, cache      — a normal answer of that shape (stream or not)
  events:N                              — a stream with N text deltas (bench)
  split:N                               — `text`, written N bytes at a time
  error_midstream                       — stream starts, then an in-stream `error` event
  status:CODE  / usage_limit            — an Anthropic error response (429 usage limit)
  invalid_json                          — 200 whose body is not JSON
  slow_headers:SECONDS                  — wait before sending the response headers
  silent:SECONDS                        — stream goes quiet after message_start
  pace:MS                               — stream whose events are MS milliseconds apart
  paced_events:N:MS                     — like events:N, each event written MS ms after the
                                          previous one (bench: Claude-Code-shaped streams)
  reset                                 — drop the connection without answering
  rejected:SECONDS                      — the plan's quota is exhausted: 429 usage limit whose
                                          unified headers say `rejected`, resetting in SECONDS
  unified:STATUS:U5H:U7D                — a `text` answer whose unified headers carry that
                                          status and those 5 h / 7 d utilizations (0–1)

Unified rate-limit headers (what a subscription plan reports on every response, as
Claude Code's status line reads them): `anthropic-ratelimit-unified-status` and `-reset`,
and per window `-<w>-status`, `-<w>-utilization`, `-<w>-reset`. They are sent when
`FakeAnthropic.unified` is set (`POST /_fake/unified {...}`, fields of `Unified`), and by
the two scenarios above; `Unified.windows` may hold more windows than 5h and 7d (a
per-model weekly one, say) to prove the gateway reads them generically.
`FakeAnthropic.delay_ms` (`--delay-ms`) holds every answer that long before its headers,
as the distance to the real API would (the bench's 50 ms round trip).

`POST /_fake/default {"scenario": S}` sets the default (the bench sets it per phase, since
the gateway does not forward `x-fake-scenario`). `--fast` serves the same bodies from a
raw asyncio protocol (`FastServer`) so the fake costs the bench little CPU; it knows the
scenarios the bench uses (see `FastServer`).

Stream formats: https://docs.anthropic.com/en/docs/build-with-claude/streaming
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import time
from collections import deque
from typing import Any, ClassVar, cast

import orjson
from aiohttp import web

from bench import fakes

DEFAULT_USAGE = {
    "input_tokens": 25,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "output_tokens": 1,
}
FINAL_OUTPUT_TOKENS = 12
TEXT = "Hello from the fake upstream."
CACHE_USAGE = {
    "input_tokens": 10,
    "cache_creation_input_tokens": 1500,
    "cache_read_input_tokens": 3000,
    "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 500},
    "output_tokens": 1,
}

_ids = itertools.count(1)


def sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _message(model: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"msg_fake{next(_ids):08d}",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": model,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }


def _text_block_events(index: int, pieces: list[str]) -> list[bytes]:
    out = [
        sse(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
        )
    ]
    out += [
        sse(
            "content_block_delta",
            {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": p}},
        )
        for p in pieces
    ]
    out.append(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    return out


def _closing(output_tokens: int, stop_reason: str = "end_turn", extra: dict[str, Any] | None = None) -> list[bytes]:
    usage: dict[str, Any] = {"output_tokens": output_tokens}
    usage.update(extra or {})
    return [
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": usage,
            },
        ),
        sse("message_stop", {"type": "message_stop"}),
    ]


def stream_events(kind: str, model: str, n: int = 3) -> list[bytes]:
    """The SSE events of one answer of the given kind."""
    if kind == "tool_use":
        start = sse("message_start", {"type": "message_start", "message": _message(model, dict(DEFAULT_USAGE))})
        block = {"type": "tool_use", "id": "toolu_fake01", "name": "get_weather", "input": {}}
        parts = ['{"loc', 'ation": "Par', 'is"}']
        return [
            start,
            *_text_block_events(0, ["Let me check."]),
            sse("content_block_start", {"type": "content_block_start", "index": 1, "content_block": block}),
            *[
                sse(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 1,
                        "delta": {"type": "input_json_delta", "partial_json": p},
                    },
                )
                for p in parts
            ],
            sse("content_block_stop", {"type": "content_block_stop", "index": 1}),
            *_closing(FINAL_OUTPUT_TOKENS, "tool_use"),
        ]
    if kind == "thinking":
        start = sse("message_start", {"type": "message_start", "message": _message(model, dict(DEFAULT_USAGE))})
        thinking = [
            sse(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
            ),
            sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": "Let me think step by step."},
                },
            ),
            sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"},
                },
            ),
            sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ]
        return [start, *thinking, *_text_block_events(1, ["The answer", " is 4."]), *_closing(FINAL_OUTPUT_TOKENS)]
    if kind == "cache":
        start = sse("message_start", {"type": "message_start", "message": _message(model, dict(CACHE_USAGE))})
        return [start, *_text_block_events(0, [TEXT]), *_closing(42)]
    if kind == "events":
        start = sse("message_start", {"type": "message_start", "message": _message(model, dict(DEFAULT_USAGE))})
        return [start, *_text_block_events(0, ["tok "] * n), *_closing(n)]
    if kind == "error_midstream":
        start = sse("message_start", {"type": "message_start", "message": _message(model, dict(DEFAULT_USAGE))})
        return [
            start,
            *_text_block_events(0, ["Partial"])[:2],
            sse(
                "error",
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            ),
        ]
    # text (default)
    start = sse("message_start", {"type": "message_start", "message": _message(model, dict(DEFAULT_USAGE))})
    ping = sse("ping", {"type": "ping"})
    return [
        start,
        ping,
        *_text_block_events(0, ["Hello from", " the fake", " upstream."]),
        *_closing(FINAL_OUTPUT_TOKENS),
    ]


def message_json(kind: str, model: str) -> dict[str, Any]:
    """The non-streaming answer of the given kind."""
    usage = dict(CACHE_USAGE if kind == "cache" else DEFAULT_USAGE)
    usage["output_tokens"] = 42 if kind == "cache" else FINAL_OUTPUT_TOKENS
    message = _message(model, usage)
    if kind == "tool_use":
        message["content"] = [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_fake01", "name": "get_weather", "input": {"location": "Paris"}},
        ]
        message["stop_reason"] = "tool_use"
    elif kind == "thinking":
        message["content"] = [
            {"type": "thinking", "thinking": "Let me think step by step.", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"},
            {"type": "text", "text": "The answer is 4."},
        ]
        message["stop_reason"] = "end_turn"
    else:
        message["content"] = [{"type": "text", "text": TEXT}]
        message["stop_reason"] = "end_turn"
    return message


ERRORS = {
    400: ("invalid_request_error", "messages: field required"),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    500: ("api_error", "Internal server error"),
    502: ("api_error", "Bad gateway"),
    503: ("overloaded_error", "Service unavailable"),
    529: ("overloaded_error", "Overloaded"),
}
USAGE_LIMIT_MESSAGE = "This request would exceed your account's rate limit. You have reached your usage limit."

BASE_HEADERS = {
    "anthropic-ratelimit-requests-limit": "4000",
    "anthropic-ratelimit-requests-remaining": "3999",
    # headers the gateway must not relay
    "x-fake-internal": "secret-upstream-detail",
    "cf-ray": "8f0000000000-LHR",
    "via": "1.1 fake",
}


@dataclasses.dataclass
class Unified:
    """The unified rate-limit state the fake reports. Resets are seconds from now."""

    status: str = "allowed"
    reset_in: float = 3600.0
    # window → (status, utilization 0–1, reset in seconds from now)
    windows: dict[str, tuple[str, float, float]] = dataclasses.field(
        default_factory=lambda: {"5h": ("allowed", 0.1, 3600.0), "7d": ("allowed", 0.05, 86400.0)}
    )

    def headers(self, now: float | None = None) -> dict[str, str]:
        """Exactly the headers a plan sends (https://docs.anthropic.com/en/api/rate-limits)."""
        now = time.time() if now is None else now
        prefix = "anthropic-ratelimit-unified-"
        out = {prefix + "status": self.status, prefix + "reset": str(int(now + self.reset_in))}
        for name, (status, utilization, reset_in) in self.windows.items():
            out[f"{prefix}{name}-status"] = status
            out[f"{prefix}{name}-utilization"] = repr(round(utilization, 4))
            out[f"{prefix}{name}-reset"] = str(int(now + reset_in))
        return out

    @classmethod
    def rejected(cls, seconds: float) -> Unified:
        return cls(
            status="rejected",
            reset_in=seconds,
            windows={"5h": ("rejected", 1.0, seconds), "7d": ("allowed", 0.64, 5 * 86400.0)},
        )


@dataclasses.dataclass
class Seen:
    """One request as the fake received it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


class FakeAnthropic:
    """The fake's state: queued scenarios and the requests it has seen."""

    def __init__(self, default: str = "text") -> None:
        self.default = default
        self.scripted: deque[str] = deque()
        self.requests: list[Seen] = []
        self.sent: list[bytes] = []  # the exact bytes of each streamed body, for byte-for-byte checks
        self.record = True
        self.unified: Unified | None = None  # unified rate-limit headers on every answer
        self.delay_ms = 0.0  # before every answer's headers (the round trip to the real API)
        self._cache: dict[tuple[str, int, str], list[bytes]] = {}

    def queue(self, *scenarios: str) -> None:
        self.scripted.extend(scenarios)

    def _scenario(self, request: web.Request) -> str:
        header = request.headers.get("x-fake-scenario")
        if header:
            return header
        if self.scripted:
            return self.scripted.popleft()
        return self.default

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", self.count_tokens)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/_fake/queue", self.queue_handler)
        app.router.add_post("/_fake/default", self.default_handler)
        app.router.add_post("/_fake/unified", self.unified_handler)
        return app

    async def _remember(self, request: web.Request) -> bytes:
        body = await request.read()
        if self.record:
            self.requests.append(
                Seen(request.method, request.path, request.rel_url.raw_query_string, dict(request.headers), body)
            )
        return body

    async def queue_handler(self, request: web.Request) -> web.Response:
        data = await request.json()
        self.queue(*data["scenarios"])
        return web.json_response({"queued": len(self.scripted)})

    async def unified_handler(self, request: web.Request) -> web.Response:
        data = await request.json()
        if data is None:
            self.unified = None
        else:
            windows = {k: (str(v[0]), float(v[1]), float(v[2])) for k, v in (data.get("windows") or {}).items()}
            self.unified = Unified(str(data.get("status", "allowed")), float(data.get("reset_in", 3600)), windows)
        if "delay_ms" in (data or {}):
            self.delay_ms = float(data["delay_ms"])
        return web.json_response({"unified": dataclasses.asdict(self.unified) if self.unified else None})

    def _unified_headers(self, kind: str, arg: str) -> dict[str, str]:
        """The unified headers of this answer: a scenario's own, else the fake's state."""
        if kind == "rejected":
            return Unified.rejected(float(arg or 3)).headers()
        if kind == "unified":
            status, _, rest = arg.partition(":")
            u5h, _, u7d = rest.partition(":")
            base = self.unified or Unified()
            windows = {**base.windows, "5h": (status, float(u5h or 0), 3600.0)}
            windows["7d"] = (status, float(u7d or 0), 86400.0)
            return Unified(status or "allowed", base.reset_in, windows).headers()
        return self.unified.headers() if self.unified is not None else {}

    async def default_handler(self, request: web.Request) -> web.Response:
        data = await request.json()
        self.default = str(data["scenario"])
        return web.json_response({"default": self.default})

    async def count_tokens(self, request: web.Request) -> web.StreamResponse:
        await self._remember(request)
        scenario = self._scenario(request)
        early = await self._early(request, scenario)
        if early is not None:
            return early
        return web.json_response({"input_tokens": 42}, headers={"request-id": "req_fakecount"})

    async def models(self, request: web.Request) -> web.StreamResponse:
        await self._remember(request)
        early = await self._early(request, self._scenario(request))  # errors, as for messages
        if early is not None:
            return early
        data = [
            {
                "type": "model",
                "id": "claude-sonnet-4-5-20250929",
                "display_name": "Claude Sonnet 4.5",
                "created_at": "2025-09-29T00:00:00Z",
            },
            {
                "type": "model",
                "id": "claude-haiku-4-5-20251001",
                "display_name": "Claude Haiku 4.5",
                "created_at": "2025-10-01T00:00:00Z",
            },
        ]
        return web.json_response(
            {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]},
            headers={"request-id": "req_fakemodels"},
        )

    async def _early(self, request: web.Request, scenario: str) -> web.StreamResponse | None:
        """Answers that do not depend on the body: errors, garbage, resets, delays."""
        kind, _, arg = scenario.partition(":")
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000)
        unified = self._unified_headers(kind, arg)
        if kind == "slow_headers":
            await asyncio.sleep(float(arg))
            return None
        if kind in ("usage_limit", "rejected"):
            return self._error(429, "rate_limit_error", USAGE_LIMIT_MESSAGE, unified)
        if kind == "status":
            code = int(arg)
            error_type, message = ERRORS.get(code, ("api_error", "error"))
            return self._error(code, error_type, message, unified)
        if kind == "invalid_json":
            return web.Response(
                body=b'{"id": "msg_broken", "content": [',
                content_type="application/json",
                headers={"request-id": "req_fakebroken"},
            )
        if kind == "reset":
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError
        return None

    def _error(self, code: int, error_type: str, message: str, unified: dict[str, str]) -> web.Response:
        headers = {"request-id": "req_fakeerror", **BASE_HEADERS, **unified}
        if code == 429:
            headers["retry-after"] = "7"
        body = orjson.dumps(
            {"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_fakeerror"}
        )
        return web.Response(status=code, body=body, content_type="application/json", headers=headers)

    async def messages(self, request: web.Request) -> web.StreamResponse:
        raw = await self._remember(request)
        scenario = self._scenario(request)
        early = await self._early(request, scenario)
        if early is not None:
            return early
        body = orjson.loads(raw)
        model = str(body.get("model", "claude-sonnet-4-5-20250929"))
        kind, _, arg = scenario.partition(":")
        unified = self._unified_headers(kind, arg)
        if not body.get("stream"):
            payload = orjson.dumps(message_json(kind, model))
            return web.Response(
                body=payload,
                content_type="application/json",
                headers={"request-id": "req_fakemsg", **BASE_HEADERS, **unified},
            )
        return await self._stream(request, kind, arg, model, unified)

    def _events(self, n: int, model: str) -> list[bytes]:
        """`events:N` as a list of whole events."""
        return fakes.cached(self._cache, ("events", n, model), lambda: stream_events("events", model, n))

    async def _stream(
        self, request: web.Request, kind: str, arg: str, model: str, unified: dict[str, str]
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
                "request-id": "req_fakestream",
                **BASE_HEADERS,
                **unified,
            }
        )
        await response.prepare(request)
        if kind == "events":
            # One write per event, as the real API sends each event when it is generated.
            events = self._events(int(arg or 20), model)
            for event in events:
                await response.write(event)
            if self.record:
                self.sent.append(b"".join(events))
            await response.write_eof()
            return response
        if kind == "paced_events":
            count, _, ms = arg.partition(":")
            await self._paced(response, self._paced_events(int(count or 500), model), float(ms or 10))
            return response
        events = stream_events(kind if kind in ("tool_use", "thinking", "cache", "error_midstream") else "text", model)
        sent = bytearray()
        for index, event in enumerate(events):
            if kind == "split":
                step = int(arg or 7)
                for offset in range(0, len(event), step):
                    piece = event[offset : offset + step]
                    sent += piece
                    await response.write(piece)
                    await asyncio.sleep(0)
                continue
            if kind == "silent" and index == 1:
                await asyncio.sleep(float(arg))
            if kind == "pace":
                await asyncio.sleep(float(arg) / 1000)
            sent += event
            await response.write(event)
        if self.record:
            self.sent.append(bytes(sent))
        await response.write_eof()
        return response

    def _paced_events(self, n: int, model: str) -> list[bytes]:
        return stream_events("events", model, n)

    async def _paced(self, response: web.StreamResponse, events: list[bytes], ms: float) -> None:
        # absolute deadlines, so pacing does not drift by the write time
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = bytearray()
        for index, event in enumerate(events):
            delay = start + index * ms / 1000 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await response.write(event)
            sent += event
        if self.record:
            self.sent.append(bytes(sent))
        await response.write_eof()


# --- fast mode: the same bodies from a raw asyncio protocol -----------------------------

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    529: "Overloaded",
}
_STREAM_KINDS = ("text", "tool_use", "thinking", "cache", "error_midstream", "events")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


class FastServer(asyncio.Protocol):
    """One connection of the `--fast` fake: HTTP/1.1 keep-alive, hand-parsed.

    Serves `/v1/messages` (every non-streaming kind; streams of text, tool_use, thinking,
    cache, error_midstream, events:N, paced_events:N:MS; usage_limit and status:CODE),
    `/_fake/default` and `/_fake/queue`. Other scenarios get a 501 naming `--fast`.
    Bodies equal the aiohttp mode's; `events:N` goes out one chunk and one write per event,
    other streams as one chunk.
    """

    framed: ClassVar[dict[tuple[int, str], list[bytes]]] = {}  # events:N as HTTP chunks, for every connection

    def __init__(self, fake: FakeAnthropic) -> None:
        self.fake = fake
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False  # a paced stream is being written: further input waits
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf = self.buf + data if self.buf else data
        if not self.busy:
            self._process()

    def _process(self) -> None:
        while self.transport is not None and not self.busy:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1").split("\r\n")
            method, path, _ = head[0].split(" ", 2)
            headers: dict[str, str] = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            start = end + 4
            if headers.get("transfer-encoding", "").lower() == "chunked":
                body = bytearray()
                pos = start
                while True:
                    line_end = self.buf.find(b"\r\n", pos)
                    if line_end < 0:
                        return
                    size = int(self.buf[pos:line_end].split(b";")[0], 16)
                    if size == 0:
                        trailer_end = self.buf.find(b"\r\n", line_end + 2)
                        if trailer_end < 0:
                            return
                        consumed = trailer_end + 2
                        break
                    if len(self.buf) < line_end + 2 + size + 2:
                        return
                    body += self.buf[line_end + 2 : line_end + 2 + size]
                    pos = line_end + 2 + size + 2
                raw = bytes(body)
            else:
                length = int(headers.get("content-length", "0"))
                if len(self.buf) < start + length:
                    return
                raw = self.buf[start : start + length]
                consumed = start + length
            self.buf = self.buf[consumed:]
            self._handle(method, path.split("?", 1)[0], headers, raw)

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str]) -> None:
        assert self.transport is not None
        reason = _REASONS.get(status, "Error")
        head = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {content_type}"]
        head += [f"{k}: {v}" for k, v in extra.items()]
        head.append(f"Content-Length: {len(body)}")
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    def _handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> None:
        fake = self.fake
        if path == "/_fake/default":
            fake.default = str(orjson.loads(raw)["scenario"])
            self._send(200, orjson.dumps({"default": fake.default}), "application/json", {})
            return
        if path == "/_fake/queue":
            fake.queue(*orjson.loads(raw)["scenarios"])
            self._send(200, orjson.dumps({"queued": len(fake.scripted)}), "application/json", {})
            return
        if path != "/v1/messages" or method != "POST":
            body = b'{"type":"error","error":{"type":"not_found_error"}}'
            self._send(404, body, "application/json", {})
            return
        scenario = headers.get("x-fake-scenario") or (fake.scripted.popleft() if fake.scripted else fake.default)
        kind, _, arg = scenario.partition(":")
        if kind in ("usage_limit", "status"):
            code = 429 if kind == "usage_limit" else int(arg)
            error_type, message = (
                ("rate_limit_error", USAGE_LIMIT_MESSAGE)
                if kind == "usage_limit"
                else ERRORS.get(code, ("api_error", "error"))
            )
            extra = {"request-id": "req_fakeerror", **BASE_HEADERS}
            if code == 429:
                extra["retry-after"] = "7"
            error = {"type": error_type, "message": message}
            body = orjson.dumps({"type": "error", "error": error, "request_id": "req_fakeerror"})
            self._send(code, body, "application/json", extra)
            return
        request = orjson.loads(raw)
        model = str(request.get("model", "claude-sonnet-4-5-20250929"))
        if not request.get("stream"):
            payload = orjson.dumps(message_json(kind, model))
            extra = {"request-id": "req_fakemsg", **BASE_HEADERS}
            self._send(200, payload, "application/json", extra)
            return
        if kind not in (*_STREAM_KINDS, "paced_events"):
            self._send(501, f"scenario {scenario!r} needs the aiohttp mode (no --fast)".encode(), "text/plain", {})
            return
        assert self.transport is not None
        head = (
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            "cache-control: no-cache\r\nrequest-id: req_fakestream\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in BASE_HEADERS.items())
            + "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
        if kind == "paced_events":
            count, _, ms = arg.partition(":")
            events = stream_events("events", model, int(count or 500))
            self.transport.write(head)
            self.busy = True
            loop = asyncio.get_running_loop()
            self._pace(loop, events, 0, loop.time(), float(ms or 10) / 1000)
            return
        if kind == "events":
            # One chunk and one write per event, as the real API sends each event when it
            # is generated (the relay meets them as separate reads unless they queue up).
            key = (int(arg or 20), model)
            framed = self.framed.get(key)
            if framed is None:
                framed = self.framed[key] = [_chunk(event) for event in fake._events(*key)]
            write = self.transport.write
            write(head)
            for chunk in framed:
                write(chunk)
            write(b"0\r\n\r\n")
            return
        body = b"".join(stream_events(kind, model))
        self.transport.write(head + _chunk(body) + b"0\r\n\r\n")

    def _pace(
        self, loop: asyncio.AbstractEventLoop, events: list[bytes], index: int, start: float, step: float
    ) -> None:
        self.timer = None
        if self.transport is None:
            return
        self.transport.write(_chunk(events[index]))
        index += 1
        if index < len(events):
            when = start + index * step
            self.timer = loop.call_at(when, self._pace, loop, events, index, start, step)
            return
        self.transport.write(b"0\r\n\r\n")
        self.busy = False
        if self.buf:
            self._process()


async def serve_fast(host: str, port: int, default: str = "text") -> None:
    fake = FakeAnthropic(default)
    fake.record = False
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: FastServer(fake), host, port, backlog=4096)
    print(f"fake anthropic (fast) listening on http://{host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


async def serve(host: str, port: int, default: str = "text", delay_ms: float = 0.0) -> None:
    fake = FakeAnthropic(default)
    fake.record = False
    fake.delay_ms = delay_ms
    await fakes.serve_app(fake.app(), host, port, "fake anthropic")


def main() -> None:
    parser = fakes.arguments(__doc__.splitlines()[0], 8100)
    parser.add_argument("--fast", action="store_true", help="raw asyncio serving (bench)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="hold every answer this long (aiohttp mode)")
    args = parser.parse_args()
    fakes.run(serve_fast if args.fast else functools.partial(serve, delay_ms=args.delay_ms), args)


if __name__ == "__main__":
    main()
