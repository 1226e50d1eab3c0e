"""Property tests (hypothesis) for everything that reads bytes a client or an upstream
chose (issue 16): any input gives a correct result or the module's own clean error, never
another exception, never a hang. `max_examples` stays modest so the file runs in well
under a minute on a loaded machine."""

from __future__ import annotations

import types
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from bench.fake_anthropic import stream_events
from gateway import decoding, errors, eventstream, keys, relay, server, sse, upstream
from gateway import headers as headers_mod

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODEL = "claude-sonnet-4-5-20250929"


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points:
        pieces.append(data[last:point])
        last = point
    pieces.append(data[last:])
    return [p for p in pieces if p]


# --- the SSE usage scanner ----------------------------------------------------------------


@FAST
@given(st.lists(st.binary(max_size=300), max_size=12))
def test_the_sse_scanner_takes_any_bytes_in_any_chunks_without_raising(chunks: list[bytes]) -> None:
    scanner = sse.UsageScanner()
    for chunk in chunks:
        scanner.feed(chunk)
    assert isinstance(scanner.at_event_boundary(), bool)
    assert isinstance(scanner.counts.input_tokens, int) and isinstance(scanner.counts.seen_stop, bool)


@FAST
@given(st.sampled_from(["text", "tool_use", "thinking", "cache"]), st.lists(st.integers(0, 10_000), max_size=20))
def test_the_sse_scanner_counts_a_real_stream_the_same_however_it_is_split(kind: str, cuts: list[int]) -> None:
    body = b"".join(stream_events(kind, MODEL))
    whole, split = sse.UsageScanner(), sse.UsageScanner()
    whole.feed(body)
    for piece in _split(body, cuts):
        split.feed(piece)
    fields = ("input_tokens", "output_tokens", "cache_creation", "cache_read", "seen_stop", "model")
    assert [getattr(split.counts, f) for f in fields] == [getattr(whole.counts, f) for f in fields]
    assert split.counts.seen_stop and split.at_event_boundary()


@FAST
@given(st.binary(max_size=400), st.lists(st.integers(0, 500), max_size=6))
def test_noise_between_real_events_never_breaks_the_scanner(noise: bytes, cuts: list[int]) -> None:
    events = stream_events("text", MODEL)
    body = events[0] + noise.replace(b"\n\n", b"\n") + b"\n\n" + b"".join(events[1:])
    scanner = sse.UsageScanner()
    for piece in _split(body, cuts):
        scanner.feed(piece)
    assert scanner.counts.seen_stop


# --- the Bedrock event-stream decoder ---------------------------------------------------------


@FAST
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_the_event_stream_decoder_takes_any_bytes_or_raises_its_own_error(chunks: list[bytes]) -> None:
    decoder = eventstream.EventStreamDecoder()
    try:
        for chunk in chunks:
            for frame in decoder.feed(chunk):
                assert isinstance(frame.payload, bytes)
    except eventstream.EventStreamError:
        pass


@FAST
@given(
    st.lists(
        st.tuples(
            st.dictionaries(st.text("abc-:", min_size=1, max_size=8), st.text(max_size=20), max_size=3),
            st.binary(max_size=200),
        ),
        min_size=1,
        max_size=5,
    ),
    st.lists(st.integers(0, 5000), max_size=10),
)
def test_frames_survive_any_split_and_a_flipped_byte_is_caught(
    frames: list[tuple[dict[str, str], bytes]], cuts: list[int]
) -> None:
    data = b"".join(eventstream.encode_frame(h, p) for h, p in frames)
    decoder = eventstream.EventStreamDecoder()
    decoded = [f for piece in _split(data, cuts) for f in decoder.feed(piece)]
    assert [f.payload for f in decoded] == [p for _, p in frames]
    assert decoder.pending == 0
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x01
    with pytest.raises(eventstream.EventStreamError):
        eventstream.EventStreamDecoder().feed(bytes(flipped))


# --- the request envelope ----------------------------------------------------------------------


@FAST
@given(st.binary(max_size=500))
def test_the_envelope_parser_gives_fields_or_an_invalid_request_for_any_bytes(body: bytes) -> None:
    try:
        fields = relay.parse_envelope(body, 900)
    except errors.InvalidRequest as exc:
        assert exc.status == 400 and exc.message
    else:
        assert fields.model is None or (isinstance(fields.model, str) and "\x00" not in fields.model)
        assert isinstance(fields.stream, bool)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


@FAST
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6), st.integers(0, 3000))
def test_the_envelope_parser_handles_any_json_and_any_nesting(extra: dict[str, object], depth: int) -> None:
    body = msgspec.json.encode({**extra, "model": MODEL, "stream": True})
    deep = b'{"x":' + b"[" * depth + b"0" + b"]" * depth + b"," + body[1:]
    for candidate in (body, deep):
        try:
            fields = relay.parse_envelope(candidate, 900)
        except errors.InvalidRequest:
            assert candidate is deep and depth + 1 > 900  # only nesting deeper than the limit ({"x": counts)
        else:
            assert candidate is body or depth + 1 <= 900
            assert fields.model == MODEL and fields.stream is True


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


bracket_values = st.recursive(
    st.none() | st.integers() | st.text(alphabet='[]{}"\\ax\n\t\x01é', max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\a', max_size=6), inner),
    max_leaves=40,
)


@FAST
@given(bracket_values, st.integers(0, 12))
def test_the_depth_count_agrees_with_the_decoded_value_whatever_brackets_its_strings_hold(
    value: object, limit: int
) -> None:
    data = msgspec.json.encode(value)
    assert decoding.too_deep(data, limit) == (_depth(value) > limit)


# --- header forwarding ---------------------------------------------------------------------------

# What aiohttp's parser can hand over: any byte but CR, LF and NUL, decoded as UTF-8 with
# surrogateescape.
header_values = st.binary(max_size=60).map(
    lambda raw: (
        raw.replace(b"\r", b"")
        .replace(b"\n", b"")
        .replace(b"\x00", b"")
        .strip(b" \t")
        .decode("utf-8", "surrogateescape")
    )
)
header_names = st.sampled_from(
    [
        "anthropic-version",
        "anthropic-beta",
        "content-type",
        "accept",
        "user-agent",
        "authorization",
        "x-api-key",
        "x-stainless-os",
        "host",
        "cookie",
        "connection",
        "transfer-encoding",
        "content-length",
        "x-forwarded-for",
        "x-claude-code-session-id",
        "keep-alive",
        "proxy-authorization",
        "te",
    ]
)


def _request(headers: CIMultiDict[str]) -> Any:
    """What the header code reads of a request: its method and the headers as aiohttp's
    parser hands them over (aiohttp's own test request cannot carry surrogates)."""
    return types.SimpleNamespace(method="POST", headers=headers)


@FAST
@given(st.lists(st.tuples(header_names, header_values), max_size=12), st.booleans())
def test_forwarded_headers_keep_every_byte_and_never_carry_hop_by_hop_or_cookies(
    headers: list[tuple[str, str]], org_mode: bool
) -> None:
    request = _request(CIMultiDict(headers))
    forwarder = relay.Relay.__new__(relay.Relay)
    forwarder._plan_key = None
    forwarder._forward = headers_mod.RequestHeaders(8192)
    out = forwarder._upstream_headers(request, org_mode)
    assert not {"host", "cookie", "connection", "transfer-encoding", "content-length", "keep-alive", "te"} & set(out)
    if org_mode:
        assert "authorization" not in out and "x-api-key" not in out
    head = upstream.render_head("POST", "/v1/messages", "api.example", out, b"{}")
    assert head.endswith(b"\r\n\r\n") and head.count(b"\r\n\r\n") == 1
    for name, value in out.items():
        assert f"{name}: ".encode() + value.encode("utf-8", "surrogateescape") + b"\r\n" in head


# --- the key parser --------------------------------------------------------------------------------


keyish = st.one_of(
    st.text(max_size=80),
    st.binary(max_size=80).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.text(alphabet="abcXYZ019_-+/=%.~", max_size=140).map(lambda t: "ak_" + t),
)


@FAST
@given(keyish)
async def test_a_key_that_cannot_be_one_is_refused_without_a_lookup_and_masked_safely(key: str) -> None:
    mask = keys.mask(key)
    assert mask.isprintable() and len(mask) <= 20 and (mask == "(not an access key)" or mask.startswith("ak_"))
    if keys.KEY_PATTERN.match(key):
        return  # well-formed: it would be looked up (tests/test_keys.py)
    cache = keys.KeyCache(None, keys.KeyHasher(b"s" * 32), 2)  # type: ignore[arg-type]  # no database: never asked
    with pytest.raises(errors.NotFound):
        await cache.lookup(key)


@FAST
@given(header_values, header_values)
def test_the_org_mode_key_is_taken_only_from_an_ak_shaped_credential(api_key: str, authorization: str) -> None:
    request = _request(CIMultiDict({"x-api-key": api_key, "authorization": authorization}))
    found = server._org_key(request)
    assert found == "" or found.startswith(keys.KEY_PREFIX)
    assert found in ("", api_key, authorization.partition(" ")[2].strip())
