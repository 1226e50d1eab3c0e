"""`python -m bench.usage_bench`: sustained usage events/s into PostgreSQL, through the
real UsageWriter (COPY batches + rollups in one transaction), for the bench suite.

Interface (bench/README.md): `--seconds S [--quick]`, `CCPROXY_DATA_DIR` (embedded
PostgreSQL) or `CCPROXY_DATABASE_URL`; prints one JSON object with `events_per_s`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import orjson

from gateway import audit, db, keys, usage, users
from gateway import config as config_mod

MODELS = ("claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001", "claude-opus-4-1-20250805")


async def _fixtures(database: db.Database, hasher: keys.KeyHasher, n_users: int) -> list[tuple[int, int]]:
    pairs = []
    for i in range(n_users):
        name = f"bench-{os.getpid()}-{i}"
        user = await users.create(database, audit.SYSTEM, users.UserCreate(name=name))
        issued = await keys.issue(database, hasher, audit.SYSTEM, user.id)
        pairs.append((user.id, issued.id))
    return pairs


def _events(pairs: list[tuple[int, int]], n: int, rng: random.Random) -> list[usage.UsageEvent]:
    out = []
    for _ in range(n):
        user_id, key_id = rng.choice(pairs)
        bedrock = rng.random() < 0.2
        out.append(
            usage.UsageEvent(
                request_id=usage.new_request_id(),
                created_at=usage.now(),
                user_id=user_id,
                access_key_id=key_id,
                endpoint="messages",
                provider="bedrock" if bedrock else "plan",
                is_fallback=bedrock,
                model=rng.choice(MODELS),
                upstream_model=None,
                status=200,
                error_class=None,
                stream=True,
                input_tokens=rng.randrange(10, 50_000),
                output_tokens=rng.randrange(1, 4_000),
                cache_read_input_tokens=rng.randrange(0, 100_000),
                cost_usd=Decimal("0.012345") if bedrock else Decimal(0),
                latency_ms=rng.uniform(200, 20_000),
                ttfb_ms=rng.uniform(100, 2_000),
                session_id="bench-session",
            )
        )
    return out


async def run(config: config_mod.Config, seconds: float) -> dict[str, float]:
    dsn = await db.resolve_dsn(config)
    await db.migrate_async(dsn)
    database = await db.connect(config, dsn)
    hasher = keys.KeyHasher(keys.load_secret(config.key_hash_secret, config.data_path))
    pairs = await _fixtures(database, hasher, 50)
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as journal_dir:
        writer = usage.UsageWriter(
            database,
            batch_rows=config.usage_batch_rows,
            flush_ms=config.usage_flush_ms,
            queue_max=config.usage_queue_max,
            journal_dir=Path(journal_dir),
            report_tz=config.report_tz,
        )
        task = asyncio.create_task(writer.run())
        # Keep the queue topped up to a few batches, as a busy gateway would.
        chunk = config.usage_batch_rows
        pool = _events(pairs, chunk * 4, rng)
        # Fresh unique ids cheaply (a UUIDv7 prefix plus a counter), so the producer's own
        # cost stays small next to the writer's: the gateway makes one id per request anyway.
        prefix = usage.new_request_id()[:24]
        serial = 0
        started = time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            if writer.queued < chunk * 3:
                for event in pool[:chunk]:
                    serial += 1
                    event.request_id = f"{prefix}{serial:012x}"
                    writer.add(event)
                pool = pool[chunk:] + pool[:chunk]
            await asyncio.sleep(0.002)  # not a busy loop: the database needs the cores
        elapsed = time.perf_counter() - started
        written = writer.written
        task.cancel()
        await writer.close()
    rollup_rows = await database.fetchval("count-usage-events")
    await database.close()
    return {
        "events_per_s": written / elapsed,
        "events": float(written),
        "seconds": elapsed,
        "batch_rows": float(config.usage_batch_rows),
        "rows_in_table": float(rollup_rows),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="a 2-second run")
    args = parser.parse_args(argv)
    config = config_mod.load(dict(os.environ))
    seconds = 2.0 if args.quick else args.seconds
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    result = asyncio.run(run(config, seconds))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
