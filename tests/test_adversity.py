"""Faults and attacks (issue 16): each against a real gateway on loopback, most with an
upstream that misbehaves on purpose. Bounded in count and time.

The canary secrets of conftest are sent wherever a secret could leak from; the session's
secrets sweep fails if any of them reaches a log line, an error body or a usage row.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from admin_client import PASSWORD, AdminClient, make_admin
from conftest import (
    CANARY_ACCESS_KEY,
    CANARY_ADMIN_PASSWORD,
    CANARY_BEDROCK_KEY,
    CANARY_JWT,
    CANARY_PLAN_CREDENTIAL,
    Gateway,
    LogCapture,
    cli_env,
    free_port,
    start_serve,
    stop_serve,
)

from bench.fake_anthropic import FakeAnthropic, sse, stream_events
from gateway import admins, guard, journal, server

MODEL = "claude-sonnet-4-5-20250929"
BODY = orjson.dumps({"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
STREAM_BODY = orjson.dumps(
    {"model": MODEL, "max_tokens": 16, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
)


@pytest.fixture(autouse=True)
def quick_bcrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admins, "BCRYPT_ROUNDS", 4)


# --- a misbehaving plan upstream: raw asyncio, so it can do what aiohttp would not ---------


class RawUpstream:
    """Answers every request with `behaviour`: 'ok' (a whole stream), 'silent' (message_start,
    then nothing, forever), 'cut' (message_start and half an event, then close). Records
    each request head and when each connection closed."""

    def __init__(self, behaviour: str = "ok") -> None:
        self.behaviour = behaviour
        self.heads: list[bytes] = []
        self.closed_at: list[float] = []
        self.opened = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            events = stream_events("text", MODEL)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
                b"request-id: req_raw\r\n\r\n"
            )

            def chunk(data: bytes) -> bytes:
                return b"%x\r\n%s\r\n" % (len(data), data)

            if self.behaviour == "ok":
                for event in events:
                    writer.write(chunk(event))
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                await reader.read()  # keep-alive until the gateway closes
            elif self.behaviour == "silent":
                writer.write(chunk(events[0]))
                await writer.drain()
                await reader.read()  # returns when the gateway closes the connection
            elif self.behaviour == "short":  # whole events, a clean end, no message_stop
                writer.write(chunk(events[0]) + chunk(sse("ping", {"type": "ping"})) + b"0\r\n\r\n")
                await writer.drain()
                await reader.read()
            elif self.behaviour == "cut":
                writer.write(chunk(events[0]) + chunk(events[1][: len(events[1]) // 2]))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed_at.append(time.monotonic())
            writer.close()


@pytest.fixture
async def raw_upstream() -> AsyncIterator[tuple[RawUpstream, str]]:
    upstream = RawUpstream()
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield upstream, f"http://127.0.0.1:{port}"
    server.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(server.wait_closed(), 2)


async def raw_exchange(url: str, data: bytes, timeout: float = 5) -> bytes:
    """Send raw bytes to the gateway and read until it closes (or `timeout`)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    received = b""
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                received += chunk
                if b"\r\n\r\n" in received and _complete(received):
                    break
    writer.close()
    return received


def _complete(received: bytes) -> bool:
    head, _, body = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


# --- parser rejections: answered by the gateway, logged as one line, never the bytes --------


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        # An over-long request line with the key in it (aiohttp echoed it in plain text).
        (b"GET /ak/" + CANARY_ACCESS_KEY.encode() + b"x" * 9000 + b"/v1/models HTTP/1.1\r\nHost: a\r\n\r\n", 414),
        # An over-long header carrying the plan credential.
        (
            b"GET /health HTTP/1.1\r\nHost: a\r\nauthorization: Bearer "
            + CANARY_PLAN_CREDENTIAL.encode()
            + b"A" * 20000
            + b"\r\n\r\n",
            431,
        ),
        # A bare CR after the credential: aiohttp's traceback quoted this line.
        (b"GET /health HTTP/1.1\r\nHost: a\r\nx-api-key: " + CANARY_PLAN_CREDENTIAL.encode() + b"\r\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\n" + b"".join(b"x-h%d: v\r\n" % i for i in range(200)) + b"\r\n", 431),
    ],
    ids=["long-request-line", "long-header", "bare-cr", "tls-hello", "too-many-headers"],
)
async def test_a_request_the_parser_rejects_is_answered_in_anthropic_shape_and_logged_as_one_line(
    gateway: Gateway, logs: LogCapture, request_bytes: bytes, status: int
) -> None:
    guard.SAMPLER._seen.clear()
    status_seen, headers, body = split_response(await raw_exchange(gateway.url, request_bytes))
    assert status_seen == status
    assert headers["content-type"].startswith("application/json")
    payload = orjson.loads(body)
    assert payload["type"] == "error" and payload["request_id"] == headers["x-ccproxy-request-id"]
    assert payload["error"]["type"] in ("invalid_request_error", "request_too_large")
    rejected = [line for line in logs.lines() if line["event"] == "request_rejected"]
    assert len(rejected) == 1
    assert rejected[0]["client"] == "127.0.0.1" and rejected[0]["request_id"] == payload["request_id"]
    assert rejected[0]["status"] == status and rejected[0]["error"]
    assert "Traceback" not in logs.text() and "CANARY" not in logs.text()


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GET /admin/users?q=" + b"x" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414, "uri_too_long"),
        (
            b"POST /admin/login HTTP/1.1\r\nHost: a\r\nauthorization: Bearer "
            + CANARY_PLAN_CREDENTIAL.encode()
            + b"A" * 20000
            + b"\r\n\r\n",
            431,
            "headers_too_large",
        ),
        (b"GET /admin HTTP/1.1\r\nHost: a\r\nx-h: v\r\r\n\r\n", 400, "bad_request"),
        (
            b"GET /admin/me HTTP/1.1\r\n" + b"".join(b"x-h%d: v\r\n" % i for i in range(200)) + b"\r\n",
            431,
            "headers_too_large",
        ),
    ],
    ids=["long-request-line", "long-header", "bare-cr", "too-many-headers"],
)
async def test_a_parser_rejection_under_admin_is_answered_in_the_admin_shape(
    gateway: Gateway, logs: LogCapture, request_bytes: bytes, status: int, code: str
) -> None:
    guard.SAMPLER._seen.clear()
    status_seen, headers, body = split_response(await raw_exchange(gateway.url, request_bytes))
    assert status_seen == status
    assert headers["content-type"].startswith("application/json") and headers["x-ccproxy-request-id"]
    payload = orjson.loads(body)
    assert set(payload) == {"error"} and set(payload["error"]) == {"code", "message", "field"}
    assert payload["error"]["code"] == code and payload["error"]["message"]
    assert "CANARY" not in body.decode() and "CANARY" not in logs.text()


async def test_a_parser_rejection_after_a_kept_alive_admin_request_takes_the_shape_of_its_own_path(
    gateway: Gateway,
) -> None:
    guard.SAMPLER._seen.clear()
    first = b"GET /admin/me HTTP/1.1\r\nHost: a\r\n\r\n"
    bad = b"GET /health HTTP/1.1\r\nHost: a\r\nx-h: v\r\r\n\r\n"
    host, port = gateway.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(first)
    await writer.drain()
    async with asyncio.timeout(5):
        received = b""
        while not (b"\r\n\r\n" in received and _complete(received)):
            received += await reader.read(65536)
    assert split_response(received)[0] == 401  # the admin API's own answer, kept alive
    writer.write(bad)
    await writer.drain()
    async with asyncio.timeout(5):
        raw = await reader.read(65536)
        while raw and not _complete(raw):
            raw += await reader.read(65536)
    writer.close()
    status, _, body = split_response(raw)
    assert status == 400 and orjson.loads(body)["type"] == "error"  # /health: the relay's shape


async def test_repeated_rejections_from_one_address_are_sampled(gateway: Gateway, logs: LogCapture) -> None:
    guard.SAMPLER._seen.clear()
    for _ in range(20):
        raw = await raw_exchange(gateway.url, b"BROKEN\r\n\r\n")
        assert split_response(raw)[0] == 400
    rejected = [line for line in logs.lines() if line["event"] == "request_rejected"]
    assert len(rejected) == guard.SAMPLER.per_window


# --- legal but odd input: relayed or refused cleanly, never 500 ----------------------------


async def test_any_byte_in_a_forwarded_header_reaches_the_plan_unchanged(
    gateway_factory: Any, raw_upstream: tuple[RawUpstream, str]
) -> None:
    upstream, url = raw_upstream
    gw = await gateway_factory(url)
    key = (await gw.issue_key())["key"]
    head = (
        f"POST /ak/{key}/v1/messages HTTP/1.1\r\nHost: a\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {CANARY_PLAN_CREDENTIAL}\r\n"
        f"content-length: {len(STREAM_BODY)}\r\n"
    ).encode()
    odd = b"anthropic-beta: caf\xe9-\xff\x80-beta\r\nx-claude-code-session-id: s\xff\xfe\r\n"
    raw = await raw_exchange(gw.url, head + odd + b"\r\n" + STREAM_BODY)
    assert raw.startswith(b"HTTP/1.1 200")
    assert b"message_stop" in raw
    assert b"anthropic-beta: caf\xe9-\xff\x80-beta\r\n" in upstream.heads[0]
    rows = await gw.usage_rows()
    assert rows[0]["status"] == 200 and rows[0]["error_class"] is None
    assert rows[0]["session_id"] == "s\ufffd\ufffd"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"model":"m","stream":true,"x":' + b"[" * 5000 + b"]" * 5000 + b"}", 400),
        (b'{"model":"m","stream":true,"n":1' + b"0" * 5000 + b"}", 200),
        (b'{"model":"m","stream":true,"n":1e999999}', 200),
        (b'{"model":"m","model":"' + MODEL.encode() + b'","stream":true,"stream":true}', 200),
        (b'{"model":"m","stream":true,"x":"\xff\xfe"}', 200),
        (b'{"model":"m","stream":true,"x":"a\x00b"}', 400),
        (b'{"model":"m\\u0000","stream":true}', 400),
        (b'{"model":"' + b"m" * 1000 + b'","stream":true}', 400),
        (b"\x00" * 64, 400),
        (b'{"model": 1e999999, "stream": true}', 400),
    ],
    ids=[
        "deep-nesting",
        "huge-number",
        "huge-exponent",
        "duplicate-keys",
        "invalid-utf8",
        "raw-nul",
        "escaped-nul-model",
        "huge-model",
        "nul-bytes",
        "number-as-model",
    ],
)
async def test_legal_but_odd_bodies_are_relayed_or_refused_never_500(
    gateway_factory: Any, raw_upstream: tuple[RawUpstream, str], http: aiohttp.ClientSession, body: bytes, status: int
) -> None:
    upstream, url = raw_upstream
    gw = await gateway_factory(url)
    key = (await gw.issue_key())["key"]
    async with http.post(
        f"{gw.url}/ak/{key}/v1/messages", data=body, headers={"content-type": "application/json"}
    ) as resp:
        answer = await resp.read()
        assert resp.status == status, answer[:300]
        if status == 400:
            assert orjson.loads(answer)["error"]["type"] == "invalid_request_error"
            assert not upstream.heads  # refused before any upstream call
        else:
            assert answer.endswith(b'message_stop"}\n\n') or b"message_stop" in answer
    rows = await gw.usage_rows()
    assert len(rows) == 1 and rows[0]["status"] == status


def nested(depth: int) -> bytes:
    """A relay body nesting exactly `depth` levels (its own object is the first), with
    brackets inside a string that must not count."""
    return b'{"model":"m","stream":true,"s":"[[[[{{{{\\"[[","x":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


async def test_json_one_level_deeper_than_the_setting_is_a_clean_400_and_at_the_limit_is_relayed(
    gateway_factory: Any, raw_upstream: tuple[RawUpstream, str], http: aiohttp.ClientSession
) -> None:
    upstream, url = raw_upstream
    gw = await gateway_factory(url, max_json_depth="20")
    key = (await gw.issue_key())["key"]
    target = f"{gw.url}/ak/{key}/v1/messages"
    async with http.post(target, data=nested(20), headers={"content-type": "application/json"}) as resp:
        assert resp.status == 200 and b"message_stop" in await resp.read()
    async with http.post(target, data=nested(21), headers={"content-type": "application/json"}) as resp:
        error = orjson.loads(await resp.read())["error"]
        assert resp.status == 400 and error["type"] == "invalid_request_error"
        assert "deeper than 20 levels" in error["message"]
    assert len(upstream.heads) == 1  # the deep one was refused before any upstream call
    rows = await gw.usage_rows()
    assert sorted(r["status"] for r in rows) == [200, 400]


async def test_admin_json_one_level_deeper_than_the_setting_is_a_clean_400_in_the_admin_shape(
    gateway_factory: Any, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    gw = await gateway_factory(fake[1], max_json_depth="20")
    await make_admin(gw.database, "root")
    api = AdminClient(http, gw.url)
    assert (await api.login("root", PASSWORD))[0] == 200
    at_limit = b'{"name":' + b"[" * 19 + b"]" * 19 + b"}"
    status, body = await api.call("POST", "/admin/users", raw=at_limit)
    assert status == 422 and body["error"]["field"] == "name"  # past the depth check, to validation
    status, body = await api.call("POST", "/admin/users", raw=b'{"name":' + b"[" * 20 + b"]" * 20 + b"}")
    assert status == 400 and body["error"]["code"] == "bad_request"
    assert "deeper than 20 levels" in body["error"]["message"]
    status, body = await api.post("/admin/users", {"name": "brackets", "description": "[" * 50 + "{" * 50})
    assert status == 201 and body["description"] == "[" * 50 + "{" * 50  # inside strings they do not nest


async def test_a_body_with_broken_chunked_framing_is_a_400_not_a_500(
    gateway_factory: Any, fake: tuple[FakeAnthropic, str]
) -> None:
    gateway = await gateway_factory(fake[1], header_timeout_seconds="1")
    key = (await gateway.issue_key())["key"]
    head = f"POST /ak/{key}/v1/messages HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\n\r\n".encode()
    # All at once, the parser refuses it; headers first, the relay's body read does.
    status, _, body = split_response(await raw_exchange(gateway.url, head + b'5\r\n{"mo\r\nZZ\r\n'))
    assert status == 400 and orjson.loads(body)["error"]["type"] == "invalid_request_error"
    host, port = gateway.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head + b'5\r\n{"mod\r\n')
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.write(b"ZZ\r\n")
    raw = await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    status, _, body = split_response(raw)
    assert status == 400 and orjson.loads(body)["error"]["type"] == "invalid_request_error"
    rows = await gateway.usage_rows()
    assert [(r["status"], r["error_class"]) for r in rows] == [(400, "invalid_request_error")]
    # Broken framing leaves aiohttp waiting for more body: the body's silence timer ends it.
    assert orjson.loads(body)["error"]["message"].startswith("The request body stopped arriving")


async def test_an_unexpected_failure_is_a_500_in_anthropic_shape_recorded_as_internal_error(
    gateway: Gateway, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch, logs: LogCapture
) -> None:
    from gateway import limits

    def broken(*_args: Any) -> None:
        raise KeyError(CANARY_PLAN_CREDENTIAL)  # a bug whose message holds a secret

    monkeypatch.setattr(limits, "check_model", broken)
    key = (await gateway.issue_key())["key"]
    async with http.post(f"{gateway.url}/ak/{key}/v1/messages", data=BODY) as resp:
        assert resp.status == 500
        assert (await resp.json())["error"]["type"] == "api_error"
    rows = await gateway.usage_rows()
    assert (rows[0]["status"], rows[0]["error_class"]) == (500, "internal_error")
    line = next(line for line in logs.lines() if line["event"] == "internal_error")
    assert line["error"] == "KeyError" and line["where"].endswith(".py:" + line["where"].split(":")[-1])


# --- disconnects and truncation ------------------------------------------------------------


async def test_a_client_that_leaves_while_the_upstream_is_silent_releases_it_within_a_second(
    gateway_factory: Any, raw_upstream: tuple[RawUpstream, str]
) -> None:
    upstream, url = raw_upstream
    upstream.behaviour = "silent"
    gw = await gateway_factory(url)
    key = (await gw.issue_key())["key"]
    host, port = gw.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST /ak/{key}/v1/messages HTTP/1.1\r\nHost: a\r\ncontent-length: {len(STREAM_BODY)}\r\n\r\n".encode()
        + STREAM_BODY
    )
    seen = b""
    while b"message_start" not in seen:
        seen += await asyncio.wait_for(reader.read(65536), 5)
    writer.transport.abort()  # the client leaves; the upstream says nothing more
    left = time.monotonic()
    deadline = left + 3
    while not upstream.closed_at and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert upstream.closed_at, "the upstream connection was never released"
    assert upstream.closed_at[0] - left < 1.0
    rows = await gw.usage_rows()
    assert rows[0]["error_class"] == "client_disconnected"
    assert rows[0]["input_tokens"] > 0  # the partial usage message_start carried
    assert gw.app[server.RELAY].plan.in_use == 0


async def test_a_plan_stream_cut_mid_event_ends_with_an_overloaded_error_event_and_is_recorded(
    gateway_factory: Any, raw_upstream: tuple[RawUpstream, str], http: aiohttp.ClientSession
) -> None:
    upstream, url = raw_upstream
    upstream.behaviour = "cut"
    gw = await gateway_factory(url)
    key = (await gw.issue_key())["key"]
    async with http.post(f"{gw.url}/ak/{key}/v1/messages", data=STREAM_BODY) as resp:
        assert resp.status == 200
        body = await resp.read()
    tail = body.rsplit(b"\n\n", 2)[-2]
    assert tail.startswith(b"event: error\ndata: ")
    assert orjson.loads(tail.split(b"data: ", 1)[1])["error"]["type"] == "overloaded_error"
    rows = await gw.usage_rows()
    assert rows[0]["error_class"] == "upstream_truncated" and rows[0]["input_tokens"] > 0


async def test_a_plan_stream_that_closes_cleanly_before_message_stop_is_truncated_too(
    gateway_factory: Any, raw_upstream: tuple[RawUpstream, str], http: aiohttp.ClientSession
) -> None:
    upstream, url = raw_upstream
    upstream.behaviour = "short"
    gw = await gateway_factory(url)
    key = (await gw.issue_key())["key"]
    async with http.post(f"{gw.url}/ak/{key}/v1/messages", data=STREAM_BODY) as resp:
        body = await resp.read()
    events = body.split(b"\n\n")
    assert events[-1] == b"" and events[-2].startswith(b"event: error\n")
    assert events[-3].startswith(b"event: ping")  # the whole events before it, unchanged
    assert b'"overloaded_error"' in events[-2]
    rows = await gw.usage_rows()
    assert rows[0]["error_class"] == "upstream_truncated"


# --- timeouts and connection caps ----------------------------------------------------------


async def test_slowloris_and_silent_connections_die_within_seconds_while_health_answers(
    gateway_factory: Any, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    gw = await gateway_factory(fake[1], header_timeout_seconds="1")
    host, port = gw.url.removeprefix("http://").split(":")
    conns = []
    for index in range(20):
        reader, writer = await asyncio.open_connection(host, int(port))
        if index % 2:
            writer.write(b"GET /health HTTP/1.1\r\nHost: a\r\nx-slow: ")  # never finishes
        conns.append((reader, writer))
    started = time.monotonic()
    async with http.get(gw.url + "/health") as resp:
        assert resp.status == 200
    for reader, _writer in conns:
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the gateway
    assert time.monotonic() - started < 4
    for _, writer in conns:
        writer.close()


async def test_connections_beyond_the_per_address_cap_get_503_and_health_still_answers(
    gateway_factory: Any, fake: tuple[FakeAnthropic, str]
) -> None:
    gw = await gateway_factory(fake[1], max_connections_per_address="3")
    host, port = gw.url.removeprefix("http://").split(":")
    held = [await asyncio.open_connection(host, int(port)) for _ in range(3)]
    try:
        raw = await raw_exchange(gw.url, b"GET /v1/models HTTP/1.1\r\nHost: a\r\n\r\n")
        status, headers, body = split_response(raw)
        assert status == 503 and headers["retry-after"] == "1"
        assert orjson.loads(body)["error"]["type"] == "overloaded_error"
        raw = await raw_exchange(gw.url, b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n")
        assert split_response(raw)[0] == 200
    finally:
        for _, writer in held:
            writer.close()
    await asyncio.sleep(0.1)
    raw = await raw_exchange(gw.url, b"GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert split_response(raw)[0] == 200


# --- key guessing ---------------------------------------------------------------------------


async def test_key_guessing_is_throttled_per_address_while_a_valid_key_still_works(
    gateway_factory: Any, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    gw = await gateway_factory(fake[1], key_miss_limit="5", key_miss_window_seconds="30")
    key = (await gw.issue_key())["key"]
    statuses = []
    for index in range(8):
        guess = CANARY_ACCESS_KEY[:-2] + f"{index:02d}"
        async with http.post(f"{gw.url}/ak/{guess}/v1/messages", data=BODY) as resp:
            statuses.append(resp.status)
            body = await resp.json()
            if resp.status == 429:
                assert int(resp.headers["retry-after"]) >= 1
                assert body["error"]["type"] == "rate_limit_error"
    assert statuses == [404] * 5 + [429] * 3
    async with http.post(f"{gw.url}/ak/{key}/v1/messages", data=BODY) as resp:
        assert resp.status == 200
    # Org mode's header key counts the same way.
    async with http.post(f"{gw.url}/v1/messages", data=BODY, headers={"x-api-key": CANARY_ACCESS_KEY}) as resp:
        assert resp.status == 429


def test_the_key_guard_forgets_an_address_when_its_window_ends() -> None:
    kg = guard.KeyGuard(limit=2, window=10)
    assert kg.miss("a", 0) is None and kg.miss("a", 1) is None
    throttled = kg.miss("a", 2)
    assert throttled is not None and throttled.headers["retry-after"] == "8"
    assert kg.miss("b", 2) is None  # another address is not affected
    assert kg.miss("a", 10.5) is None  # a new window


def test_the_client_address_is_the_peer_unless_trusted_proxies_are_configured() -> None:
    from aiohttp.test_utils import make_mocked_request

    request = make_mocked_request("GET", "/", headers={"x-forwarded-for": "6.6.6.6, 10.0.0.7"})
    assert guard.client_address(request, 0) == (request.remote or "unknown")
    assert guard.client_address(request, 1) == "10.0.0.7"
    assert guard.client_address(request, 2) == "6.6.6.6"


# --- the admin API under attack ----------------------------------------------------------------


@pytest.fixture
async def api(gateway: Gateway, http: aiohttp.ClientSession) -> AdminClient:
    await make_admin(gateway.database, "root")
    client = AdminClient(http, gateway.url)
    assert (await client.login("root", PASSWORD))[0] == 200
    return client


SQL_METACHARACTERS = ["x'; DROP TABLE users; --", 'a" OR "1"="1', "%' OR '1'='1", "\\'; SELECT pg_sleep(5);--", "_%"]


async def test_sql_metacharacters_in_every_admin_field_are_data_never_sql(api: AdminClient, gateway: Gateway) -> None:
    for index, text in enumerate(SQL_METACHARACTERS):
        status, body = await api.post("/admin/users", {"name": f"u{index}{text}"[:60], "description": text})
        assert status in (201, 422), body
        if status == 201:
            assert body["description"] == text
        status, body = await api.get("/admin/users", search=text)
        assert status == 200 and all(text in u["name"] for u in body["items"])
        status, body = await api.post("/admin/teams", {"name": f"t{index}{text}"[:60]})
        assert status in (201, 422), body
        status, body = await api.get(f"/admin/users/{text}")
        assert status in (404, 422), body
    status, body = await api.get("/admin/users", limit="1; DROP TABLE users")
    assert status == 422 and body["error"]["field"] == "limit"
    assert (await api.get("/admin/users"))[0] == 200  # the table is still there


async def test_oversized_admin_json_gets_413_in_the_admin_shape(api: AdminClient) -> None:
    status, body = await api.call("POST", "/admin/users", raw=b'{"name":"' + b"a" * (2 * 1024 * 1024) + b'"}')
    assert status == 413 and body["error"]["code"] == "payload_too_large"
    status, body = await api.call("POST", "/admin/users", raw=b'{"name":' + b"[" * 5000 + b"]" * 5000 + b"}")
    assert status in (400, 422) and "error" in body


async def test_admin_login_brute_force_is_slowed_and_audited(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    from gateway import audit

    await make_admin(gateway.database, "root")
    client = AdminClient(http, gateway.url)
    statuses = [(await client.login("root", CANARY_ADMIN_PASSWORD + str(i)))[0] for i in range(8)]
    assert statuses[0] == 401 and statuses[-1] == 429
    page = await audit.list_entries(gateway.database, action="admin.login_failed")
    assert len(page.items) >= 5
    # Even the right password is refused while throttled (a guesser learns nothing).
    assert (await client.login("root", PASSWORD))[0] == 429


async def test_tampered_jwts_and_cookies_do_not_open_the_admin_api(api: AdminClient, gateway: Gateway) -> None:
    import jwt

    good = api.token
    assert good is not None
    header, payload, signature = good.split(".")
    forged_claims = jwt.decode(good, options={"verify_signature": False}) | {"role": "admin", "sub": "mallory"}
    forgeries = [
        CANARY_JWT,
        f"{header}.{payload}.{signature[:-4]}AAAA",
        jwt.encode(forged_claims, "not-the-secret-but-long-enough-to-be-a-key", algorithm="HS256"),
        jwt.encode(forged_claims, None, algorithm="none"),  # type: ignore[arg-type]
        f"{header}.{payload}.",
        "a.b.c",
    ]
    for token in forgeries:
        status, body = await api.call("GET", "/admin/users", headers={"authorization": f"Bearer {token}"})
        assert status == 401 and body["error"]["code"] == "unauthorized", token[:20]
    # CSRF: a browser's cookie never authenticates, only the Bearer header does.
    api.token = None
    for cookie in (f"token={good}", f"access_token={good}", f"session={good}"):
        status, _ = await api.call("GET", "/admin/users", headers={"cookie": cookie})
        assert status == 401
    api.token = good


async def test_a_bedrock_key_registered_through_the_admin_api_is_shown_only_as_registered(
    api: AdminClient, gateway: Gateway
) -> None:
    issued = await gateway.issue_key()
    status, body = await api.put(f"/admin/access-keys/{issued['id']}/bedrock-key", {"api_key": CANARY_BEDROCK_KEY})
    assert status == 200 and CANARY_BEDROCK_KEY not in orjson.dumps(body).decode()
    status, body = await api.get(f"/admin/access-keys/{issued['id']}/bedrock-key")
    assert status == 200 and CANARY_BEDROCK_KEY not in orjson.dumps(body).decode()


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/../../../../etc/passwd",
        "/dashboard/%2e%2e/%2e%2e/etc/passwd",
        "/dashboard/..%2f..%2f..%2fetc%2fpasswd",
        "/dashboard/%252e%252e/setup.cfg",
        "/dashboard/....//....//setup.cfg",
        "/admin/../setup.cfg",
    ],
)
async def test_path_traversal_under_the_dashboard_never_reads_outside_it(gateway: Gateway, path: str) -> None:
    raw = await raw_exchange(gateway.url, f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
    status, _headers, body = split_response(raw)
    assert status in (400, 401, 403, 404), raw[:200]
    assert b"root:" not in body and b"[metadata]" not in body


# --- operator errors ----------------------------------------------------------------------------


def _serve(env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "serve"], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_an_unreachable_database_is_named_without_its_password_after_retrying(open_tmp: Path) -> None:
    port = free_port()
    env = cli_env(
        open_tmp,
        database_url=f"postgresql://ops:{CANARY_ADMIN_PASSWORD}@127.0.0.1:{port}/ccproxy_prod",
        db_connect_retry_seconds="1.5",
        port=str(free_port()),
    )
    started = time.monotonic()
    result = _serve(env)
    assert result.returncode == 1
    assert time.monotonic() - started >= 1.5  # it retried before giving up
    stderr = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(stderr) == 1, result.stderr
    assert f"127.0.0.1:{port}/ccproxy_prod" in stderr[0] and "CCPROXY_DATABASE_URL" in stderr[0]
    retries = [orjson.loads(line) for line in result.stdout.splitlines() if "database_unreachable" in line]
    assert retries and all(r["database"] == f"127.0.0.1:{port}/ccproxy_prod" for r in retries)
    assert CANARY_ADMIN_PASSWORD not in result.stdout + result.stderr


def test_a_data_directory_in_use_names_the_pid_holding_it(open_tmp: Path, database_url: str) -> None:
    held = journal.Journal(open_tmp / "data" / "journal" / "w0")  # this process holds it
    try:
        env = cli_env(open_tmp, database_url=database_url, port=str(free_port()), key_hash_secret="s" * 32)
        result = _serve(env)
    finally:
        held.close()
    assert result.returncode == 1
    stderr = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(stderr) == 1, result.stderr
    assert f"pid {os.getpid()}" in stderr[0] and "CCPROXY_DATA_DIR" in stderr[0]
    assert "Traceback" not in result.stdout + result.stderr


# --- SIGTERM with 200 streams open ---------------------------------------------------------------


async def test_sigterm_with_200_streams_open_drains_them_all_refuses_new_ones_and_exits_0(
    open_tmp: Path, database_url: str
) -> None:
    fake = FakeAnthropic(default="paced_events:30:100")  # each stream lasts about 3 s
    from conftest import start_site

    runner, fake_url = await start_site(fake.app())
    env = cli_env(
        open_tmp, database_url=database_url, plan_base_url=fake_url, drain_seconds="20", key_hash_secret="s" * 32
    )
    port = free_port()
    serve = await asyncio.to_thread(start_serve, env, open_tmp / "serve.log", port)
    try:
        issued = orjson.loads((await asyncio.to_thread(serve.cli, "users", "create", "bob", "--json")).stdout)
        assert issued["name"] == "bob"
        key = orjson.loads((await asyncio.to_thread(serve.cli, "keys", "issue", "--user", "bob", "--json")).stdout)
        url = f"{serve.url}/ak/{key['key']}/v1/messages"
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            started = asyncio.Event()
            opened = 0

            async def one() -> bytes:
                nonlocal opened
                async with http.post(
                    url, data=STREAM_BODY, headers={"authorization": "Bearer " + CANARY_PLAN_CREDENTIAL}
                ) as resp:
                    assert resp.status == 200
                    first = await resp.content.readany()
                    opened += 1
                    if opened == 200:
                        started.set()
                    return first + await resp.read()

            streams = [asyncio.create_task(one()) for _ in range(200)]
            await asyncio.wait_for(started.wait(), 30)
            t0 = time.monotonic()
            serve.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            with pytest.raises(OSError):  # the listener is closed: new connections are refused
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            bodies = await asyncio.wait_for(asyncio.gather(*streams), 25)
            assert all(b"message_stop" in body for body in bodies)
        code = await asyncio.to_thread(serve.process.wait, 25)
        assert code == 0
        assert time.monotonic() - t0 < 20 + 5
    finally:
        if serve.process.poll() is None:
            stop_serve(serve)
        await runner.cleanup()
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT status, error_class FROM usage_events")
    finally:
        await conn.close()
    assert len(rows) == 200 and all(r["status"] == 200 and r["error_class"] is None for r in rows)


# --- one logging path ------------------------------------------------------------------------

ONE_PATH = f"""
import asyncio, logging, sys, threading, warnings
from gateway import log
log.configure("info")
log.capture_stdlib("info")
try:
    raise ValueError("{CANARY_PLAN_CREDENTIAL}")
except ValueError:
    logging.getLogger("aiohttp.server").exception("Error handling request from %s", "127.0.0.1")
logging.getLogger("aiohttp.access").info("GET /ak/{CANARY_ACCESS_KEY}/v1/models 200")
warnings.warn("a library warning")
def boom():
    raise RuntimeError("{CANARY_JWT}")
thread = threading.Thread(target=boom); thread.start(); thread.join()
async def main():
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(log.loop_exception_handler)
    async def fails():
        raise OSError("{CANARY_BEDROCK_KEY}")
    task = loop.create_task(fails())
    await asyncio.sleep(0.01)
    del task
    import gc; gc.collect()
    await asyncio.sleep(0.01)
asyncio.run(main())
log.flush()
raise KeyError("{CANARY_ADMIN_PASSWORD}")
"""


def test_library_logs_loop_errors_warnings_and_crashes_are_single_redacted_json_lines(open_tmp: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", ONE_PATH], capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent.parent
    )
    lines = [orjson.loads(line) for line in result.stdout.splitlines() if line.strip()]
    events = [(line["event"], line.get("logger"), line.get("error")) for line in lines]
    assert ("library_log", "aiohttp.server", "ValueError") in events
    assert ("library_log", "py.warnings", None) in events
    assert any(e[0] == "uncaught_exception" and e[2] == "RuntimeError" for e in events)
    assert any(e[0] == "loop_exception" and e[2] == "OSError" for e in events)
    assert any(e[0] == "uncaught_exception" and e[2] == "KeyError" for e in events)
    access = next(line for line in lines if line.get("logger") == "aiohttp.access")
    assert CANARY_ACCESS_KEY not in access["message"] and "ak_CANARY…" in access["message"]
    assert result.stderr == ""  # nothing bypassed the one path
    for canary in (CANARY_PLAN_CREDENTIAL, CANARY_ACCESS_KEY, CANARY_JWT, CANARY_BEDROCK_KEY, CANARY_ADMIN_PASSWORD):
        assert canary not in result.stdout
