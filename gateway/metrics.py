"""In-process request counters, served to Prometheus at `/metrics`.

The same numbers reach CloudWatch as EMF inside the `request_completed` log lines; this
module only keeps running totals for a scraper (text format 0.0.4:
https://prometheus.io/docs/instrumenting/exposition_formats/).
"""

from __future__ import annotations

import bisect
from collections import defaultdict

# "1xx" … "9xx" by status // 100 (statuses have three digits), not formatted per request.
_STATUS_CLASSES = tuple(f"{n}xx" for n in range(10))
LATENCY_BUCKETS_MS = (
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1000.0,
    2500.0,
    5000.0,
    10000.0,
    30000.0,
    60000.0,
    300000.0,
)


class Counters:
    __slots__ = (
        "bedrock_cost",
        "bedrock_tokens",
        "circuit_open",
        "errors",
        "fallback_failures",
        "fallbacks",
        "latency_buckets",
        "latency_count",
        "latency_sum",
        "requests",
        "unpriced",
    )

    def __init__(self) -> None:
        self.requests: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.errors = 0
        self.fallbacks = 0
        # Fallbacks whose Bedrock call failed before the first byte, by the Bedrock error's class.
        self.fallback_failures: defaultdict[str, int] = defaultdict(int)
        self.circuit_open = 0
        self.bedrock_tokens = 0
        self.bedrock_cost = 0.0
        self.latency_buckets = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.unpriced = 0  # usage rows stored without a price (their model had none)

    def observe(self, provider: str, status: int, latency_ms: float, fallback: bool, error: bool) -> None:
        self.requests[(provider, _STATUS_CLASSES[status // 100])] += 1
        self.errors += error
        self.fallbacks += fallback
        self.latency_buckets[bisect.bisect_left(LATENCY_BUCKETS_MS, latency_ms)] += 1
        self.latency_sum += latency_ms
        self.latency_count += 1

    def fallback_failed(self, error_class: str) -> None:
        self.fallback_failures[error_class] += 1

    def render(self, gauges: dict[str, float] | None = None) -> str:
        lines = [
            "# HELP ccproxy_requests_total Requests by provider and status class.",
            "# TYPE ccproxy_requests_total counter",
        ]
        for (provider, status), n in sorted(self.requests.items()):
            lines.append(f'ccproxy_requests_total{{provider="{provider}",status="{status}"}} {n}')
        for name, value, help_text in (
            ("ccproxy_errors_total", self.errors, "Requests that ended in an upstream or gateway error."),
            ("ccproxy_fallbacks_total", self.fallbacks, "Requests answered by Bedrock after the plan failed."),
            ("ccproxy_circuit_open_total", self.circuit_open, "Times a key's plan circuit opened."),
            ("ccproxy_bedrock_tokens_total", self.bedrock_tokens, "Tokens used on Bedrock."),
            ("ccproxy_bedrock_cost_usd_total", self.bedrock_cost, "Bedrock cost in USD."),
            ("ccproxy_unpriced_usage_total", self.unpriced, "Usage rows stored unpriced (no price for the model)."),
        ):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name} {value}"]
        lines += [
            "# HELP ccproxy_fallback_failures_total Fallbacks whose Bedrock call failed, by error class.",
            "# TYPE ccproxy_fallback_failures_total counter",
        ]
        for error_class, n in sorted(self.fallback_failures.items()):
            lines.append(f'ccproxy_fallback_failures_total{{error_class="{error_class}"}} {n}')
        lines += [
            "# HELP ccproxy_request_latency_ms Request latency in milliseconds.",
            "# TYPE ccproxy_request_latency_ms histogram",
        ]
        cumulative = 0
        for bound, n in zip((*LATENCY_BUCKETS_MS, float("inf")), self.latency_buckets, strict=True):
            cumulative += n
            le = "+Inf" if bound == float("inf") else repr(bound)
            lines.append(f'ccproxy_request_latency_ms_bucket{{le="{le}"}} {cumulative}')
        lines.append(f"ccproxy_request_latency_ms_sum {self.latency_sum}")
        lines.append(f"ccproxy_request_latency_ms_count {self.latency_count}")
        for name, value in (gauges or {}).items():
            lines += [f"# TYPE {name} gauge", f"{name} {value}"]
        return "\n".join(lines) + "\n"
