"""Micro-benchmark of the Bedrock event-stream path: decoder throughput and translator cost.

`python -m bench.eventstream_bench` feeds realistic Bedrock streams (the fake Bedrock's
frames) in 16 KiB reads, as aiohttp's `readany()` hands them over, to
`EventStreamDecoder` (frames/s, with botocore's `EventStreamBuffer` as a reference) and
to `BedrockSSETranslator` (µs per event: frame decode + base64 + type + SSE re-emit).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import orjson
from botocore.eventstream import EventStreamBuffer

from bench.fake_anthropic import stream_events
from bench.fake_bedrock import bedrock_events, chunk_frame, event_json
from gateway.eventstream import BedrockSSETranslator, EventStreamDecoder

READ = 16 * 1024
MODEL = "claude-sonnet-4-5-20250929"


def _reads(body: bytes) -> list[bytes]:
    return [body[i : i + READ] for i in range(0, len(body), READ)]


def workloads(n: int) -> dict[str, tuple[list[bytes], int]]:
    """name → (16 KiB reads, frames)."""
    small = bedrock_events("events", MODEL, n)
    big_text = "lorem ipsum dolor sit amet " * 76  # ~2 KiB text deltas
    big = [event_json(e) for e in stream_events("events", MODEL, n // 10)]
    big = [e.replace(b'"text":"tok "', orjson.dumps({"text": big_text})[1:-1]) for e in big]
    out = {}
    for name, events in (("small deltas (~150 B)", small), ("2 KiB deltas", big)):
        out[name] = (_reads(b"".join(chunk_frame(e) for e in events)), len(events))
    return out


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def run(n: int, repeat: int) -> list[tuple[str, int, float, float, float, float]]:
    rows = []
    for name, (reads, frames) in workloads(n).items():
        size = sum(len(r) for r in reads)

        def ours(reads: list[bytes] = reads) -> None:
            decoder = EventStreamDecoder()
            for r in reads:
                decoder.feed(r)

        def botocore(reads: list[bytes] = reads) -> None:
            buffer = EventStreamBuffer()
            for r in reads:
                buffer.add_data(r)
                for _ in buffer:
                    pass

        def translate(reads: list[bytes] = reads) -> None:
            translator = BedrockSSETranslator(lambda t, d: None)
            for r in reads:
                translator.feed(r)

        t_ours = _best(ours, repeat)
        t_boto = _best(botocore, repeat)
        t_tr = _best(translate, repeat)
        rows.append(
            (
                name,
                frames,
                frames / t_ours,
                size / t_ours / 1e6,
                frames / t_boto,
                t_tr / frames * 1e6,
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000, help="text deltas per stream")
    parser.add_argument("--repeat", type=int, default=5, help="best of N runs")
    args = parser.parse_args()
    rows = run(args.events, args.repeat)
    header = (
        f"{'workload':<24}{'frames':>8}{'decoder frames/s':>18}{'decoder MB/s':>14}"
        f"{'botocore frames/s':>19}{'translator µs/event':>21}"
    )
    print(f"event-stream bench: {READ // 1024} KiB reads, best of {args.repeat}")
    print(header)
    print("-" * len(header))
    for name, frames, fps, mbps, boto_fps, us in rows:
        print(f"{name:<24}{frames:>8}{fps:>18,.0f}{mbps:>14.1f}{boto_fps:>19,.0f}{us:>21.2f}")


if __name__ == "__main__":
    main()
