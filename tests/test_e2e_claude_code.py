"""End to end with the real Claude Code CLI (`tests/e2e/node_modules/.bin/claude`, pinned in
tests/e2e/package.json; install with `npm ci --prefix tests/e2e`).

`claude -p … --output-format json` runs headless against the gateway (in-process, and as a
real `ccproxy serve` process), which relays to the fake Anthropic upstream.

What Claude Code 2.1.197 sends for one `-p` prompt, as observed against the fake: exactly one
`POST /v1/messages?beta=true`, streaming (`"stream": true`, model `claude-opus-4-8`), with
`user-agent: claude-cli/2.1.197 (external, sdk-cli)`, `x-claude-code-session-id: <uuid>`
(the same id as the JSON result's `session_id`), `anthropic-version`, `anthropic-beta`,
`x-stainless-*`, `x-app: cli`, and the credential from the environment: `x-api-key` for
ANTHROPIC_API_KEY, `authorization: Bearer …` for ANTHROPIC_AUTH_TOKEN. With
CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 there is no other traffic (no quota probe,
no model list, no telemetry). The tests do not depend on that count: every request the
fake sees is answered with its default `text` scenario and each must have its usage row.

No onboarding bypass is needed: with an API key (or auth token) in the environment and
`-p`, the CLI answers headless from an empty HOME (it writes its own ~/.claude.json and
~/.claude/ there). HOME and the working directory are fresh temp dirs so no developer
config, CLAUDE.md or session history leaks in.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import (
    RECENT_USAGE_FIELDS,
    REPO,
    Gateway,
    LogCapture,
    cli_env,
    free_port,
    run_cli,
    start_serve,
    stop_serve,
)

from bench.fake_anthropic import FINAL_OUTPUT_TOKENS, TEXT, FakeAnthropic

CLAUDE = REPO / "tests" / "e2e" / "node_modules" / ".bin" / "claude"
CLAUDE_VERSION = "2.1.197"
TIMEOUT = 120
PLAN_CREDENTIAL = "sk-ant-e2e-test"
PROMPT = "Say hello to the e2e gateway test zebra-quokka-7731."
INPUT_TOKENS = 25  # the fake's `text` scenario
ALLOWED_UPSTREAM = {"content-type", "accept", "user-agent"}


def claude_binary() -> Path:
    if not os.access(CLAUDE, os.X_OK):
        pytest.fail(
            f"the Claude Code CLI is not installed at {CLAUDE.relative_to(REPO)}: run `npm ci --prefix tests/e2e`",
            pytrace=False,
        )
    return CLAUDE


def claude_env(home: Path, base_url: str, credential_var: str) -> dict[str, str]:
    """A minimal environment: PATH kept, nothing else from ours (no proxy variables, no
    ANTHROPIC_* or CLAUDE_* settings of the developer running the tests)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": base_url,
        credential_var: PLAN_CREDENTIAL,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }


async def run_claude(home: Path, base_url: str, credential_var: str = "ANTHROPIC_API_KEY") -> dict[str, Any]:
    """Run `claude -p` without blocking the event loop (the fake upstream runs on it)."""
    home.mkdir(parents=True, exist_ok=True)
    workdir = home / "work"
    workdir.mkdir(exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        str(claude_binary()),
        "-p",
        PROMPT,
        "--output-format",
        "json",
        env=claude_env(home, base_url, credential_var),
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
    assert result["type"] == "result" and result["is_error"] is False, result
    assert TEXT in result["result"], result
    return result


def message_requests(upstream: FakeAnthropic) -> list[Any]:
    assert upstream.requests, "the fake upstream saw no request"
    for seen in upstream.requests:
        assert (seen.method, seen.path) == ("POST", "/v1/messages"), (seen.method, seen.path)
    return upstream.requests


def check_upstream_requests(upstream: FakeAnthropic, credential_header: str, key: str) -> None:
    """What reached the plan: Claude Code's own headers and credential, never the access key."""
    for seen in message_requests(upstream):
        headers = {k.lower(): v for k, v in seen.headers.items()}
        assert seen.query == "beta=true"
        assert headers["user-agent"].startswith(f"claude-cli/{CLAUDE_VERSION} "), headers["user-agent"]
        if credential_header == "x-api-key":
            assert headers["x-api-key"] == PLAN_CREDENTIAL
            assert "authorization" not in headers
        else:
            assert headers["authorization"] == f"Bearer {PLAN_CREDENTIAL}"
            assert "x-api-key" not in headers
        assert "claude-code-20250219" in headers["anthropic-beta"]
        assert headers["anthropic-version"] == "2023-06-01"
        assert key not in repr(headers) and key not in seen.query
        # SPEC §2's open lists: every anthropic-*, x-claude-code-* and x-stainless-* header
        # and Claude Code's own extras (x-app) go on; hop-by-hop headers, cookies and
        # accept-encoding (the gateway meters the stream) stay at the gateway.
        assert headers["x-claude-code-session-id"]
        assert headers["anthropic-dangerous-direct-browser-access"] == "true"
        assert headers["x-app"] == "cli"
        assert "cookie" not in headers and "accept-encoding" not in headers
        named = {h for h in headers if not h.startswith(("x-stainless-", "anthropic-", "x-claude-code-"))}
        assert named - {"host", "content-length", "connection"} <= ALLOWED_UPSTREAM | {credential_header, "x-app"}, (
            named
        )
        body = orjson.loads(seen.body)
        assert body["stream"] is True
        assert body["model"].startswith("claude-")


async def test_claude_code_cli_version_is_the_pinned_one(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        str(claude_binary()),
        "--version",
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "DISABLE_AUTOUPDATER": "1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    assert stdout.decode().startswith(CLAUDE_VERSION)


@pytest.mark.parametrize(
    ("credential_var", "credential_header"),
    [("ANTHROPIC_API_KEY", "x-api-key"), ("ANTHROPIC_AUTH_TOKEN", "authorization")],
)
async def test_claude_code_through_the_gateway(
    gateway: Gateway,
    fake: tuple[FakeAnthropic, str],
    logs: LogCapture,
    tmp_path: Path,
    credential_var: str,
    credential_header: str,
) -> None:
    upstream, _ = fake
    key = (await gateway.issue_key("dev"))["key"]

    result = await run_claude(tmp_path / "home", f"{gateway.url}/ak/{key}", credential_var)

    # Claude Code saw the fake's usage through the gateway, unchanged.
    assert result["usage"]["input_tokens"] >= INPUT_TOKENS
    assert result["usage"]["output_tokens"] >= FINAL_OUTPUT_TOKENS
    check_upstream_requests(upstream, credential_header, key)

    rows = await gateway.usage_rows()
    assert len(rows) == len(upstream.requests)
    for row, seen in zip(rows, upstream.requests, strict=True):
        assert row["endpoint"] == "messages"
        assert (row["provider"], row["is_fallback"], row["status"], row["error_class"]) == ("plan", False, 200, None)
        assert row["stream"] is True
        assert row["model"] == orjson.loads(seen.body)["model"]
        assert (row["input_tokens"], row["output_tokens"]) == (INPUT_TOKENS, FINAL_OUTPUT_TOKENS)
        assert (row["cache_creation_input_tokens"], row["cache_read_input_tokens"]) == (0, 0)
        assert row["session_id"] == result["session_id"]
        assert row["latency_ms"] > 0 and row["ttfb_ms"] is not None and row["ttfb_ms"] <= row["latency_ms"]

    completed = [line for line in logs.lines() if line.get("event") == "request_completed"]
    assert len(completed) == len(upstream.requests)
    assert {line["session_id"] for line in completed} == {result["session_id"]}
    text = logs.text()
    assert key not in text and PLAN_CREDENTIAL not in text and "zebra-quokka" not in text


async def cli_async(env: dict[str, str], *args: str) -> Any:
    """`ccproxy …` off the event loop, its --json output parsed."""
    done = await asyncio.to_thread(run_cli, env, *args)
    return orjson.loads(done.stdout)


async def test_claude_code_through_a_real_ccproxy_serve(
    fake: tuple[FakeAnthropic, str], database_url: str, open_tmp: Path
) -> None:
    upstream, fake_url = fake
    env = cli_env(open_tmp, database_url=database_url, plan_base_url=fake_url, usage_flush_ms="20")
    await cli_async(env, "users", "create", "dev", "--json")
    issued = await cli_async(env, "keys", "issue", "--user", "dev", "--json")
    key = issued["key"]
    assert key.startswith("ak_")

    stdout_path = open_tmp / "serve.out"
    serve = await asyncio.to_thread(start_serve, env, stdout_path, free_port())
    try:
        result = await run_claude(open_tmp / "home", f"{serve.url}/ak/{key}")
    finally:
        exit_code = await asyncio.to_thread(stop_serve, serve)
    assert exit_code == 0, stdout_path.read_text()[-2000:]
    check_upstream_requests(upstream, "x-api-key", key)
    requests = len(upstream.requests)

    # The shutdown flushed the usage queue: the rows are there once serve has exited.
    recent = await cli_async(env, "usage", "recent", "--limit", "5", "--json")
    assert len(recent) == requests
    fields = RECENT_USAGE_FIELDS
    for row in recent:
        assert fields <= row.keys(), fields - row.keys()
        assert len(row["request_id"]) == 36
        assert row["created_at"]
        assert row["user"] == "dev"
        prefix = row["access_key_prefix"].removesuffix("…")
        assert row["access_key_prefix"].endswith("…") and key.startswith(prefix) and len(prefix) < len(key)
        assert (row["provider"], row["is_fallback"], row["status"], row["error_class"]) == ("plan", False, 200, None)
        assert row["stream"] is True
        assert row["model"].startswith("claude-")
        assert (row["input_tokens"], row["output_tokens"]) == (INPUT_TOKENS, FINAL_OUTPUT_TOKENS)
        assert (row["cache_creation_input_tokens"], row["cache_read_input_tokens"]) == (0, 0)
        assert row["latency_ms"] > 0 and row["ttfb_ms"] is not None
        assert row["session_id"] == result["session_id"]

    # One JSON `request_completed` line per request; no secrets, no prompt.
    completed = [line for line in serve.log_lines() if line.get("event") == "request_completed"]
    assert len(completed) == requests
    assert {line["request_id"] for line in completed} == {row["request_id"] for row in recent}
    for line in completed:
        assert (line["status"], line["provider"], line["user"]) == (200, "plan", "dev")
        assert (line["input_tokens"], line["output_tokens"]) == (INPUT_TOKENS, FINAL_OUTPUT_TOKENS)
        assert line["session_id"] == result["session_id"]
    output = stdout_path.read_text()
    assert key not in output
    assert PLAN_CREDENTIAL not in output
    assert "zebra-quokka" not in output
