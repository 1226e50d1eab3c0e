"""End to end: the real Claude Code CLI keeps working when its plan is out of usage.

`tests/e2e/node_modules/.bin/claude -p … --output-format json` (pinned in
tests/e2e/package.json; install with `npm ci --prefix tests/e2e`) runs headless against an
in-process gateway whose plan (the fake Anthropic) answers every request with a 429
usage-limit error, and whose key has a Bedrock API key registered. The fake Bedrock's text
is changed to "Hello from the fake Bedrock.", so the answer Claude Code prints can only
have come from Bedrock. Environment as in tests/test_e2e_claude_code.py: fresh HOME and
working directory, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1, nothing else of ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import secrets
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import REPO, Gateway, LogCapture, start_site

from bench import fake_bedrock
from bench.fake_anthropic import FakeAnthropic
from bench.fake_bedrock import FakeBedrock
from gateway import audit, keys, price_table, pricing, server
from gateway import bedrock as bedrock_mod

CLAUDE = REPO / "tests" / "e2e" / "node_modules" / ".bin" / "claude"
TIMEOUT = 120
PLAN_CREDENTIAL = "sk-ant-e2e-fallback-plan-credential"
PROMPT = "Say hello to the fallback test okapi-narwhal-4417."
BEDROCK_TEXT = "Hello from the fake Bedrock."

_original_events = fake_bedrock.bedrock_events


def _bedrock_events(kind: str, model: str, n: int = 3) -> list[bytes]:
    return [e.replace(b'"text":" upstream."', b'"text":" Bedrock."') for e in _original_events(kind, model, n)]


@pytest.fixture(autouse=True)
def distinct_bedrock_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fake_bedrock, "bedrock_events", _bedrock_events)


@pytest.fixture
async def bedrock() -> AsyncIterator[tuple[FakeBedrock, str]]:
    fake = FakeBedrock(api_key="ABSK" + secrets.token_urlsafe(30))
    runner, url = await start_site(fake.app())
    yield fake, url
    await runner.cleanup()


def claude_binary() -> Path:
    if not os.access(CLAUDE, os.X_OK):
        pytest.fail(
            f"the Claude Code CLI is not installed at {CLAUDE.relative_to(REPO)}: run `npm ci --prefix tests/e2e`",
            pytrace=False,
        )
    return CLAUDE


async def run_claude(home: Path, base_url: str) -> dict[str, Any]:
    """`claude -p` as a subprocess, without blocking the loop the fakes and gateway run on."""
    workdir = home / "work"
    workdir.mkdir(parents=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": PLAN_CREDENTIAL,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    process = await asyncio.create_subprocess_exec(
        str(claude_binary()),
        "-p",
        PROMPT,
        "--output-format",
        "json",
        env=env,
        cwd=workdir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        pytest.fail(f"claude -p did not finish within {TIMEOUT} s (killed)")
    assert process.returncode == 0, f"claude exited {process.returncode}: {stdout.decode()!r} {stderr.decode()!r}"
    result: dict[str, Any] = orjson.loads(stdout)
    return result


@pytest.mark.parametrize("plan_failure", ["usage_limit", "status:529"])
async def test_claude_code_completes_a_task_on_bedrock_when_the_plan_fails(
    gateway_factory: Any,
    fake: tuple[FakeAnthropic, str],
    bedrock: tuple[FakeBedrock, str],
    logs: LogCapture,
    tmp_path: Path,
    plan_failure: str,
) -> None:
    upstream, plan_url = fake
    upstream.default = plan_failure  # every plan call fails: out of usage, or overloaded
    fake_bedrock_server, bedrock_url = bedrock
    gw: Gateway = await gateway_factory(plan_url, bedrock_endpoint_url=bedrock_url)
    issued = await gw.issue_key("dev")
    await keys.set_bedrock_key(
        gw.database, gw.app[server.KEYRING], audit.SYSTEM, issued["id"], fake_bedrock_server.api_key
    )
    # Claude Code 2.1.197 asks for claude-opus-4-8: mapped by the shipped table, but it has no
    # shipped price yet, so the operator sets one (as `ccproxy pricing set` would).
    opus = pricing.Price(
        "claude-opus-4-8", "*", *(Decimal(v) for v in ("5", "25", "6.25", "10", "0.5")), dt.date(2025, 1, 1)
    )
    await price_table.upsert(gw.database, audit.SYSTEM, [opus])
    now = dt.datetime.now(dt.UTC)
    for _ in range(250):  # the price table reloads on NOTIFY
        if gw.app[server.PRICES].book.lookup("us.anthropic.claude-opus-4-8", "*", now) is not None:
            break
        await asyncio.sleep(0.02)

    result = await run_claude(tmp_path / "home", f"{gw.url}/ak/{issued['key']}")

    assert result["type"] == "result" and result["is_error"] is False, result
    assert result["result"].strip() == BEDROCK_TEXT, result  # Bedrock's answer, not the plan's error
    assert result["usage"]["input_tokens"] >= 25 and result["usage"]["output_tokens"] >= 12

    # Every request Claude Code made went to the plan first, then to Bedrock.
    assert upstream.requests and fake_bedrock_server.requests
    assert len(fake_bedrock_server.requests) == len(upstream.requests)
    for seen in fake_bedrock_server.requests:
        assert seen.headers["Authorization"] == f"Bearer {fake_bedrock_server.api_key}"
        body = orjson.loads(seen.body)
        assert "model" not in body and "stream" not in body
        assert body["anthropic_version"] == "bedrock-2023-05-31"
        assert set(body.get("anthropic_beta", [])) <= set(gw.config.bedrock_beta_allowlist)

    rows = await gw.usage_rows()
    assert len(rows) == len(upstream.requests)
    for row, seen in zip(rows, upstream.requests, strict=True):
        requested = orjson.loads(seen.body)["model"]
        assert (row["provider"], row["is_fallback"], row["status"], row["error_class"]) == ("bedrock", True, 200, None)
        assert row["model"] == requested
        assert row["upstream_model"] == bedrock_mod.resolve_model(requested, None, gw.config)
        assert (row["input_tokens"], row["output_tokens"]) == (25, 12)
        assert row["cost_usd"] > 0 and row["price_snapshot"] is not None
        assert row["session_id"] == result["session_id"]

    lines = [line for line in logs.lines() if line.get("event") == "request_completed"]
    outcome = "usage_limit" if plan_failure == "usage_limit" else "server_error"
    assert [(line["plan_outcome"], line["provider"]) for line in lines] == [(outcome, "bedrock")] * len(rows)
    text = logs.text()
    assert issued["key"] not in text and PLAN_CREDENTIAL not in text
    assert fake_bedrock_server.api_key not in text and "okapi-narwhal" not in text


async def test_claude_code_skips_an_exhausted_plan_until_its_reset_then_uses_it_again(
    gateway_factory: Any,
    fake: tuple[FakeAnthropic, str],
    bedrock: tuple[FakeBedrock, str],
    logs: LogCapture,
    tmp_path: Path,
) -> None:
    """Quota-aware routing with the real CLI: the plan rejects the key (unified status
    `rejected`, a reset named); the next run of Claude Code is answered by Bedrock without
    the plan seeing it; after the reset the plan serves again. The reset is 12 s ahead, not
    3 s: one `claude -p` takes a few seconds to start, and the second run must fall inside it."""
    upstream, plan_url = fake
    fake_bedrock_server, bedrock_url = bedrock
    gw: Gateway = await gateway_factory(plan_url, bedrock_endpoint_url=bedrock_url)
    issued = await gw.issue_key("dev")
    await keys.set_bedrock_key(
        gw.database, gw.app[server.KEYRING], audit.SYSTEM, issued["id"], fake_bedrock_server.api_key
    )
    base_url = f"{gw.url}/ak/{issued['key']}"
    reset_in = 12.0
    upstream.queue(*[f"rejected:{reset_in:g}"] * 20)  # whatever reaches the plan before the reset is rejected
    started = time.time()

    first = await run_claude(tmp_path / "home1", base_url)
    assert first["is_error"] is False and first["result"].strip() == BEDROCK_TEXT, first
    asked = len(upstream.requests)
    assert asked >= 1  # the plan was asked and said `rejected`

    second = await run_claude(tmp_path / "home2", base_url)
    assert time.time() < started + reset_in, "the second run must end before the reset (slow machine?)"
    assert second["is_error"] is False and second["result"].strip() == BEDROCK_TEXT, second
    assert len(upstream.requests) == asked, "the plan saw requests while the key was routed to Bedrock"

    await asyncio.sleep(max(0.0, started + reset_in + 0.5 - time.time()))
    upstream.scripted.clear()  # the plan has its quota back
    third = await run_claude(tmp_path / "home3", base_url)
    assert third["is_error"] is False and third["result"].strip() == "Hello from the fake upstream.", third
    assert len(upstream.requests) > asked

    rows = await gw.usage_rows()
    outcomes = [(r["provider"], r["plan_outcome"]) for r in rows]
    served = len(upstream.requests) - asked  # the third run's requests, all served by the plan
    routed = len(rows) - asked - served
    assert routed >= 1
    assert (
        outcomes
        == [("bedrock", "usage_limit")] * asked + [("bedrock", "quota_exhausted")] * routed + [("plan", None)] * served
    )
    lines = [line for line in logs.lines() if line.get("event") == "request_completed"]
    assert any(line["plan_outcome"] == "quota_exhausted" and line["provider_attempted"] == "bedrock" for line in lines)
