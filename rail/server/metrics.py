"""Prometheus metrics of the gated server (``GET /metrics``, behind the API key like every other route).

Series (all prefixed ``rail_``):

- ``requests_total{endpoint, verdict}`` — gated requests by the gate's verdict (allowed/modified/blocked),
  plus ``cancelled`` (client gone) and ``error`` (backend or audit failure);
- ``violations_total{clause, stage, action}`` — violations by licence clause (``none`` for rules without);
- ``http_responses_total{endpoint, status}`` — every answer, 401s, 429s and 503s included;
- ``stage_seconds{stage}`` — the gate's own durations per step (input_checks, scoring, generate,
  output_checks, attribution, total), histogram;
- ``request_seconds{endpoint}`` — wall time of the HTTP request, histogram;
- ``tokens_total{kind}`` — prompt and completion tokens;
- ``queue_depth`` / ``requests_in_flight`` — waiting for a slot / at work;
- ``audit_commit_seconds`` and ``audit_commit_records`` — each group commit's latency and size;
  ``audit_failures_total`` — commits that failed (their requests were answered 503);
- ``batch_size`` — prompts per generate call of the local batcher;
- ``rate_limited_total{key_id}`` — 429s per key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from rail.gate import GateResult
from rail.policy.decision import Violation

__all__ = ["CONTENT_TYPE_LATEST", "ServerMetrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_STAGES = ("input_checks", "scoring", "generate", "output_checks", "attribution", "total")


class ServerMetrics:
    """The server's metrics in a registry of their own (several servers can live in one process)."""

    def __init__(self, *, queue_depth: Callable[[], int], in_flight: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "rail_requests", "Gated requests by verdict.", ["endpoint", "verdict"], registry=r
        )
        self.violations = Counter(
            "rail_violations", "Violations by licence clause.", ["clause", "stage", "action"], registry=r
        )
        self.responses = Counter(
            "rail_http_responses", "HTTP answers by status.", ["endpoint", "status"], registry=r
        )
        self.stage_seconds = Histogram(
            "rail_stage_seconds", "Time per gate step.", ["stage"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.request_seconds = Histogram(
            "rail_request_seconds",
            "HTTP request wall time.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter("rail_tokens", "Tokens processed.", ["kind"], registry=r)
        self.audit_commit_seconds = Histogram(
            "rail_audit_commit_seconds",
            "Latency of one audit group commit.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.audit_commit_records = Histogram(
            "rail_audit_commit_records",
            "Records per audit group commit.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=r,
        )
        self.audit_failures = Counter("rail_audit_failures", "Audit commits that failed.", registry=r)
        self.batch_size = Histogram(
            "rail_batch_size",
            "Prompts per local generate call.",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.rate_limited = Counter("rail_rate_limited", "Requests refused with 429.", ["key_id"], registry=r)
        queue = Gauge("rail_queue_depth", "Requests waiting for a working slot.", registry=r)
        queue.set_function(lambda: float(queue_depth()))
        flight = Gauge("rail_requests_in_flight", "Requests at work.", registry=r)
        flight.set_function(lambda: float(in_flight()))

    def observe_result(self, endpoint: str, result: GateResult) -> None:
        """Count one gate result: verdict, violations by clause, tokens and the gate's step durations."""
        record = result.record
        verdict = "cancelled" if record.extra.get("cancelled") else result.decision.value
        self.requests.labels(endpoint, verdict).inc()
        self.observe_violations(result.violations)
        if record.input_tokens:
            self.tokens.labels("prompt").inc(record.input_tokens)
        if record.output_tokens:
            self.tokens.labels("completion").inc(record.output_tokens)
        for stage in _STAGES:
            if stage in record.durations_ms:
                self.stage_seconds.labels(stage).observe(record.durations_ms[stage] / 1000)

    def observe_violations(self, violations: Iterable[Violation]) -> None:
        for v in violations:
            for clause in v.clauses or ("none",):
                self.violations.labels(clause, v.stage.value, v.action.value).inc()

    def observe_commit(self, seconds: float, records: int, ok: bool) -> None:
        self.audit_commit_seconds.observe(seconds)
        self.audit_commit_records.observe(records)
        if not ok:
            self.audit_failures.inc()

    def render(self) -> bytes:
        """Return the Prometheus text exposition."""
        return generate_latest(self.registry)
