"""End to end with the real Claude Code CLI, feature by feature, through both providers
(issue 15): a text answer, a tool call, a thinking block, an image in the prompt and a
subagent, each once with the plan serving and once with the plan exhausted (every plan
call answers 429 usage limit) so that Bedrock serves.

The upstreams are the fakes, scripted per request from what Claude Code sent (so the CLI
really works through each path): the plan is `FakeAnthropic` speaking SSE, Bedrock is the
validating `FakeBedrock` speaking the event stream (a body or beta Bedrock would refuse
gets its ValidationException, and the CLI run fails). Environment as in
tests/test_e2e_claude_code.py: fresh HOME and working directory, `-p`,
CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1, nothing else of ours.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from conftest import REPO, Gateway, start_site

from bench import fake_anthropic, fake_bedrock
from bench.fake_anthropic import FakeAnthropic
from bench.fake_bedrock import FakeBedrock
from gateway import audit, keys, server

CLAUDE = REPO / "tests" / "e2e" / "node_modules" / ".bin" / "claude"
TIMEOUT = 90
PLAN_CREDENTIAL = "sk-ant-e2e-protocol-credential"
SECRET_WORD = "marmot-4411"  # in the file the tool reads; only the tool_result can carry it
# 1×1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
CASES = ("text", "tool", "thinking", "image", "subagent")
MARKERS = {
    "text": "E2E-TEXT-OK",
    "tool": f"E2E-TOOL-OK {SECRET_WORD}",
    "thinking": "E2E-THINKING-OK",
    "image": "E2E-IMAGE-OK",
    "subagent": "E2E-AGENT-OK",
}
SUBAGENT_TEXT = "E2E-SUBAGENT-DONE"


# --- the script: what each answer is, from what the request carries ------------------------------


def _last_user_blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, list) else [{"type": "text", "text": content}]
    return []


def _tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in _last_user_blocks(body) if b.get("type") == "tool_result"]


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(_text_of(v.get("text", v.get("content", ""))) for v in value if isinstance(v, dict))
    return ""


SUBAGENT_PROMPT = "E2E-SUBAGENT-PROMPT: reply with one word."


def _is_subagent(body: dict[str, Any]) -> bool:
    # The subagent's conversation starts with the prompt the main turn gave it (Bedrock
    # sees no Claude Code headers, so the body is what tells them apart).
    for message in body.get("messages") or []:
        if message.get("role") == "user":
            return SUBAGENT_PROMPT in _text_of(message.get("content"))
    return False


def answer_blocks(case: str, body: dict[str, Any], headers: dict[str, str], workdir: Path) -> list[dict[str, Any]]:
    """The content blocks of the next answer in `case`."""
    results = _tool_results(body)
    if case == "tool":
        if not results:
            return [
                {
                    "type": "tool_use",
                    "id": "toolu_e2e_read",
                    "name": "Read",
                    "input": {"file_path": str(workdir / "note.txt")},
                }
            ]
        seen = SECRET_WORD if SECRET_WORD in _text_of(results[0].get("content")) else "missing"
        return [{"type": "text", "text": f"E2E-TOOL-OK {seen}"}]
    if case == "subagent":
        if _is_subagent(body):
            return [{"type": "text", "text": SUBAGENT_TEXT}]
        if not results:
            prompt = {"description": "Say done", "prompt": SUBAGENT_PROMPT, "subagent_type": "general-purpose"}
            return [{"type": "tool_use", "id": "toolu_e2e_agent", "name": "Agent", "input": prompt}]
        ok = SUBAGENT_TEXT in _text_of(results[0].get("content"))
        return [{"type": "text", "text": "E2E-AGENT-OK" if ok else "E2E-AGENT-MISSING"}]
    if case == "thinking":
        return [
            {"type": "thinking", "thinking": "The user wants the marker.", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"},
            {"type": "text", "text": "E2E-THINKING-OK"},
        ]
    if case == "image":
        has_image = any(b.get("type") == "image" for b in _last_user_blocks(body))
        return [{"type": "text", "text": "E2E-IMAGE-OK" if has_image else "E2E-IMAGE-MISSING"}]
    return [{"type": "text", "text": "E2E-TEXT-OK"}]


def answer_events(blocks: list[dict[str, Any]], model: str) -> list[dict[str, Any]]:
    """The Anthropic stream events of a message made of `blocks`."""
    usage = dict(fake_anthropic.DEFAULT_USAGE)
    events: list[dict[str, Any]] = [{"type": "message_start", "message": fake_anthropic._message(model, usage)}]
    for index, block in enumerate(blocks):
        kind = block["type"]
        if kind == "text":
            start, deltas = {"type": "text", "text": ""}, [{"type": "text_delta", "text": block["text"]}]
        elif kind == "thinking":
            start = {"type": "thinking", "thinking": ""}
            deltas = [
                {"type": "thinking_delta", "thinking": block["thinking"]},
                {"type": "signature_delta", "signature": block["signature"]},
            ]
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": orjson.dumps(block["input"]).decode()}]
        events.append({"type": "content_block_start", "index": index, "content_block": start})
        events.extend({"type": "content_block_delta", "index": index, "delta": d} for d in deltas)
        events.append({"type": "content_block_stop", "index": index})
    stop = "tool_use" if blocks[-1]["type"] == "tool_use" else "end_turn"
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": fake_anthropic.FINAL_OUTPUT_TOKENS},
        }
    )
    events.append({"type": "message_stop"})
    return events


def answer_message(blocks: list[dict[str, Any]], model: str) -> dict[str, Any]:
    usage = {**fake_anthropic.DEFAULT_USAGE, "output_tokens": fake_anthropic.FINAL_OUTPUT_TOKENS}
    message = fake_anthropic._message(model, usage)
    message["content"] = blocks
    message["stop_reason"] = "tool_use" if blocks[-1]["type"] == "tool_use" else "end_turn"
    return message


class ScriptedPlan(FakeAnthropic):
    """The plan: answers by the script, or (exhausted) a 429 usage-limit error to all."""

    def __init__(self, case: str, workdir: Path, exhausted: bool) -> None:
        super().__init__(default="usage_limit" if exhausted else "text")
        self.case = case
        self.workdir = workdir
        self.exhausted = exhausted

    async def messages(self, request: web.Request) -> web.StreamResponse:
        if self.exhausted:
            return await super().messages(request)
        raw = await self._remember(request)
        body = orjson.loads(raw)
        headers = {k.lower(): v for k, v in request.headers.items()}
        blocks = answer_blocks(self.case, body, headers, self.workdir)
        model = str(body.get("model"))
        if not body.get("stream"):
            return web.json_response(answer_message(blocks, model), headers={"request-id": "req_e2e"})
        response = web.StreamResponse(
            headers={"content-type": "text/event-stream; charset=utf-8", "request-id": "req_e2e"}
        )
        await response.prepare(request)
        for event in answer_events(blocks, model):
            await response.write(fake_anthropic.sse(event["type"], event))
        await response.write_eof()
        return response


class ScriptedBedrock(FakeBedrock):
    """Bedrock: the validating fake's checks (auth, body, betas), then the script's answer
    as event-stream frames."""

    def __init__(self, case: str, workdir: Path) -> None:
        super().__init__(api_key="ABSK" + secrets.token_urlsafe(30))
        self.case = case
        self.workdir = workdir

    def _blocks(self, request: web.Request) -> list[dict[str, Any]]:
        seen = self.requests[-1]
        body = orjson.loads(seen.body)
        return answer_blocks(self.case, body, {k.lower(): v for k, v in seen.headers.items()}, self.workdir)

    async def invoke(self, request: web.Request) -> web.StreamResponse:
        _, refusal = await self._admit(request)
        if refusal is not None:
            return refusal
        model = fake_bedrock.anthropic_model(request.match_info["model_id"])
        return web.json_response(answer_message(self._blocks(request), model))

    async def invoke_stream(self, request: web.Request) -> web.StreamResponse:
        _, refusal = await self._admit(request)
        if refusal is not None:
            return refusal
        model = fake_bedrock.anthropic_model(request.match_info["model_id"])
        response = web.StreamResponse(headers={"content-type": "application/vnd.amazon.eventstream"})
        await response.prepare(request)
        for event in answer_events(self._blocks(request), model):
            await response.write(fake_bedrock.chunk_frame(orjson.dumps(event)))  # chunk bytes: the event JSON
        await response.write_eof()
        return response


# --- running Claude Code ---------------------------------------------------------------------------


def claude_binary() -> Path:
    if not os.access(CLAUDE, os.X_OK):
        pytest.fail(
            f"the Claude Code CLI is not installed at {CLAUDE.relative_to(REPO)}: run `npm ci --prefix tests/e2e`",
            pytrace=False,
        )
    return CLAUDE


PROMPTS = {
    "text": "Reply with the e2e marker.",
    "tool": "Read note.txt and tell me the word in it.",
    "thinking": "Think, then reply with the marker.",
    "image": "What is in this image?",
    "subagent": "Use a subagent to say done.",
}


async def run_claude(case: str, home: Path, workdir: Path, base_url: str) -> dict[str, Any]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": PLAN_CREDENTIAL,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    args = ["-p", "--allowedTools=Read,Agent"]
    stdin = None
    if case == "image":
        # An image in the prompt: a user message with an image block, as the SDKs send it.
        message = {
            "type": "user",
            "message": {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": base64.b64encode(PNG).decode()},
                    },
                    {"type": "text", "text": PROMPTS[case]},
                ],
            },
        }
        stdin = orjson.dumps(message) + b"\n"
        args += ["--input-format", "stream-json", "--output-format", "stream-json", "--verbose"]
    else:
        args += [PROMPTS[case], "--output-format", "json"]
    process = await asyncio.create_subprocess_exec(
        str(claude_binary()),
        *args,
        env=env,
        cwd=workdir,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(stdin), TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        pytest.fail(f"claude -p ({case}) did not finish within {TIMEOUT} s (killed)")
    assert process.returncode == 0, (
        f"claude exited {process.returncode}: {stdout.decode()[-2000:]!r} {stderr.decode()[-2000:]!r}"
    )
    lines = [orjson.loads(line) for line in stdout.splitlines() if line.strip()]
    result: dict[str, Any] = next(line for line in reversed(lines) if line.get("type") == "result")
    assert result["is_error"] is False, result
    return result


# --- the matrix ----------------------------------------------------------------------------------------


@pytest.fixture
async def upstreams(
    request: pytest.FixtureRequest, open_tmp: Path
) -> AsyncIterator[tuple[str, str, ScriptedPlan, ScriptedBedrock, Path]]:
    case, provider = request.param
    workdir = open_tmp / "work"
    workdir.mkdir()
    (workdir / "note.txt").write_text(f"The word is {SECRET_WORD}.\n")
    plan = ScriptedPlan(case, workdir, exhausted=provider == "bedrock")
    bedrock = ScriptedBedrock(case, workdir)
    plan_runner, plan_url = await start_site(plan.app())
    bedrock_runner, bedrock_url = await start_site(bedrock.app())
    plan.url = plan_url  # type: ignore[attr-defined]
    bedrock.url = bedrock_url  # type: ignore[attr-defined]
    yield case, provider, plan, bedrock, workdir
    await bedrock_runner.cleanup()
    await plan_runner.cleanup()


MATRIX = [(case, provider) for case in CASES for provider in ("plan", "bedrock")]


@pytest.mark.parametrize("upstreams", MATRIX, ids=[f"{c}-{p}" for c, p in MATRIX], indirect=True)
async def test_claude_code_feature_through_the_gateway(
    upstreams: tuple[str, str, ScriptedPlan, ScriptedBedrock, Path], gateway_factory: Any, open_tmp: Path
) -> None:
    case, provider, plan, bedrock, workdir = upstreams
    gw: Gateway = await gateway_factory(plan.url, bedrock_endpoint_url=bedrock.url)  # type: ignore[attr-defined]
    issued = await gw.issue_key("dev")
    await keys.set_bedrock_key(gw.database, gw.app[server.KEYRING], audit.SYSTEM, issued["id"], bedrock.api_key)

    result = await run_claude(case, open_tmp / "home", workdir, f"{gw.url}/ak/{issued['key']}")

    # What Claude Code printed came through this path's upstream.
    assert MARKERS[case] in result["result"], result["result"]
    session = result["session_id"]
    plan_messages = [s for s in plan.requests if s.path == "/v1/messages"]
    assert plan_messages, "Claude Code sent nothing to the plan"
    for seen in plan_messages:
        headers = {k.lower(): v for k, v in seen.headers.items()}
        assert headers["x-api-key"] == PLAN_CREDENTIAL
        assert headers["user-agent"].startswith("claude-cli/")
        assert "claude-code-20250219" in headers.get("anthropic-beta", "") or _is_subagent(
            orjson.loads(seen.body), headers
        )
        assert headers["x-claude-code-session-id"] == session
        assert headers["anthropic-version"] == "2023-06-01"
        assert seen.query == "beta=true"

    served = plan_messages if provider == "plan" else bedrock.requests
    bodies = [orjson.loads(s.body) for s in served]
    if provider == "bedrock":
        assert len(bedrock.requests) == len(plan_messages)  # each exhausted plan call fell back once
        for seen, body in zip(bedrock.requests, bodies, strict=True):
            headers = {k.lower(): v for k, v in seen.headers.items()}
            assert headers["authorization"] == f"Bearer {bedrock.api_key}"
            assert "x-api-key" not in headers and "anthropic-beta" not in headers
            assert fake_bedrock.invoke_body_problem(body) is None
            assert "model" not in body and "stream" not in body
            assert set(body.get("anthropic_beta", [])) <= fake_bedrock.ACCEPTED_BETAS
            assert seen.path.startswith("/model/us.anthropic.claude-")  # mapped, never the default
    else:
        assert bedrock.requests == []

    # The feature itself reached the upstream that served it.
    if case == "tool":
        assert any(_tool_results(b) for b in bodies), "the tool_result never came back"
    if case == "image":
        first = _last_user_blocks(bodies[0])
        assert any(b.get("type") == "image" and b["source"]["data"] == base64.b64encode(PNG).decode() for b in first)
    if case == "thinking":
        assert all(b.get("thinking", {}).get("type") in ("adaptive", "enabled") for b in bodies if "thinking" in b)
    if case == "subagent":
        assert any(_tool_results(b) for b in bodies)
        assert len(bodies) >= 3  # the main turn, the subagent's own request, the main turn again

    rows = await gw.usage_rows()
    expected = ("plan", False) if provider == "plan" else ("bedrock", True)
    assert len(rows) == len(served)
    for row in rows:
        assert (row["provider"], row["is_fallback"], row["status"], row["error_class"]) == (*expected, 200, None)
        assert row["session_id"] == session
        assert row["model_substituted"] is False
        assert (row["input_tokens"], row["output_tokens"]) == (25, fake_anthropic.FINAL_OUTPUT_TOKENS)
    if case == "subagent":
        # The subagent's own request carries x-claude-code-agent-id (2.1.197 sends no parent
        # id for a first-level subagent); the main conversation's rows carry none.
        agents = [r["agent_id"] for r in rows]
        assert len([a for a in agents if a]) == 1 and agents.count(None) == len(rows) - 1, agents
