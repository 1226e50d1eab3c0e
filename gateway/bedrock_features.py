"""What each Claude Code feature becomes on the Bedrock path (SPEC §4 "Feature fidelity").

Every feature of the gateway protocol reference's feature table is a row here, with the
body fields and `anthropic-beta` values that carry it. Each row gets one answer, decided
once per config from the two operator settings:

- forwarded as is (a GA feature: images, PDFs, adaptive thinking, cache_control TTLs);
- its beta moved into the body's `anthropic_beta` (renamed where Bedrock spells it
  differently), the field forwarded beside it;
- stripped *together with its beta*: a field is never removed while its beta stays, nor
  a beta while its field stays (a field listed in CCPROXY_BEDROCK_STRIP_FIELDS drops the
  row's betas; a beta missing from CCPROXY_BEDROCK_BETA_ALLOWLIST drops the row's fields);
- a clean 400 invalid_request_error naming the feature, where removing it would change
  the answer behind the developer's back (server tools, structured outputs).

Sources: https://code.claude.com/docs/en/llm-gateway-protocol (feature pass-through),
https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-anthropic-claude-messages-request-response.html
(Invoke body and `anthropic_beta`), and what Claude Code 2.1.197 itself does on Bedrock
(it moves interleaved-thinking, context-1m and tool-search into `anthropic_beta`, and
spells advanced-tool-use as `tool-search-tool-2025-10-19` there).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from gateway import errors

FORWARD = "forward"
BETA = "beta"
STRIP = "strip"
REJECT = "reject"


@dataclasses.dataclass(frozen=True, slots=True)
class Feature:
    """One row of the feature table.

    `fields` are body paths: `name` (top level), `tools.name` (a key of any tool),
    `cache_control.name` (a key of any cache_control object), `output_config.name`,
    `tools.type:<prefix>` (a tool whose type starts with prefix), `messages.role:<role>`.
    `betas` are the client's beta values for it; `bedrock_betas` what Bedrock wants in
    `anthropic_beta` instead (same values when empty). `unsupported` is the answer when
    the beta is not allowed on Bedrock: STRIP (fields and betas) or REJECT.
    """

    name: str
    fields: tuple[str, ...] = ()
    betas: tuple[str, ...] = ()
    bedrock_betas: tuple[str, ...] = ()
    unsupported: str = STRIP
    never: bool = False  # Bedrock has no such feature at all: always REJECT when present
    note: str = ""

    @property
    def target_betas(self) -> tuple[str, ...]:
        return self.bedrock_betas or self.betas


FEATURES: tuple[Feature, ...] = (
    Feature("adaptive thinking", note="`thinking: {type: adaptive}` is GA on Bedrock's Claude 4.6+ ids"),
    Feature("interleaved thinking", betas=("interleaved-thinking-2025-05-14",)),
    Feature("context management", fields=("context_management",), betas=("context-management-2025-06-27",)),
    Feature("1M context", betas=("context-1m-2025-08-07",)),
    Feature(
        "tool search (defer_loading)",
        fields=("tools.defer_loading",),
        betas=("advanced-tool-use-2025-11-20", "tool-search-tool-2025-10-19"),
        bedrock_betas=("tool-search-tool-2025-10-19",),
    ),
    Feature(
        "tool use examples (input_examples)",
        fields=("tools.input_examples",),
        betas=("advanced-tool-use-2025-11-20", "tool-examples-2025-10-29"),
        bedrock_betas=("tool-examples-2025-10-29",),
    ),
    Feature(
        "strict tool schemas (strict)",
        fields=("tools.strict",),
        betas=("structured-outputs-2025-11-13", "structured-outputs-2025-12-15"),
        bedrock_betas=("structured-outputs-2025-11-13",),
    ),
    Feature("effort (output_config.effort)", fields=("output_config.effort",), betas=("effort-2025-11-24",)),
    Feature(
        "structured outputs (output_config.format)",
        fields=("output_config.format", "output_format"),
        betas=("structured-outputs-2025-11-13", "structured-outputs-2025-12-15"),
        bedrock_betas=("structured-outputs-2025-11-13",),
        unsupported=REJECT,
    ),
    Feature("fine-grained tool streaming", betas=("fine-grained-tool-streaming-2025-05-14",)),
    Feature("token-efficient tools", betas=("token-efficient-tools-2025-02-19",)),
    Feature("128k output", betas=("output-128k-2025-02-19",)),
    Feature("prompt caching, 5 m and 1 h TTLs", betas=("extended-cache-ttl-2025-04-11",)),
    Feature(
        "prompt caching scope (cache_control.scope)",
        fields=("cache_control.scope",),
        betas=("prompt-caching-scope-2026-01-05",),
    ),
    Feature(
        "mid-conversation system messages",
        fields=("messages.role:system",),
        betas=("mid-conversation-system-2026-04-07",),
        unsupported=REJECT,
    ),
    Feature("images and PDFs", note="base64 image and document blocks are GA on Bedrock"),
    Feature("token counting", note="count_tokens goes to Bedrock's CountTokens API"),
    Feature(
        "server tools (web search, web fetch, code execution)",
        fields=("tools.type:web_search", "tools.type:web_fetch", "tools.type:code_execution"),
        betas=("web-search-2025-03-05", "web-fetch-2025-09-10", "code-execution-2025-08-25"),
        never=True,
    ),
    Feature(
        "MCP connector (mcp_servers)", fields=("mcp_servers",), betas=("mcp-client-2025-04-04", "mcp-client-2025-11-20")
    ),
    Feature("container / skills", fields=("container",), betas=("skills-2025-10-02", "code-execution-2025-08-25")),
    Feature("fast mode (speed)", fields=("speed",), betas=("fast-mode-2026-02-01",)),
    Feature("service tier", fields=("service_tier",)),
)


# --- finding and removing fields ---------------------------------------------------------


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = body.get("tools")
    return [t for t in tools if isinstance(t, dict)] if isinstance(tools, list) else []


def _blocks(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every object that may carry cache_control: system blocks, content blocks, tools."""
    system = body.get("system")
    if isinstance(system, list):
        yield from (b for b in system if isinstance(b, dict))
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, list):
                yield from (b for b in content if isinstance(b, dict))
    yield from _tools(body)


def present(body: dict[str, Any], path: str) -> bool:
    head, _, rest = path.partition(".")
    if not rest:
        return head in body
    if head == "tools":
        if rest.startswith("type:"):
            prefix = rest[5:]
            return any(str(t.get("type", "")).startswith(prefix) for t in _tools(body))
        return any(rest in t for t in _tools(body))
    if head == "cache_control":
        return any(isinstance(b.get("cache_control"), dict) and rest in b["cache_control"] for b in _blocks(body))
    if head == "messages" and rest.startswith("role:"):
        role = rest[5:]
        messages = body.get("messages")
        return isinstance(messages, list) and any(isinstance(m, dict) and m.get("role") == role for m in messages)
    inner = body.get(head)
    return isinstance(inner, dict) and rest in inner


def remove(body: dict[str, Any], path: str) -> None:
    head, _, rest = path.partition(".")
    if not rest:
        body.pop(head, None)
    elif head == "tools" and not rest.startswith("type:"):
        for tool in _tools(body):
            tool.pop(rest, None)
    elif head == "cache_control":
        for block in _blocks(body):
            control = block.get("cache_control")
            if isinstance(control, dict):
                control.pop(rest, None)
    elif head not in ("tools", "messages"):
        inner = body.get(head)
        if isinstance(inner, dict):
            inner.pop(rest, None)
            if not inner:
                body.pop(head, None)


# --- the plan for one config ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    feature: Feature
    action: str  # FORWARD | BETA | STRIP | REJECT


def answer(feature: Feature, allowlist: frozenset[str], strip_fields: frozenset[str]) -> Answer:
    """The row's answer under these settings."""
    if feature.never:
        return Answer(feature, REJECT)
    if any(f in strip_fields for f in feature.fields):
        return Answer(feature, STRIP)
    if feature.betas:
        if all(b in allowlist for b in feature.target_betas):
            return Answer(feature, BETA)
        return Answer(feature, feature.unsupported if feature.fields else STRIP)
    return Answer(feature, FORWARD)


class Plan:
    """The compiled table: `apply(body, betas)` edits a decoded Invoke body in place and
    returns the `anthropic_beta` list for it."""

    __slots__ = ("_allowlist", "_beta_owner", "_extra_strip", "answers")

    def __init__(self, allowlist: tuple[str, ...], strip_fields: tuple[str, ...]) -> None:
        allowed = frozenset(allowlist)
        stripped = frozenset(strip_fields)
        self._allowlist = allowed
        self.answers = tuple(answer(f, allowed, stripped) for f in FEATURES)
        owned = {path for f in FEATURES for path in f.fields}
        # Operator-listed fields no row knows: removed as before (no beta goes with them).
        self._extra_strip = tuple(f for f in strip_fields if f not in owned)
        owner: dict[str, list[Answer]] = {}
        for a in self.answers:
            for beta in a.feature.betas:
                owner.setdefault(beta, []).append(a)
        self._beta_owner = owner

    def apply(self, body: dict[str, Any], header_betas: list[str]) -> list[str]:
        for path in self._extra_strip:
            body.pop(path, None)
        betas: dict[str, None] = {}
        for a in self.answers:
            feature = a.feature
            used = [path for path in feature.fields if present(body, path)]
            if a.action == REJECT and used:
                raise errors.InvalidRequest(
                    f"{feature.name} is not supported when this request is served by Amazon Bedrock "
                    f"(field {', '.join(used)}); remove it or retry when the plan is available."
                )
            if a.action == STRIP:
                for path in used:
                    remove(body, path)
            elif a.action == BETA and (used or (not feature.fields and any(b in feature.betas for b in header_betas))):
                # A field present takes its beta along even when the client sent none (a
                # feature GA on the API may still be a beta on Bedrock); a row's beta
                # without its field is dropped, a beta-only row's is moved.
                betas.update(dict.fromkeys(feature.target_betas))
        for beta in header_betas:
            owners = self._beta_owner.get(beta)
            if owners is None and beta in self._allowlist:
                betas[beta] = None  # an operator-allowed beta no row knows: passed as before
        return list(betas)

    def table(self) -> list[dict[str, str]]:
        """The rows with today's answers (README, `ccproxy bedrock features`)."""
        return [
            {
                "feature": a.feature.name,
                "fields": ", ".join(a.feature.fields),
                "betas": ", ".join(a.feature.betas),
                "bedrock_betas": ", ".join(a.feature.target_betas) if a.action == BETA else "",
                "answer": a.action,
            }
            for a in self.answers
        ]
