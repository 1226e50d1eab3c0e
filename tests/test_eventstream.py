"""Event-stream decoding (against botocore's own decoder) and Bedrock → Anthropic SSE."""

from __future__ import annotations

import base64
import struct
import uuid
import zlib

import orjson
import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import fake_anthropic
from bench.fake_bedrock import chunk_frame, event_json, exception_frame
from gateway import errors
from gateway.eventstream import (
    BedrockSSETranslator,
    EventStreamDecoder,
    EventStreamError,
    Frame,
    encode_frame,
    error_class,
)

# --- a reference encoder for every header value type (ours only writes strings) -------

_name = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12).filter(
    lambda s: len(s.encode()) < 256
)
_value = st.one_of(
    st.booleans().map(lambda b: ("bool", b)),
    st.integers(-(2**7), 2**7 - 1).map(lambda i: ("byte", i)),
    st.integers(-(2**15), 2**15 - 1).map(lambda i: ("short", i)),
    st.integers(-(2**31), 2**31 - 1).map(lambda i: ("int", i)),
    st.integers(-(2**63), 2**63 - 1).map(lambda i: ("long", i)),
    st.binary(max_size=40).map(lambda b: ("bytes", b)),
    st.text(max_size=40).map(lambda s: ("string", s)),
    st.integers(0, 2**62).map(lambda i: ("timestamp", i)),
    st.uuids().map(lambda u: ("uuid", u.bytes)),
)


def _encode_value(kind: str, value: object) -> bytes:
    if kind == "bool":
        return b"\x00" if value else b"\x01"
    if kind in ("bytes", "string"):
        raw = value.encode() if isinstance(value, str) else value
        assert isinstance(raw, bytes)
        return (b"\x06" if kind == "bytes" else b"\x07") + struct.pack("!H", len(raw)) + raw
    if kind == "uuid":
        assert isinstance(value, bytes)
        return b"\x09" + value
    code, fmt = {
        "byte": (2, "!b"),
        "short": (3, "!h"),
        "int": (4, "!i"),
        "long": (5, "!q"),
        "timestamp": (8, "!q"),
    }[kind]
    return bytes((code,)) + struct.pack(fmt, value)


def raw_frame(headers: dict[str, tuple[str, object]], payload: bytes) -> bytes:
    head = b"".join(bytes((len(n.encode()),)) + n.encode() + _encode_value(*v) for n, v in headers.items())
    total = 16 + len(head) + len(payload)
    prelude = struct.pack("!II", total, len(head))
    prelude += struct.pack("!I", zlib.crc32(prelude))
    body = prelude + head + payload
    return body + struct.pack("!I", zlib.crc32(body))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in [*points, len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


_frames = st.lists(
    st.tuples(st.dictionaries(_name, _value, max_size=6), st.binary(max_size=300)),
    min_size=1,
    max_size=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=_frames, cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_decoder_matches_botocore_on_random_frames_in_random_splits(frames, cuts):
    stream = b"".join(raw_frame(h, p) for h, p in frames)
    reference = EventStreamBuffer()
    reference.add_data(stream)
    expected = [Frame(m.headers, m.payload) for m in reference]
    decoder = EventStreamDecoder()
    got: list[Frame] = []
    for piece in split(stream, cuts):
        got += decoder.feed(piece)
    assert got == expected
    assert len(got) == len(frames)
    assert decoder.pending == 0


@settings(max_examples=100, deadline=None)
@given(
    headers=st.dictionaries(_name, st.text(max_size=30), max_size=5),
    payload=st.binary(max_size=500),
)
def test_encode_frame_is_read_back_by_botocore(headers, payload):
    reference = EventStreamBuffer()
    reference.add_data(encode_frame(headers, payload))
    message = next(reference)
    assert message.headers == headers
    assert message.payload == payload


def test_decoder_reads_every_header_type():
    u = uuid.uuid4().bytes
    frame = raw_frame(
        {
            "t": ("bool", True),
            "f": ("bool", False),
            "b": ("byte", -3),
            "s": ("short", 300),
            "i": ("int", -70000),
            "l": ("long", 2**40),
            "a": ("bytes", b"\x00\xff"),
            "str": ("string", "héllo"),
            "ts": ("timestamp", 1700000000000),
            "u": ("uuid", u),
        },
        b"payload",
    )
    (got,) = EventStreamDecoder().feed(frame)
    assert got.headers == {
        "t": True,
        "f": False,
        "b": -3,
        "s": 300,
        "i": -70000,
        "l": 2**40,
        "a": b"\x00\xff",
        "str": "héllo",
        "ts": 1700000000000,
        "u": u,
    }
    assert got.payload == b"payload"


def test_decoder_feeds_one_byte_at_a_time():
    frames = [encode_frame({":event-type": "chunk"}, bytes([i]) * i) for i in range(20)]
    decoder = EventStreamDecoder()
    got = [f for byte in b"".join(frames) for f in decoder.feed(bytes([byte]))]
    assert [f.payload for f in got] == [bytes([i]) * i for i in range(20)]


GOOD = encode_frame({":message-type": "event"}, b'{"bytes":"e30="}')


@pytest.mark.parametrize(
    ("offset", "what"),
    [
        (0, "total length"),
        (5, "headers length"),
        (9, "prelude crc"),
        (14, "headers"),
        (len(GOOD) - 6, "payload"),
        (len(GOOD) - 1, "message crc"),
    ],
)
def test_decoder_rejects_any_corrupted_byte(offset, what):
    bad = bytearray(GOOD)
    bad[offset] ^= 0x40
    with pytest.raises(EventStreamError):
        EventStreamDecoder().feed(bytes(bad))


def test_decoder_rejects_frames_over_the_size_cap_before_buffering_them():
    prelude = struct.pack("!II", 17 * 1024 * 1024, 0)
    prelude += struct.pack("!I", zlib.crc32(prelude))
    with pytest.raises(EventStreamError, match="length"):
        EventStreamDecoder().feed(prelude)


def test_decoder_rejects_impossible_lengths():
    for total, headers_len in [(10, 0), (20, 8)]:
        prelude = struct.pack("!II", total, headers_len)
        prelude += struct.pack("!I", zlib.crc32(prelude))
        with pytest.raises(EventStreamError):
            EventStreamDecoder().feed(prelude + b"\x00" * 40)


def test_decoder_rejects_headers_that_overrun_their_section():
    head = b"\x03abc\x07\x00\x50xyz"  # string claims 80 bytes, has 3
    total = 16 + len(head)
    prelude = struct.pack("!II", total, len(head))
    prelude += struct.pack("!I", zlib.crc32(prelude))
    body = prelude + head
    with pytest.raises(EventStreamError, match="header"):
        EventStreamDecoder().feed(body + struct.pack("!I", zlib.crc32(body)))


def test_truncated_frame_is_held_back_and_reported_by_the_translator():
    decoder = EventStreamDecoder()
    assert decoder.feed(GOOD[:-3]) == []
    assert decoder.pending == len(GOOD) - 3
    translator = BedrockSSETranslator()
    frame = chunk_frame(b'{"type":"ping"}')
    assert translator.feed(frame[:-1]) == b""
    out = translator.finish()
    assert out.startswith(b"event: error\n")
    assert translator.failure is not None and translator.failure.error is errors.Overloaded


# --- translation -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["text", "tool_use", "thinking", "cache", "events"])
def test_translator_output_equals_the_sse_fake_anthropic_sends(kind):
    events = fake_anthropic.stream_events(kind, "claude-sonnet-4-5-20250929", 5)
    bedrock = b"".join(chunk_frame(event_json(e)) for e in events)
    seen: list[tuple[bytes, bytes]] = []
    translator = BedrockSSETranslator(lambda t, d: seen.append((t, d)))
    out = b"".join(translator.feed(p) for p in split(bedrock, list(range(0, len(bedrock), 16384))))
    assert out == b"".join(events)
    assert translator.finish() == b""
    assert translator.emitted == len(events) and translator.failure is None
    assert [t for t, _ in seen] == [orjson.loads(event_json(e))["type"].encode() for e in events]
    assert seen[0][1] == event_json(events[0])


def test_translator_keeps_sse_framing_for_json_with_newlines():
    translator = BedrockSSETranslator()
    out = translator.feed(chunk_frame(b'{\n  "type": "ping"\n}'))
    assert out == b'event: ping\ndata: {\ndata:   "type": "ping"\ndata: }\n\n'


def test_translator_ignores_non_chunk_events():
    translator = BedrockSSETranslator()
    other = encode_frame({":message-type": "event", ":event-type": "initial-response"}, b"{}")
    assert translator.feed(other) == b""
    assert translator.emitted == 0


@pytest.mark.parametrize(
    ("exception", "error_type"),
    [
        ("modelStreamErrorException", "api_error"),
        ("modelTimeoutException", "api_error"),
        ("throttlingException", "rate_limit_error"),
        ("validationException", "invalid_request_error"),
        ("internalServerException", "overloaded_error"),
        ("serviceUnavailableException", "overloaded_error"),
    ],
)
def test_midstream_exception_frame_becomes_one_error_event_and_ends_the_stream(exception, error_type):
    events = fake_anthropic.stream_events("text", "m")[:3]
    stream = b"".join(chunk_frame(event_json(e)) for e in events)
    stream += exception_frame(exception, "boom") + chunk_frame(event_json(events[-1]))
    translator = BedrockSSETranslator()
    out = translator.feed(stream)
    expected_error = orjson.dumps({"type": "error", "error": {"type": error_type, "message": "boom"}})
    assert out == b"".join(events) + b"event: error\ndata: " + expected_error + b"\n\n"
    assert translator.finished and translator.emitted == 3
    assert translator.feed(chunk_frame(event_json(events[0]))) == b""
    assert translator.finish() == b""


def test_exception_as_first_frame_is_reported_as_before_first_byte():
    translator = BedrockSSETranslator()
    out = translator.feed(exception_frame("throttlingException", "slow down"))
    assert out.startswith(b"event: error\n")
    assert translator.emitted == 0
    assert translator.failure is not None
    exc = translator.failure.exception()
    assert isinstance(exc, errors.RateLimited) and exc.message == "slow down"


def test_generic_error_message_type_uses_its_error_code_headers():
    frame = encode_frame(
        {":message-type": "error", ":error-code": "AccessDeniedException", ":error-message": "no"},
        b"",
    )
    out = BedrockSSETranslator().feed(frame)
    assert b'"api_error"' in out and b"operator must fix this (no)" in out


def test_bad_chunk_payload_becomes_an_error_event_after_the_good_ones():
    translator = BedrockSSETranslator()
    bad = encode_frame({":message-type": "event", ":event-type": "chunk"}, b'{"bytes": 5}')
    out = translator.feed(chunk_frame(b'{"type":"ping"}') + bad)
    head, _, error = out.partition(b"\n\nevent: error\ndata: ")
    assert head == b'event: ping\ndata: {"type":"ping"}'
    assert orjson.loads(error)["error"]["type"] == "overloaded_error"
    assert translator.emitted == 1


def test_event_type_that_would_break_sse_framing_is_refused():
    out = BedrockSSETranslator().feed(chunk_frame(b'{"type":"a\\nb"}'))
    assert out.startswith(b"event: error\n")


def test_corrupted_stream_becomes_an_error_event():
    translator = BedrockSSETranslator()
    frame = bytearray(chunk_frame(b'{"type":"ping"}'))
    frame[-1] ^= 1
    assert translator.feed(bytes(frame)).startswith(b"event: error\n")
    assert translator.failure is not None


def test_stream_ending_without_message_stop_is_an_error():
    translator = BedrockSSETranslator()
    translator.feed(chunk_frame(b'{"type":"message_start"}'))
    assert translator.finish().startswith(b"event: error\n")


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        (
            "AccessDeniedException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            403,
            errors.FallbackAccessDenied,
        ),
        ("", 401, errors.FallbackAccessDenied),
        ("UnrecognizedClientException", 403, errors.FallbackAccessDenied),
        ("ThrottlingException", 429, errors.RateLimited),
        ("", 429, errors.RateLimited),
        ("ServiceQuotaExceededException", 400, errors.RateLimited),
        ("ValidationException", 400, errors.InvalidRequest),
        ("", 400, errors.InvalidRequest),
        ("ModelStreamErrorException", 424, errors.UpstreamFailed),
        ("modelTimeoutException", None, errors.UpstreamFailed),
        ("ServiceUnavailableException", 503, errors.Overloaded),
        ("InternalServerException", 500, errors.Overloaded),
        ("ResourceNotFoundException", 404, errors.Overloaded),
        ("", 502, errors.Overloaded),
    ],
)
def test_error_class_follows_spec_mapping(code, status, expected):
    assert error_class(code, status) is expected


def test_payload_part_decodes_standard_base64():
    payload = b'{"bytes":"' + base64.b64encode(b'{"type":"ping","x":"\xc3\xa9"}') + b'"}'
    frame = encode_frame({":message-type": "event", ":event-type": "chunk"}, payload)
    assert BedrockSSETranslator().feed(frame) == (b'event: ping\ndata: {"type":"ping","x":"\xc3\xa9"}\n\n')
