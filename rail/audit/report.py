"""Audit reports: what a deployment did over a period, with the log's integrity verdict on top.

:func:`build_report` streams the log once and returns plain aggregates (a JSON-ready dict); :func:`render`
turns them into JSON, Markdown or one self-contained HTML file with charts drawn by matplotlib.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

from rail._version import __version__
from rail.audit.chain import Checkpoint
from rail.audit.log import read_records
from rail.audit.record import AuditRecord, utc_now
from rail.audit.store import Target, describe_target
from rail.audit.verify import verify_log
from rail.errors import AuditCorruptError, AuditError, RailError
from rail.signing import CheckpointKey

__all__ = ["FORMATS", "build_report", "parse_when", "render"]

FORMATS = ("html", "md", "json")
#: Histogram bins over [0, 1] for toxicity probabilities, over SEMANTIC_RANGE for semantic scores.
BINS = 20
#: Semantic scores are margins (closer to a clause's forbidden exemplars than to its allowed ones above 0),
#: so they spread around the clause's calibrated threshold near 0, not over [0, 1].
SEMANTIC_RANGE = (-1.0, 1.0)
#: A probability at or above this counts as "flagged" in the summaries (detoxify's customary cut-off).
FLAG_AT = 0.5
STAGES = ("prompt", "output")
#: Score labels under this prefix are semantic screening scores per licence clause (``semantic.l``).
SEMANTIC_PREFIX = "semantic."
#: Detoxify's labels, most serious first: the order of the report's toxicity charts and tables. Labels not
#: listed (the unbiased model's identity labels) follow in alphabetical order.
TOXICITY_ORDER = ("toxicity", "severe_toxicity", "threat", "identity_attack", "insult", "obscene",
                  "sexual_explicit")
#: How many sequence numbers of unreadable records the report lists (the count is always complete).
UNREADABLE_LISTED = 20


def parse_when(text: str, *, end: bool = False) -> datetime:
    """Parse an ISO 8601 date or date-time for --since/--until; a bare date with ``end=True`` means its end.

    Times without a zone are taken as UTC. Raises AuditError with an example of the expected form.
    """
    value = text.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime.combine(day + timedelta(days=1) if end else day, time(), tzinfo=timezone.utc)
            return moment - timedelta(microseconds=1) if end else moment
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise AuditError(f"cannot read {text!r} as a date; use ISO 8601 such as 2025-01-31 or "
                         "2025-01-31T08:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _record_time(record: AuditRecord) -> datetime | None:
    try:
        return parse_when(record.time)
    except AuditError:
        return None


def _bucket(span: timedelta) -> tuple[str, str]:
    if span <= timedelta(days=2):
        return "hour", "%Y-%m-%d %H:00"
    if span <= timedelta(days=120):
        return "day", "%Y-%m-%d"
    return "month", "%Y-%m"


class _Tally:
    """Streaming aggregates over the records of the period."""

    def __init__(self) -> None:
        self.total = 0
        self.verdicts: Counter[str] = Counter()
        self.times: list[tuple[datetime, str]] = []
        self.blocks_by_clause: Counter[str] = Counter()
        self.blocks_by_rule: Counter[str] = Counter()
        self.fired: Counter[str] = Counter()
        self.clause_fired: Counter[str] = Counter()
        self.blocked_by: Counter[str] = Counter()
        # By (rule, clause): a rule that decides its clause per text (a semantic rule citing every clause)
        # counts under the clause its violation names, not under every clause it could name.
        self.fired_at: Counter[tuple[str, str]] = Counter()
        self.blocked_at: Counter[tuple[str, str]] = Counter()
        # The thresholds semantic violations recorded, per stage and clause (their firings count as flagged).
        self.semantic_thresholds: dict[str, dict[str, float]] = {stage: {} for stage in STAGES}
        self.rule_clauses: dict[str, set[tuple[str | None, str]]] = defaultdict(set)
        self.hist: dict[str, dict[str, list[int]]] = {"prompt": {}, "output": {}}
        self.score_sum: dict[str, dict[str, float]] = {"prompt": defaultdict(float),
                                                       "output": defaultdict(float)}
        self.score_max: dict[str, dict[str, float]] = {"prompt": {}, "output": {}}
        self.flagged: dict[str, Counter[str]] = {"prompt": Counter(), "output": Counter()}
        self.languages: Counter[str] = Counter()
        self.models: Counter[str] = Counter()
        self.deployments: Counter[str] = Counter()
        self.policies: Counter[tuple[str | None, str | None, str | None]] = Counter()
        self.privacy: Counter[str] = Counter()
        self.passed = 0
        self.with_disclosure = 0
        self.with_provenance = 0
        self.with_watermark = 0
        self.durations: list[float] = []
        self.undated = 0

    def add(self, record: AuditRecord, moment: datetime | None) -> None:
        self.total += 1
        self.verdicts[record.verdict] += 1
        if moment is None:
            self.undated += 1
        else:
            self.times.append((moment, record.verdict))
        blocked_clauses: set[str] = set()
        blocked_rules: set[str] = set()
        for violation in record.violations:
            rule = str(violation.get("rule"))
            # Every clause the rule cites; records written before ``clauses`` existed name one restriction.
            cited = [str(c) for c in violation.get("clauses") or () if c] \
                or ([str(violation["restriction"])] if violation.get("restriction") else [])
            self.fired[rule] += 1
            blocks = violation.get("action") == "block"
            for clause in cited:
                self.clause_fired[clause] += 1
                self.rule_clauses[rule].add((violation.get("licence"), clause))
                self.fired_at[(rule, clause)] += 1
                self.blocked_at[(rule, clause)] += blocks
            self._semantic(violation, cited)
            if blocks:
                self.blocked_by[rule] += 1
                if record.verdict == "blocked":
                    blocked_rules.add(rule)
                    blocked_clauses.update(cited or ["(no clause)"])
        # Count each clause and rule once per blocked request, however many times it fired in it.
        self.blocks_by_clause.update(blocked_clauses)
        self.blocks_by_rule.update(blocked_rules)
        for stage in ("prompt", "output"):
            scores = record.scores.get(stage)
            if not scores:
                continue
            hist, sums, highs, flagged = (self.hist[stage], self.score_sum[stage], self.score_max[stage],
                                          self.flagged[stage])
            for label, value in scores.items():
                if not math.isfinite(value):
                    continue
                bins = hist.get(label)
                if bins is None:
                    bins = hist[label] = [0] * BINS
                low, high = SEMANTIC_RANGE if label.startswith(SEMANTIC_PREFIX) else (0.0, 1.0)
                bins[min(max(int((value - low) / (high - low) * BINS), 0), BINS - 1)] += 1
                sums[label] += value
                if value > highs.get(label, -math.inf):
                    highs[label] = value
                if not label.startswith(SEMANTIC_PREFIX) and value >= FLAG_AT:
                    flagged[label] += 1
        self.languages[record.language or "unknown"] += 1
        self.models[record.model or "unknown"] += 1
        self.deployments[record.deployment or "unknown"] += 1
        self.policies[(record.policy_id, record.policy_sha256, record.licence)] += 1
        self.privacy[record.privacy] += 1
        if record.verdict != "blocked" and record.output is not None:
            self.passed += 1
            provenance = record.provenance or {}
            self.with_provenance += bool(record.provenance)
            self.with_disclosure += bool(provenance.get("disclosure"))
            self.with_watermark += bool(provenance.get("watermark"))
        total_ms = record.durations_ms.get("total")
        if isinstance(total_ms, (int, float)):
            self.durations.append(float(total_ms))


    def _semantic(self, violation: Mapping[str, Any], cited: list[str]) -> None:
        """Count a semantic violation (its evidence holds the threshold it passed) under its stage."""
        evidence = violation.get("evidence")
        if not isinstance(evidence, Mapping) or "threshold" not in evidence:
            return
        stage = "prompt" if violation.get("stage") == "input" else "output"
        label = SEMANTIC_PREFIX + cited[0] if cited else None
        if label is None:
            return
        self.flagged[stage][label] += 1
        recorded = evidence.get("thresholds")
        thresholds: Mapping[str, Any] = recorded if isinstance(recorded, Mapping) else {}
        for clause, value in {cited[0]: evidence["threshold"], **thresholds}.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.semantic_thresholds[stage][str(clause)] = float(value)


def _toxicity_rank(label: str) -> tuple[int, str]:
    return (TOXICITY_ORDER.index(label) if label in TOXICITY_ORDER else len(TOXICITY_ORDER), label)


def _distributions(tally: _Tally, stage: str, *, semantic: bool) -> dict[str, dict[str, Any]]:
    """Summarise one stage's scores: detoxify labels most serious first, or semantic scores by clause.

    Semantic scores are keyed by their clause letter (``semantic.l`` → ``l``), in clause order.
    """
    hist = tally.hist[stage]
    if semantic:
        labels = sorted(label for label in hist if label.startswith(SEMANTIC_PREFIX))
    else:
        labels = sorted((label for label in hist if not label.startswith(SEMANTIC_PREFIX)),
                        key=_toxicity_rank)
    out = {}
    for label in labels:
        bins = hist[label]
        count = sum(bins)
        key = label[len(SEMANTIC_PREFIX):] if semantic else label
        out[key] = {"count": count, "mean": round(tally.score_sum[stage][label] / count, 4),
                    "max": round(tally.score_max[stage][label], 4), "flagged": tally.flagged[stage][label],
                    "flagged_share": _share(tally.flagged[stage][label], count), "histogram": bins}
    return out


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 3)


def _timeline(times: list[tuple[datetime, str]]) -> dict[str, Any]:
    if not times:
        return {"bucket": "day", "rows": []}
    first, last = min(t for t, _ in times), max(t for t, _ in times)
    unit, fmt = _bucket(last - first)
    rows: dict[str, Counter[str]] = defaultdict(Counter)
    for moment, verdict in times:
        rows[moment.astimezone(timezone.utc).strftime(fmt)][verdict] += 1
    return {"bucket": unit, "rows": [{"period": key, "allowed": c["allowed"], "modified": c["modified"],
                                      "blocked": c["blocked"], "total": sum(c.values())}
                                     for key, c in sorted(rows.items())]}


def _compliance(tally: _Tally, policy_ref: str | Path | None,
                ) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Build clause → controls → firings for every policy in force; return (matrices, warnings, notes).

    Warnings change how the matrix must be read (the policy loaded now is not the one recorded) and head
    the report next to the integrity verdict.
    """
    from rail.licences import get_licence
    from rail.policy import Policy, load_policy
    from rail.policy.coverage import ClauseCoverage, coverage

    notes: list[str] = []
    warnings: list[str] = []
    in_force: list[tuple[str, str | None, str | None]]
    if policy_ref is not None:
        in_force = [(str(policy_ref), None, None)]
    else:
        in_force = sorted({(pid, sha, lic) for pid, sha, lic in tally.policies if pid},
                          key=lambda item: (item[0], item[1] or ""))
    matrices = []
    for policy_id, sha256, record_licence in in_force:
        policy: Policy | None = None
        coverage_rows: tuple[ClauseCoverage, ...] = ()
        try:
            policy = load_policy(policy_id)
            coverage_rows, _ = coverage(policy)
        except RailError as exc:
            notes.append(f"policy {policy_id!r} could not be loaded ({exc}); its controls are taken from the "
                         "violations recorded")
        if policy is not None and sha256 and policy.sha256 != sha256:
            warnings.append(f"The policy {policy_id!r} available now (sha256 {policy.sha256[:12]}…) differs "
                            f"from the one in force when the records were written ({sha256[:12]}…): the "
                            "compliance matrix lists today's controls next to the firings recorded then.")
        licence_id = policy.licence if policy is not None else record_licence
        recorded = {lic for pairs in tally.rule_clauses.values() for lic, _ in pairs if lic}
        if licence_id is None and len(recorded) == 1:
            # Neither a policy nor the records name the licence, but every violation does: use it.
            licence_id = next(iter(recorded))
        controls: dict[str, list[dict[str, Any]]] = defaultdict(list)
        known: set[str] = set()
        for row in coverage_rows:
            for control in row.controls:
                known.add(control.name)
                controls[row.clause].append({"rule": control.name, "coverage": ", ".join(control.modes),
                                             "fired": tally.fired_at[(control.name, row.clause)],
                                             "blocked": tally.blocked_at[(control.name, row.clause)]})
        # Rules that fired but are not in the policy available now (renamed or removed since).
        for rule_id, pairs in tally.rule_clauses.items():
            if rule_id in known:
                continue
            for licence, letter in pairs:
                if licence_id is None or licence in (None, licence_id):
                    controls[letter].append({"rule": rule_id, "coverage": None,
                                             "fired": tally.fired_at[(rule_id, letter)],
                                             "blocked": tally.blocked_at[(rule_id, letter)]})
        try:
            clauses = dict(get_licence(licence_id).restrictions) if licence_id else {}
        except RailError:
            clauses = {}
            notes.append(f"licence {licence_id!r} is not in rail's catalogue; clause texts are missing")
        letters = sorted(set(clauses) | set(controls))
        clause_rows = [{"clause": letter, "text": clauses.get(letter), "controls": controls.get(letter, []),
                 "fired": tally.clause_fired.get(letter, 0),
                 "blocks": tally.blocks_by_clause.get(letter, 0)} for letter in letters]
        matrices.append({"policy_id": policy_id, "policy_sha256": sha256 or getattr(policy, "sha256", None),
                         "licence": licence_id, "clauses": clause_rows})
    return matrices, warnings, notes


def build_report(log_path: Target, *, since: datetime | None = None, until: datetime | None = None,
                 policy: str | Path | None = None, checkpoints: Iterable[Checkpoint] = (),
                 key: CheckpointKey | None = None) -> dict[str, Any]:
    """Aggregate the records of ``log_path`` between ``since`` and ``until`` (inclusive) into a report dict.

    The integrity verdict covers the whole log (it is verified first). Records that cannot be parsed (edited
    into invalid JSON or wrong field types) are left out of every figure and counted in
    ``integrity.unreadable``, with their numbers in ``integrity.unreadable_records`` (the first
    ``UNREADABLE_LISTED``). ``policy`` overrides the policies named in the records for the compliance matrix.
    Raises AuditError when the log cannot be opened.
    """
    integrity = verify_log(log_path, checkpoints=checkpoints, key=key)
    tally = _Tally()
    unreadable: list[int] = []
    notes: list[str] = []
    last_read = 0
    # A record edited into something that is not a valid record is counted and skipped, and damaged storage
    # ends the reading, so the auditor still gets the report (headed by the integrity verdict).
    try:
        for seq, record in read_records(log_path, on_error=lambda seq, _: unreadable.append(seq)):
            last_read = seq
            moment = _record_time(record)
            if moment is not None and ((since and moment < since) or (until and moment > until)):
                continue
            if moment is None and (since or until):
                continue
            tally.add(record, moment)
    except AuditCorruptError as exc:
        if last_read:
            notes.append(f"the log's storage is damaged, so reading stopped after record {last_read:,}: "
                         f"{exc}; every figure below covers only the records read before the damage")
        else:
            notes.append(f"the log's storage is damaged and no record could be read: {exc}")
    matrices, warnings, policy_notes = _compliance(tally, policy)
    notes += policy_notes
    first = min((t for t, _ in tally.times), default=None)
    last = max((t for t, _ in tally.times), default=None)
    if tally.undated:
        notes.append(f"{tally.undated} record(s) have an unreadable time and appear in no time bucket")
    return {
        "format": "rail-audit-report/1",
        "generated": utc_now(),
        "rail_version": __version__,
        "log": describe_target(log_path),
        "period": {"since": since.isoformat() if since else None,
                   "until": until.isoformat() if until else None,
                   "first": first.isoformat() if first else None,
                   "last": last.isoformat() if last else None},
        "integrity": {**integrity.to_dict(), "summary": integrity.summary(), "unreadable": len(unreadable),
                      "unreadable_records": unreadable[:UNREADABLE_LISTED]},
        "requests": {"total": tally.total, "allowed": tally.verdicts["allowed"],
                     "modified": tally.verdicts["modified"], "blocked": tally.verdicts["blocked"],
                     "blocked_share": _share(tally.verdicts["blocked"], tally.total)},
        "timeline": _timeline(tally.times),
        "blocks_by_clause": dict(tally.blocks_by_clause.most_common()),
        "blocks_by_rule": dict(tally.blocks_by_rule.most_common()),
        "rules_fired": dict(tally.fired.most_common()),
        "toxicity": {"bins": BINS, "flag_at": FLAG_AT,
                     **{stage: _distributions(tally, stage, semantic=False) for stage in STAGES}},
        "semantic": {"bins": BINS, "range": list(SEMANTIC_RANGE), "thresholds": tally.semantic_thresholds,
                     **{stage: _distributions(tally, stage, semantic=True) for stage in STAGES}},
        "languages": dict(tally.languages.most_common()),
        "models": dict(tally.models.most_common()),
        "deployments": dict(tally.deployments.most_common()),
        "privacy": dict(tally.privacy.most_common()),
        "attribution": {"passed_outputs": tally.passed, "with_disclosure": tally.with_disclosure,
                        "with_provenance": tally.with_provenance, "with_watermark": tally.with_watermark,
                        "disclosure_share": _share(tally.with_disclosure, tally.passed),
                        "provenance_share": _share(tally.with_provenance, tally.passed),
                        "watermark_share": _share(tally.with_watermark, tally.passed)},
        "latency_ms": {"p50": _percentile(tally.durations, 0.5), "p95": _percentile(tally.durations, 0.95),
                       "max": max(tally.durations, default=None)},
        "compliance": matrices,
        "warnings": warnings,
        "notes": notes,
    }


def render(report: Mapping[str, Any], fmt: str) -> str:
    """Render a report dict as ``json``, ``md`` or ``html`` (a self-contained page with embedded charts)."""
    if fmt == "json":
        return json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    if fmt == "md":
        from rail.audit.render import markdown

        return markdown(report)
    if fmt == "html":
        from rail.audit.render import html

        return html(report)
    raise AuditError(f"unknown report format {fmt!r}; use one of: {', '.join(FORMATS)}")
