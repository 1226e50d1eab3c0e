"""The plan client (gateway/upstream.py): HTTP/1.1 framing, keep-alive and failures, against
a scripted server on loopback that answers with exact bytes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import itertools
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from connect_proxy import ConnectProxy
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.upstream import _PAUSE_AT, PlanClient, PlanConnectionError, PlanResponse, _Connection, interleaved

# A reply is the list of byte pieces the server writes (1 ms apart), or None to close the
# connection without answering.
Reply = list[bytes] | None


@dataclass
class Scripted:
    """Answers each request with the next scripted reply; records what came in."""

    replies: list[Reply] = field(default_factory=list)
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    closed_by_client: int = 0
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    self.closed_by_client += 1
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                self.requests.append(head + await reader.readexactly(length))
                reply = self.replies.pop(0)
                if reply is None:
                    return
                for piece in reply:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.001)
        except ConnectionError:
            pass
        finally:
            writer.close()


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    script = Scripted()
    server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
    script.port = server.sockets[0].getsockname()[1]
    async with server:
        yield script


@pytest.fixture
async def client(scripted: Scripted) -> AsyncIterator[PlanClient]:
    plan = PlanClient(f"http://127.0.0.1:{scripted.port}/anthropic", connect_timeout=2)
    yield plan
    await plan.close()


@contextlib.asynccontextmanager
async def answering_then_closing(raw: bytes) -> AsyncIterator[PlanClient]:
    """A server that answers every request with `raw`, then closes the connection."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)  # the tests send b"{}"
        writer.write(raw)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    plan = PlanClient(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", connect_timeout=2)
    async with server:
        yield plan
        await plan.close()


def ok(body: bytes, *extra: bytes) -> list[bytes]:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nRequest-Id: req_1\r\n"
    return [head + b"".join(extra) + b"Content-Length: %d\r\n\r\n" % len(body), body]


def chunked(*pieces: bytes) -> list[bytes]:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    return [head, *(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces), b"0\r\n\r\n"]


async def test_a_request_goes_out_as_sent_and_the_answer_comes_back(client: PlanClient, scripted: Scripted) -> None:
    scripted.replies = [ok(b'{"id":"msg_1"}')]
    response = await client.request("POST", "/v1/messages?beta=true", {"x-api-key": "k", "a": "b"}, b'{"m":1}')
    assert (response.status, response.content_type) == (200, "application/json")
    assert ("request-id", "req_1") in response.headers
    assert response.headers[0] == ("content-type", "application/json")  # names lower-cased, order kept
    assert await response.read() == b'{"id":"msg_1"}'
    response.release()
    assert scripted.requests == [
        b"POST /anthropic/v1/messages?beta=true HTTP/1.1\r\n"
        b"Host: 127.0.0.1:%d\r\nx-api-key: k\r\na: b\r\nContent-Length: 7\r\n\r\n" % scripted.port + b'{"m":1}'
    ]


async def test_keep_alive_reuses_one_connection(client: PlanClient, scripted: Scripted) -> None:
    scripted.replies = [ok(b"one"), ok(b"two"), ok(b"three")]
    for expected in (b"one", b"two", b"three"):
        response = await client.request("POST", "/v1/messages", {}, b"{}")
        assert await response.read() == expected
        response.release()
    assert scripted.connections == 1
    assert client.in_use == 0


async def test_a_get_carries_no_body(client: PlanClient, scripted: Scripted) -> None:
    scripted.replies = [ok(b"[]")]
    response = await client.request("GET", "/v1/models", {}, None)
    assert await response.read() == b"[]"
    response.release()
    assert b"content-length" not in scripted.requests[0].lower()


async def test_a_chunked_stream_is_handed_out_as_it_arrives(client: PlanClient, scripted: Scripted) -> None:
    events = [b"event: a\ndata: {}\n\n", b"event: b\ndata: {}\n\n" * 3, b"event: c\ndata: {}\n\n"]
    scripted.replies = [chunked(*events), ok(b"after")]
    response = await client.request("POST", "/v1/messages", {}, b"{}")
    received = []
    while chunk := await response.readany():
        received.append(chunk)
    assert b"".join(received) == b"".join(events)
    assert len(received) > 1  # not buffered to the end
    response.release()
    second = await client.request("POST", "/v1/messages", {}, b"{}")
    assert await second.read() == b"after"
    second.release()
    assert scripted.connections == 1  # the chunked body ended cleanly: reused


async def test_an_answer_used_with_async_with_and_for_goes_back_to_the_pool(
    client: PlanClient, scripted: Scripted
) -> None:
    events = [b"event: a\ndata: {}\n\n", b"event: b\ndata: {}\n\n"]
    scripted.replies = [chunked(*events), ok(b"after")]
    async with await client.request("POST", "/v1/messages", {}, b"{}") as response:
        received = [chunk async for chunk in response]
        assert client.in_use == 1
    assert b"".join(received) == b"".join(events)
    assert client.in_use == 0
    async with await client.request("POST", "/v1/messages", {}, b"{}") as second:
        assert await second.read() == b"after"
    assert scripted.connections == 1  # read to the end and left: reused


async def test_an_answer_left_by_an_exception_is_closed_not_pooled(client: PlanClient, scripted: Scripted) -> None:
    scripted.replies = [chunked(b"event: a\ndata: {}\n\n", b"event: b\ndata: {}\n\n"), ok(b"after")]
    with pytest.raises(ConnectionResetError):
        async with await client.request("POST", "/v1/messages", {}, b"{}") as response:
            await response.readany()
            raise ConnectionResetError  # e.g. the client went away mid-stream
    await asyncio.sleep(0.01)  # the aborted transport reports its loss on the next loop turns
    assert client.in_use == 0
    async with await client.request("POST", "/v1/messages", {}, b"{}") as second:
        assert await second.read() == b"after"
    assert scripted.connections == 2  # the abandoned connection was not reused


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
    extension=st.sampled_from([b"", b";name=value"]),
    trailer=st.sampled_from([b"", b"x-trailer: 1\r\n"]),
)
def test_chunked_framing_survives_any_split(
    pieces: list[bytes], cuts: list[int], extension: bytes, trailer: bytes
) -> None:
    wire = b"".join(b"%X%s\r\n%s\r\n" % (len(p), extension, p) for p in pieces) + b"0\r\n" + trailer + b"\r\n"
    response = PlanResponse(_Connection(PlanClient("http://h", connect_timeout=1)), 200, [], keep_alive=True)
    response._chunked = True
    bounds = sorted({min(c, len(wire)) for c in cuts} | {0, len(wire)})
    for start, end in itertools.pairwise(bounds):
        response.feed(wire[start:end])
    assert b"".join(response._chunks) == b"".join(pieces)
    assert response._done and response._error is None and response.keep_alive


async def test_a_body_without_length_ends_when_the_connection_closes() -> None:
    async with answering_then_closing(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it") as plan:
        for _ in range(2):  # the second request needs, and gets, a new connection
            response = await plan.request("POST", "/v1/messages", {}, b"{}")
            assert await response.read() == b"all of it"
            response.release()
        assert plan.in_use == 0 and not plan._idle


async def test_connection_close_is_honoured(client: PlanClient, scripted: Scripted) -> None:
    scripted.replies = [ok(b"bye", b"Connection: close\r\n"), ok(b"next")]
    for expected in (b"bye", b"next"):
        response = await client.request("POST", "/v1/messages", {}, b"{}")
        assert await response.read() == expected
        response.release()
    assert scripted.connections == 2


async def test_an_interim_100_continue_is_skipped(client: PlanClient, scripted: Scripted) -> None:
    scripted.replies = [[b"HTTP/1.1 100 Continue\r\n\r\n", *ok(b"real")]]
    response = await client.request("POST", "/v1/messages", {}, b"{}")
    assert (response.status, await response.read()) == (200, b"real")
    response.release()


async def test_a_connection_dropped_before_answering_raises(client: PlanClient, scripted: Scripted) -> None:
    scripted.replies = [None]
    with pytest.raises(PlanConnectionError, match="before answering"):
        await client.request("POST", "/v1/messages", {}, b"{}")
    assert client.in_use == 0


async def test_a_body_cut_short_hands_out_what_came_then_raises() -> None:
    async with answering_then_closing(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this") as plan:
        response = await plan.request("POST", "/v1/messages", {}, b"{}")
        assert await response.readany() == b"only this"
        with pytest.raises(PlanConnectionError, match="mid-answer"):
            await response.readany()
        response.release()
        assert plan.in_use == 0


async def test_a_stream_cut_mid_chunk_raises_after_the_bytes_that_came() -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n10\r\npart"
    async with answering_then_closing(raw) as plan:
        response = await plan.request("POST", "/v1/messages", {}, b"{}")
        received = b""
        with pytest.raises(PlanConnectionError, match="mid-answer"):
            while chunk := await response.readany():
                received += chunk
        assert received == b"hellopart"
        response.release()
        assert plan.in_use == 0


async def test_broken_chunk_framing_raises(client: PlanClient, scripted: Scripted) -> None:
    scripted.replies = [[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"zz\r\nnope\r\n"]]
    response = await client.request("POST", "/v1/messages", {}, b"{}")
    with pytest.raises(PlanConnectionError, match="not hexadecimal"):
        await response.read()
    response.release()
    assert client.in_use == 0


async def test_a_response_head_that_is_not_http_raises(client: PlanClient, scripted: Scripted) -> None:
    scripted.replies = [[b"SSH-2.0-OpenSSH\r\n\r\n"]]
    with pytest.raises(PlanConnectionError, match=r"not HTTP/1\.1"):
        await client.request("POST", "/v1/messages", {}, b"{}")


@pytest.mark.parametrize("line", [b"Bad Name: x", b"Tab\tName: x", b" leading: x", b"no-colon"])
async def test_a_header_line_that_is_not_a_field_raises(client: PlanClient, scripted: Scripted, line: bytes) -> None:
    scripted.replies = [[b"HTTP/1.1 200 OK\r\n" + line + b"\r\nContent-Length: 0\r\n\r\n"]]
    with pytest.raises(PlanConnectionError, match="header line"):
        await client.request("POST", "/v1/messages", {}, b"{}")


async def test_an_idle_connection_the_server_closed_is_not_used() -> None:
    async with answering_then_closing(b"".join(ok(b"one"))) as plan:
        for _ in range(2):
            response = await plan.request("POST", "/v1/messages", {}, b"{}")
            assert await response.read() == b"one"
            response.release()
            await asyncio.sleep(0.05)  # the server's FIN arrives while the connection is idle
        assert not plan._idle


async def test_a_timeout_before_the_head_closes_the_connection(client: PlanClient, scripted: Scripted) -> None:
    scripted.replies = [[b""], [b""]]  # never answered
    with pytest.raises(TimeoutError):
        await client.request("POST", "/v1/messages", {}, b"{}", head_timeout=0.1)
    with pytest.raises(TimeoutError):  # a caller's own deadline works the same
        async with asyncio.timeout(0.1):
            await client.request("POST", "/v1/messages", {}, b"{}")
    await asyncio.sleep(0.05)
    assert client.in_use == 0 and not client._idle and scripted.connections == 2


async def test_a_large_body_is_read_with_bounded_buffering(client: PlanClient, scripted: Scripted) -> None:
    body = bytes(range(256)) * 8192  # 2 MiB
    scripted.replies = [ok(body)]
    response = await client.request("POST", "/v1/messages", {}, b"{}")
    await asyncio.sleep(0.2)  # the server writes while nobody reads
    assert response._buffered <= _PAUSE_AT + 512 * 1024  # reading paused near the mark
    assert await response.read() == body
    response.release()


async def test_a_paused_answer_released_unread_is_not_reused(client: PlanClient, scripted: Scripted) -> None:
    scripted.replies = [ok(bytes(_PAUSE_AT + 10))]  # the read that crosses the mark ends the body
    response = await client.request("POST", "/v1/messages", {}, b"{}")
    await asyncio.sleep(0.2)
    assert response._done and response._paused
    response.release()  # a paused socket back in the pool would hang the next request
    assert not client._idle


async def test_idle_connections_are_closed_after_keepalive(scripted: Scripted) -> None:
    scripted.replies = [ok(b"x")]
    plan = PlanClient(f"http://127.0.0.1:{scripted.port}", connect_timeout=2, keepalive=0.05)
    response = await plan.request("POST", "/v1/messages", {}, b"{}")
    await response.read()
    response.release()
    assert len(plan._idle) == 1
    await asyncio.sleep(0.2)
    assert not plan._idle and not plan._open
    assert scripted.closed_by_client == 1
    await plan.close()


async def test_new_connections_share_one_name_lookup(scripted: Scripted) -> None:
    scripted.replies = [ok(b"x") for _ in range(6)]
    plan = PlanClient(f"http://localhost:{scripted.port}", connect_timeout=2, dns_ttl=0.2)

    async def one() -> bytes:
        response = await plan.request("POST", "/v1/messages", {}, b"{}")
        body = await response.read()
        response.close()  # so the next request needs a new connection
        return body

    assert await asyncio.gather(*(one() for _ in range(5))) == [b"x"] * 5
    assert (scripted.connections, plan.resolutions) == (5, 1)
    await asyncio.sleep(0.3)  # past the TTL: looked up again
    assert await one() == b"x"
    assert plan.resolutions == 2
    await plan.close()


async def test_a_name_that_does_not_resolve_raises() -> None:
    plan = PlanClient("http://no-such-host.invalid", connect_timeout=2)
    with pytest.raises(PlanConnectionError):
        await plan.request("POST", "/v1/messages", {}, b"{}")
    await plan.close()


async def test_a_refused_connection_raises() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    plan = PlanClient(f"http://127.0.0.1:{port}", connect_timeout=2)
    with pytest.raises(PlanConnectionError, match="could not connect"):
        await plan.request("POST", "/v1/messages", {}, b"{}")
    await plan.close()


async def test_https_with_certificate_verification(scripted: Scripted, open_tmp: Path) -> None:
    cert_file, key_file = _self_signed(open_tmp)
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(cert_file, key_file)
    scripted.replies = [ok(b"secure")]
    server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0, ssl=server_ssl)
    port = server.sockets[0].getsockname()[1]
    async with server:
        untrusting = PlanClient(f"https://localhost:{port}", connect_timeout=2)
        with pytest.raises(PlanConnectionError, match="could not connect"):
            await untrusting.request("POST", "/v1/messages", {}, b"{}")
        await untrusting.close()

        plan = PlanClient(f"https://localhost:{port}", connect_timeout=2)
        assert plan.ssl is not None
        plan.ssl.load_verify_locations(cert_file)
        response = await plan.request("POST", "/v1/messages", {}, b"{}")
        assert await response.read() == b"secure"
        response.release()
        await plan.close()
    assert b"Host: localhost:%d" % port in scripted.requests[-1]


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


# --- connecting: Happy Eyeballs (RFC 8305) --------------------------------------------------------


@contextlib.contextmanager
def dropping_address() -> Iterator[int]:
    """A loopback port whose SYNs go unanswered, like a broken route: a listener with a
    full accept backlog (Linux drops further SYNs silently)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname())
    try:
        yield listener.getsockname()[1]
    finally:
        filler.close()
        listener.close()


def resolved_as(plan: PlanClient, addresses: list[tuple[int, str, int]]) -> None:
    # What the cached name lookup holds, as a resolver with a dead first address answers.
    plan._addresses = addresses
    plan._resolved_at = asyncio.get_running_loop().time()


def test_addresses_are_tried_with_families_alternating() -> None:
    v6, v4 = socket.AF_INET6, socket.AF_INET
    got = interleaved([(v6, "a", 1), (v6, "b", 1), (v6, "c", 1), (v4, "x", 1), (v4, "y", 1)])
    assert [address for _, address, _ in got] == ["a", "x", "b", "y", "c"]


async def test_an_address_that_drops_packets_costs_the_attempt_delay_not_the_whole_budget(
    scripted: Scripted,
) -> None:
    scripted.replies = [ok(b"x")]
    plan = PlanClient(f"http://127.0.0.1:{scripted.port}", connect_timeout=5, attempt_delay=0.05)
    with dropping_address() as dead:
        resolved_as(plan, [(socket.AF_INET, "127.0.0.1", dead), (socket.AF_INET, "127.0.0.1", scripted.port)])
        started = time.monotonic()
        response = await plan.request("POST", "/v1/messages", {}, b"{}", head_timeout=5)
        assert await response.read() == b"x"
        elapsed = time.monotonic() - started
        response.release()
        await plan.close()
    assert elapsed < 2, elapsed  # the second address was tried after 50 ms, not after 5 s
    assert scripted.connections == 1


async def test_each_address_has_its_own_connect_budget() -> None:
    plan = PlanClient("http://127.0.0.1:1", connect_timeout=0.3, attempt_delay=0.05)
    with dropping_address() as first, dropping_address() as second:
        resolved_as(plan, [(socket.AF_INET, "127.0.0.1", first), (socket.AF_INET, "127.0.0.1", second)])
        started = time.monotonic()
        with pytest.raises(PlanConnectionError, match=r"took over 0\.3 s"):
            await plan.request("POST", "/v1/messages", {}, b"{}")
        elapsed = time.monotonic() - started
    await plan.close()
    # both were tried in full: the second started 50 ms after the first, each ran 0.3 s
    assert 0.33 <= elapsed < 1.5, elapsed
    assert plan._addresses == []  # looked up again next time


# --- an outbound proxy (HTTPS_PROXY / HTTP_PROXY) ---------------------------------------------------


async def test_through_an_outbound_proxy_each_connection_is_a_connect_tunnel(scripted: Scripted) -> None:
    scripted.replies = [ok(b"one"), ok(b"two")]
    async with ConnectProxy() as proxy:
        via = proxy.url.replace("http://", "http://me:p%40ss@")
        plan = PlanClient(f"http://localhost:{scripted.port}", connect_timeout=2, proxy=via)
        for expected in (b"one", b"two"):
            async with await plan.request("POST", "/v1/messages", {}, b"{}") as response:
                assert await response.read() == expected
        await plan.close()
    assert proxy.tunnels == [f"localhost:{scripted.port}"]  # one tunnel, kept alive
    assert proxy.credentials == ["me:p@ss"]
    assert scripted.connections == 1


async def test_tls_to_the_upstream_runs_inside_the_tunnel(scripted: Scripted, open_tmp: Path) -> None:
    cert_file, key_file = _self_signed(open_tmp)
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(cert_file, key_file)
    scripted.replies = [ok(b"secure")]
    server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0, ssl=server_ssl)
    port = server.sockets[0].getsockname()[1]
    async with server, ConnectProxy() as proxy:
        plan = PlanClient(f"https://localhost:{port}", connect_timeout=2, proxy=proxy.url)
        assert plan.ssl is not None
        plan.ssl.load_verify_locations(cert_file)  # the upstream's certificate is checked end to end
        async with await plan.request("POST", "/v1/messages", {}, b"{}") as response:
            assert await response.read() == b"secure"
        await plan.close()
    assert proxy.tunnels == [f"localhost:{port}"]


async def test_a_proxy_that_refuses_the_tunnel_is_a_connection_error_naming_its_answer(scripted: Scripted) -> None:
    async with ConnectProxy(refuse="407 Proxy Authentication Required") as proxy:
        plan = PlanClient(f"http://localhost:{scripted.port}", connect_timeout=2, proxy=proxy.url)
        with pytest.raises(PlanConnectionError, match=r"refused the tunnel: HTTP/1\.1 407"):
            await plan.request("POST", "/v1/messages", {}, b"{}")
        await plan.close()
    assert scripted.connections == 0
