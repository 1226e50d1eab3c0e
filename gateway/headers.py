"""Which headers cross the gateway, as open lists (SPEC §2, Anthropic's gateway protocol
reference: https://code.claude.com/docs/en/llm-gateway-protocol#request-headers).

Toward the plan: every `anthropic-*`, `x-claude-code-*` and `x-stainless-*` header,
`user-agent`, `content-type`, `accept`, the developer's credential (path mode), and any
other header (what `ANTHROPIC_CUSTOM_HEADERS` adds) up to a byte budget. Never: hop-by-hop
headers (and those `Connection` names), `host`, `content-length` (recomputed), cookies,
`accept-encoding` (the gateway meters the stream, so it must arrive uncompressed),
infrastructure headers the load balancer added, or in org mode the access key.
Back to the client: every `anthropic-*` header, `request-id`, `retry-after`, `content-type`.

One pass over the headers; each name is classified once (lower-cased, then frozenset and
prefix checks) and remembered, since the same names come with every request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

import orjson

ANTHROPIC_VERSION = "2023-06-01"
SESSION = "x-claude-code-session-id"
AGENT = "x-claude-code-agent-id"
PARENT_AGENT = "x-claude-code-parent-agent-id"

NAMED = frozenset({"user-agent", "content-type", "accept"})
NAMED_PREFIXES = ("anthropic-", "x-claude-code-", "x-stainless-")
CREDENTIALS = frozenset({"authorization", "x-api-key"})
# RFC 9110 §7.6.1 hop-by-hop headers, plus what only this hop may set.
NEVER = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "cookie",
        "cookie2",
        "accept-encoding",
        "expect",
        "forwarded",
        "via",
        "x-real-ip",
    }
)
NEVER_PREFIXES = ("x-forwarded-", "x-amzn-", "x-ccproxy-", "x-fake-")
RESPONSE = frozenset({"content-type", "request-id", "retry-after"})


_T = TypeVar("_T")
_MEMO_LIMIT = 4096  # clients choose header names: the memory for them is bounded

# How the plan request treats a client header (`_request_kind`).
_PASS, _CREDENTIAL, _DROP, _BUDGETED = range(4)


class _NameMemo(dict[str, _T], Generic[_T]):
    """A header name's classification, decided once: the same names come with every
    request, and a dict lookup costs less than lower-casing and the set and prefix tests
    (about 3.5 µs of 6 per request for Claude Code's ~20 request headers)."""

    __slots__ = ("_decide",)

    def __init__(self, decide: Callable[[str], _T]) -> None:
        super().__init__()
        self._decide = decide

    def __missing__(self, name: str) -> _T:
        if len(self) >= _MEMO_LIMIT:
            self.clear()
        value = self[name] = self._decide(name)
        return value


def _request_kind(name: str) -> tuple[str, int]:
    lname = name.lower()
    if lname in NAMED or lname.startswith(NAMED_PREFIXES):
        return lname, _PASS
    if lname in CREDENTIALS:
        return lname, _CREDENTIAL
    if lname in NEVER or lname.startswith(NEVER_PREFIXES):
        return lname, _DROP
    return lname, _BUDGETED  # e.g. what ANTHROPIC_CUSTOM_HEADERS adds


_REQUEST_KINDS = _NameMemo(_request_kind)
_RELAYED = _NameMemo(lambda name: name in RESPONSE or name.startswith("anthropic-"))


class RequestHeaders:
    """Builds the plan request's headers from the client's."""

    __slots__ = ("_budget",)

    def __init__(self, custom_header_bytes: int) -> None:
        self._budget = custom_header_bytes

    def build(
        self, items: Iterable[tuple[str, str]], org_mode: bool, plan_key: str | None, has_body: bool
    ) -> dict[str, str]:
        out: dict[str, str] = {}
        credential = False
        budget = self._budget
        hop: str | None = None
        kinds = _REQUEST_KINDS
        for name, value in items:
            lname, kind = kinds[name]
            if kind == _PASS:
                out[lname] = value
            elif kind == _CREDENTIAL:
                if not org_mode:
                    # Path mode: the developer's own plan credential goes through unchanged;
                    # in org mode it is (or sits beside) the access key, which never leaves.
                    out[lname] = value
                    credential = True
            elif kind == _DROP:
                if lname == "connection":
                    hop = value.lower()
            else:
                budget -= len(lname) + len(value) + 4  # as sent: "name: value\r\n"
                if budget >= 0:
                    out[lname] = value
        if hop:
            # Headers the client's Connection header names are hop-by-hop too (RFC 9110 §7.6.1).
            for listed in hop.split(","):
                listed = listed.strip()
                if listed and listed not in CREDENTIALS and not listed.startswith(NAMED_PREFIXES):
                    out.pop(listed, None)
        if not credential and plan_key:
            out["x-api-key"] = plan_key
        if "anthropic-version" not in out:
            out["anthropic-version"] = ANTHROPIC_VERSION
        if has_body and "content-type" not in out:
            out["content-type"] = "application/json"
        return out


def response_headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The plan response's headers the client gets (names arrive lower-cased)."""
    relayed = _RELAYED
    return {name: value for name, value in items if relayed[name]}


def models_page(names: list[str]) -> bytes:
    """A `GET /v1/models` answer in the API's list shape for these model names.
    https://docs.anthropic.com/en/api/models-list"""
    data = [{"type": "model", "id": name, "display_name": name, "created_at": "1970-01-01T00:00:00Z"} for name in names]
    return orjson.dumps(
        {
            "data": data,
            "has_more": False,
            "first_id": names[0] if names else None,
            "last_id": names[-1] if names else None,
        }
    )
