"""The SSE usage scanner: token counts from relayed chunks, however the bytes are split."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fake_anthropic import message_json, sse, stream_events
from gateway.sse import PING, UsageCounts, UsageScanner

MODEL = "claude-sonnet-4-5-20250929"
KINDS = ("text", "tool_use", "thinking", "cache", "events", "error_midstream")

# What the upstream reported for each kind of fake stream (bench/fake_anthropic.py).
EXPECTED: dict[str, dict[str, Any]] = {
    "text": {"input_tokens": 25, "output_tokens": 12, "error_type": None, "seen_stop": True},
    "tool_use": {"input_tokens": 25, "output_tokens": 12, "error_type": None, "seen_stop": True},
    "thinking": {"input_tokens": 25, "output_tokens": 12, "error_type": None, "seen_stop": True},
    "cache": {
        "input_tokens": 10,
        "output_tokens": 42,
        "cache_creation": 1500,
        "cache_read": 3000,
        "cache_5m": 1000,
        "cache_1h": 500,
        "seen_stop": True,
    },
    "events": {"input_tokens": 25, "output_tokens": 7, "error_type": None, "seen_stop": True},
    # Cut short by an in-stream error: what was seen is kept.
    "error_midstream": {"input_tokens": 25, "output_tokens": 1, "error_type": "overloaded_error", "seen_stop": False},
}


def counts_of(counts: UsageCounts) -> dict[str, Any]:
    return {name: getattr(counts, name) for name in UsageCounts.__slots__}


def scan(chunks: list[bytes]) -> dict[str, Any]:
    scanner = UsageScanner()
    for chunk in chunks:
        scanner.feed(chunk)
    return counts_of(scanner.counts)


def body_of(kind: str) -> bytes:
    return b"".join(stream_events(kind, MODEL, 7))


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points:
        pieces.append(data[last:point])
        last = point
    pieces.append(data[last:])
    return pieces


@pytest.mark.parametrize("kind", KINDS)
def test_whole_stream_counts_match_the_upstream_usage(kind: str) -> None:
    counts = scan([body_of(kind)])
    assert counts["model"] == MODEL
    for name, value in EXPECTED[kind].items():
        assert counts[name] == value, name


@pytest.mark.parametrize("kind", KINDS)
def test_one_byte_chunks_give_the_same_counts(kind: str) -> None:
    data = body_of(kind)
    assert scan([data[i : i + 1] for i in range(len(data))]) == scan([data])


@pytest.mark.parametrize("kind", KINDS)
def test_event_by_event_chunks_give_the_same_counts(kind: str) -> None:
    events = stream_events(kind, MODEL, 7)
    assert scan(events) == scan([b"".join(events)])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(KINDS), cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=60))
def test_any_split_gives_the_same_counts(kind: str, cuts: list[int]) -> None:
    data = body_of(kind)
    assert scan(split_at(data, cuts)) == scan([data])


def _adversarial_stream(text: str) -> bytes:
    events = stream_events("text", MODEL)
    # Replace the first text delta's text with the adversarial one.
    delta = sse(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
    )
    return events[0] + delta + b"".join(events[1:])


TRICKY_TEXTS = [
    '\nevent: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":99999}}\n\n',
    'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":77777}}}\n\n',
    "\n\nevent: error\ndata: {}\n\n",
    "data: event: message_delta",
]


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_model_text_that_looks_like_events_does_not_confuse_the_counts(text: str) -> None:
    data = _adversarial_stream(text)
    assert b"\\nevent: message_delta" in data or b"event: " in data
    expected = {**scan([body_of("text")]), "model": MODEL}
    assert scan([data]) == expected
    assert scan([data[i : i + 1] for i in range(len(data))]) == expected


@settings(max_examples=100, deadline=None)
@given(text=st.sampled_from(TRICKY_TEXTS), cuts=st.lists(st.integers(min_value=0, max_value=5_000), max_size=30))
def test_tricky_text_split_anywhere_does_not_confuse_the_counts(text: str, cuts: list[int]) -> None:
    data = _adversarial_stream(text)
    assert scan(split_at(data, cuts)) == scan([body_of("text")])


def test_message_delta_fields_override_message_start() -> None:
    data = (
        sse(
            "message_start",
            {"type": "message_start", "message": {"model": MODEL, "usage": {"input_tokens": 5, "output_tokens": 1}}},
        )
        + sse("message_delta", {"type": "message_delta", "usage": {"output_tokens": 3}})
        + sse(
            "message_delta",
            {"type": "message_delta", "usage": {"input_tokens": 30, "output_tokens": 9, "cache_read_input_tokens": 4}},
        )
        + sse("message_stop", {"type": "message_stop"})
    )
    counts = scan([data])
    assert (counts["input_tokens"], counts["output_tokens"], counts["cache_read"]) == (30, 9, 4)


def test_multi_line_data_is_joined() -> None:
    data = (
        b'event: message_start\ndata: {"type":"message_start",\ndata: "message":{"model":"m",'
        b'"usage":{"input_tokens":11}}}\n\n'
        b'event: message_delta\ndata: {"type": "message_delta",\ndata: "usage": {"output_tokens": 7}}\n\n'
    )
    counts = scan([data])
    assert (counts["model"], counts["input_tokens"], counts["output_tokens"]) == ("m", 11, 7)


def test_a_stream_cut_short_keeps_what_was_seen() -> None:
    events = stream_events("text", MODEL)
    counts = scan(events[:3])
    assert (counts["input_tokens"], counts["output_tokens"], counts["seen_stop"]) == (25, 1, False)


# --- at_event_boundary: where a ping may be inserted ------------------------------------------


def _event_ends(events: list[bytes]) -> set[int]:
    ends, at = {0}, 0
    for event in events:
        at += len(event)
        ends.add(at)
    return ends


@pytest.mark.parametrize("kind", KINDS)
def test_at_event_boundary_is_true_exactly_at_event_ends(kind: str) -> None:
    events = stream_events(kind, MODEL, 3)
    data = b"".join(events)
    ends = _event_ends(events)
    scanner = UsageScanner()
    assert scanner.at_event_boundary()
    for i in range(len(data)):
        scanner.feed(data[i : i + 1])
        assert scanner.at_event_boundary() == (i + 1 in ends), f"after byte {i + 1} of {len(data)}"


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(KINDS), cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
def test_at_event_boundary_after_random_chunks(kind: str, cuts: list[int]) -> None:
    events = stream_events(kind, MODEL, 3)
    data = b"".join(events)
    ends = _event_ends(events)
    scanner = UsageScanner()
    fed = 0
    for piece in split_at(data, cuts):
        scanner.feed(piece)
        fed += len(piece)
        assert scanner.at_event_boundary() == (fed in ends)


def test_a_ping_at_a_boundary_does_not_change_the_counts() -> None:
    events = stream_events("cache", MODEL)
    with_pings = [PING] + [piece for event in events for piece in (event, PING)]
    assert scan(with_pings) == scan(events)


# --- non-streaming answers -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["text", "tool_use", "thinking", "cache"])
def test_observe_message_takes_usage_from_a_whole_answer(kind: str) -> None:
    message = message_json(kind, MODEL)
    counts = UsageCounts()
    assert counts.observe_message(orjson.dumps(message))
    usage = message["usage"]
    assert counts.model == MODEL
    assert counts.input_tokens == usage["input_tokens"]
    assert counts.output_tokens == usage["output_tokens"]
    assert counts.cache_creation == usage["cache_creation_input_tokens"]
    assert counts.cache_read == usage["cache_read_input_tokens"]
    if kind == "cache":
        assert (counts.cache_5m, counts.cache_1h) == (1000, 500)


@pytest.mark.parametrize("body", [b"", b"not json", b'{"id": "msg_broken", "content": [', b"[1, 2]", b'"text"'])
def test_observe_message_rejects_bodies_that_are_not_json_objects(body: bytes) -> None:
    counts = UsageCounts()
    assert counts.observe_message(body) is False
    assert (counts.input_tokens, counts.output_tokens) == (0, 0)


def test_observe_message_without_usage_counts_nothing() -> None:
    counts = UsageCounts()
    assert counts.observe_message(b'{"type": "message", "model": "m", "usage": null}')
    assert (counts.model, counts.input_tokens, counts.output_tokens) == ("m", 0, 0)
