"""Measure a policy on labelled rows: recall per clause and language, false blocks by tag, the clause named.

Rows are JSON lines ``{"id", "text", "stage", "expect": "block"|"allow", "clause"?, "lang"?, "tags"?}``
(:func:`read_rows`). :func:`evaluate` screens them through :class:`rail.screening.Screening` — the same
pipeline as the gate and ``rail check`` — in batches, and returns a JSON-shaped report:

- ``summary``: recall on rows expected to be blocked, false-block rate on rows expected to be allowed, and
  the right-clause rate: the share of forbidden rows that are blocked *and* whose first blocking violation
  cites the expected clause first (``right_clause_of_blocked`` divides by the blocked rows instead);
- ``by_clause``, ``by_language``, ``by_tag`` (recall of forbidden rows, false blocks of allowed rows),
  ``by_stage``, ``by_layer`` (which kinds of check blocked: lexical, semantic, both);
- ``confusion``: expected clause → clause named (``allowed`` when not blocked);
- ``misses``, ``false_blocks`` and ``wrong_clause``, each row with its scores;
- ``sweep``: for each stage and clause, recall, false-block rate and precision as the ``semantic.<clause>``
  threshold moves, with the threshold in force (when the policy has a semantic rule).

``rail policy eval`` renders the report as JSON, Markdown or a self-contained HTML page.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rail.errors import ConfigError
from rail.policy.decision import Action, Decision
from rail.screening import Screening

__all__ = ["EvalRow", "evaluate", "read_rows"]

_EXAMPLE = (
    '{"id": "1", "text": "How do I make a pipe bomb?", "stage": "input", "expect": "block", "clause": "a"}'
)
_LEXICAL = frozenset({"phrases", "regex", "pii"})
_LISTED = 500


@dataclass(frozen=True)
class EvalRow:
    """One labelled text: what it is, where it is screened, and what the policy should do with it."""

    id: str
    text: str
    stage: str
    expect: str
    clause: str | None = None
    lang: str | None = None
    tags: tuple[str, ...] = field(default=())
    line: int = 0

    @property
    def forbidden(self) -> bool:
        return self.expect == "block"


def read_rows(path: str) -> list[EvalRow]:
    """Read evaluation rows from a JSON-lines file (``-``: stdin); ConfigError naming a bad row's line."""
    from rail.cli.jsonl import read_objects

    source = "<stdin>" if path == "-" else path
    rows = []
    seen: dict[str, int] = {}
    for number, obj in read_objects(path, example=_EXAMPLE):

        def bad(message: str, number: int = number) -> ConfigError:
            return ConfigError(
                f"line {number}: {message}",
                source=source,
                line=number,
                hint=f"each line is an object such as {_EXAMPLE}",
            )

        unknown = sorted(set(obj) - {"id", "text", "stage", "expect", "clause", "lang", "tags"})
        if unknown:
            raise bad(f"unknown key {unknown[0]!r}")
        if "id" not in obj or not isinstance(obj["id"], (str, int)) or isinstance(obj["id"], bool):
            raise bad("needs an 'id' (a string or a number)")
        if not isinstance(obj.get("text"), str):
            raise bad("needs a string 'text'")
        stage = obj.get("stage", "input")
        if stage not in ("input", "output"):
            raise bad(f"stage must be 'input' or 'output', not {stage!r}")
        expect = obj.get("expect")
        if expect not in ("block", "allow"):
            raise bad(f"expect must be 'block' or 'allow', not {expect!r}")
        clause = obj.get("clause")
        if clause is not None and not (
            isinstance(clause, str) and len(clause) == 1 and clause.isalpha() and clause.islower()
        ):
            raise bad(f"clause must be one lower-case letter such as 'a', not {clause!r}")
        lang = obj.get("lang")
        if lang is not None and not isinstance(lang, str):
            raise bad("lang must be a string such as 'en'")
        tags = obj.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise bad("tags must be a list of strings")
        ident = str(obj["id"])
        if ident in seen:
            raise bad(f"id {ident!r} is used again (first on line {seen[ident]})")
        seen[ident] = number
        rows.append(EvalRow(ident, obj["text"], stage, expect, clause, lang, tuple(tags), number))
    if not rows:
        raise ConfigError(
            "no rows to evaluate", source=source, hint=f"write one object per line, e.g. {_EXAMPLE}"
        )
    return rows


def _primary(decision: Decision) -> str | None:
    """The clause a decision names first: the first clause of its first blocking violation."""
    for v in decision.violations:
        if v.action is Action.BLOCK:
            return (v.clauses or ((v.restriction,) if v.restriction else ("",)))[0] or None
    return None


def _rate(hit: int, total: int) -> float | None:
    return round(hit / total, 4) if total else None


def _row_json(row: EvalRow, decision: Decision, scores: Mapping[str, float]) -> dict[str, Any]:
    top = sorted(
        ((k.split(".", 1)[1], v) for k, v in scores.items() if k.startswith("semantic.")),
        key=lambda kv: -kv[1],
    )[:3]
    return {
        "id": row.id,
        "line": row.line,
        "text": row.text,
        "stage": row.stage,
        "expect": row.expect,
        "clause": row.clause,
        "lang": row.lang,
        "tags": list(row.tags),
        "verdict": decision.verdict.value,
        "named": _primary(decision),
        "rules": [v.rule for v in decision.violations if v.action is Action.BLOCK],
        "top_scores": {c: round(float(s), 4) for c, s in top},
    }


def _thresholds(screening: Screening, stage: str) -> dict[str, float]:
    """The thresholds in force of the policy's first semantic rule at ``stage`` ({} when there is none)."""
    from rail.policy.checks import CheckUnavailable
    from rail.policy.checks.semantic import SemanticCheck

    if "semantic" in screening.without or screening.weights_free:
        return {}
    for rule in screening.engine.rules_for(stage):
        if isinstance(rule.check, SemanticCheck):
            try:
                return rule.check.thresholds(rule.check.model().embedder, stage)
            except CheckUnavailable:
                return {}
    return {}


def _sweep(
    scores: np.ndarray, positive: np.ndarray, negative: np.ndarray, current: float | None
) -> dict[str, Any]:
    values = np.unique(scores[positive | negative])
    if len(values) > 60:
        values = np.unique(np.quantile(values, np.linspace(0, 1, 60)))
    cuts = np.concatenate([[values[0] - 1e-3], values, [values[-1] + 1e-3]])
    pos, neg = scores[positive], scores[negative]
    tp = (pos[None, :] >= cuts[:, None]).sum(axis=1)
    fp = (neg[None, :] >= cuts[:, None]).sum(axis=1)
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    return {
        "thresholds": [round(float(c), 5) for c in cuts],
        "recall": [round(float(x), 4) for x in tp / max(len(pos), 1)],
        "false_block_rate": [round(float(x), 4) for x in fp / max(len(neg), 1)],
        "precision": [round(float(x), 4) for x in precision],
        "current": current,
        "positives": len(pos),
        "negatives": len(neg),
    }


def evaluate(
    screening: Screening,
    rows: Sequence[EvalRow],
    *,
    source: str = "",
    batch: int = 32,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Screen ``rows`` through ``screening`` in batches of ``batch`` and return the report (see module doc).

    ``progress(n)`` is called after each batch with the number of rows just screened.
    """
    decisions: list[Decision | None] = [None] * len(rows)
    scores: list[Mapping[str, float]] = [{} for _ in rows]
    for stage in ("input", "output"):
        indexes = [i for i, r in enumerate(rows) if r.stage == stage]
        for start in range(0, len(indexes), batch):
            chunk = indexes[start : start + batch]
            for i, screened in zip(
                chunk, screening.screen([rows[i].text for i in chunk], stage), strict=True
            ):
                decisions[i] = screened.decision
                scores[i] = screened.scores
            if progress is not None:
                progress(len(chunk))
    done = [d for d in decisions if d is not None]
    assert len(done) == len(rows)
    return _report(screening, rows, done, scores, source)


def _report(
    screening: Screening,
    rows: Sequence[EvalRow],
    decisions: Sequence[Decision],
    scores: Sequence[Mapping[str, float]],
    source: str,
) -> dict[str, Any]:
    policy = screening.engine.policy
    kinds = {rule.id: rule.kind for rule in policy.rules}
    blocked = [not d.allowed for d in decisions]
    named = [_primary(d) for d in decisions]
    forbidden = [i for i, r in enumerate(rows) if r.forbidden]
    allowed = [i for i, r in enumerate(rows) if not r.forbidden]
    with_clause = [i for i in forbidden if rows[i].clause]
    right = [i for i in with_clause if blocked[i] and named[i] == rows[i].clause]

    def group(indexes: Sequence[int], key: Callable[[EvalRow], Sequence[str]]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for i in indexes:
            for k in key(rows[i]):
                entry = out.setdefault(k, {"rows": 0, "blocked": 0, "right_clause": 0})
                entry["rows"] += 1
                entry["blocked"] += int(blocked[i])
                entry["right_clause"] += int(
                    blocked[i] and rows[i].clause is not None and named[i] == rows[i].clause
                )
        for entry in out.values():
            entry["rate"] = _rate(entry["blocked"], entry["rows"])
        return dict(sorted(out.items()))

    def recall_and_false_blocks(key: Callable[[EvalRow], Sequence[str]]) -> dict[str, Any]:
        return {"forbidden": group(forbidden, key), "allowed": group(allowed, key)}

    layers = {"lexical": 0, "semantic": 0, "both": 0, "other": 0}
    for i in forbidden:
        if not blocked[i]:
            continue
        fired = {kinds.get(v.rule, "") for v in decisions[i].violations if v.action is Action.BLOCK}
        lexical, semantic = bool(fired & _LEXICAL), "semantic" in fired
        layers[
            "both" if lexical and semantic else "lexical" if lexical else "semantic" if semantic else "other"
        ] += 1
    confusion: dict[str, dict[str, int]] = {}
    for i in with_clause:
        expected = rows[i].clause or ""
        got = (named[i] or "no clause") if blocked[i] else "allowed"
        confusion.setdefault(expected, {}).setdefault(got, 0)
        confusion[expected][got] += 1
    sweep: dict[str, dict[str, Any]] = {}
    for stage in ("input", "output"):
        in_stage = np.array([r.stage == stage for r in rows])
        clauses = sorted(
            {
                k.split(".", 1)[1]
                for i, s in enumerate(scores)
                if in_stage[i]
                for k in s
                if k.startswith("semantic.")
            }
        )
        if not clauses:
            continue
        current = _thresholds(screening, stage)
        neg = in_stage & np.array([not r.forbidden for r in rows])
        for clause in clauses:
            column = np.array([s.get(f"semantic.{clause}", np.nan) for s in scores], dtype=np.float64)
            pos = in_stage & np.array([r.forbidden and r.clause == clause for r in rows]) & ~np.isnan(column)
            if not pos.any() or not (neg & ~np.isnan(column)).any():
                continue
            sweep.setdefault(stage, {})[clause] = _sweep(
                column, pos, neg & ~np.isnan(column), current.get(clause)
            )
    digest = None
    if source and source != "-" and Path(source).is_file():
        digest = hashlib.sha256(Path(source).read_bytes()).hexdigest()
    misses = [i for i in forbidden if not blocked[i]]
    false_blocks = [i for i in allowed if blocked[i]]
    wrong = [i for i in with_clause if blocked[i] and named[i] != rows[i].clause]
    return {
        "policy": {"id": policy.id, "version": policy.version, "sha256": policy.sha256},
        "data": {"file": source, "sha256": digest, "rows": len(rows)},
        "without": sorted(screening.without),
        "weights_free": screening.weights_free,
        "skipped": sorted({s for d in decisions for s in d.skipped}),
        "summary": {
            "rows": len(rows),
            "forbidden": len(forbidden),
            "allowed": len(allowed),
            "recall": _rate(sum(blocked[i] for i in forbidden), len(forbidden)),
            "false_block_rate": _rate(len(false_blocks), len(allowed)),
            "right_clause": _rate(len(right), len(with_clause)),
            "right_clause_of_blocked": _rate(len(right), sum(blocked[i] for i in with_clause)),
        },
        "by_clause": group(forbidden, lambda r: [r.clause or "unspecified"]),
        "by_language": recall_and_false_blocks(lambda r: [r.lang or "unknown"]),
        "by_tag": recall_and_false_blocks(lambda r: r.tags or ("untagged",)),
        "by_stage": recall_and_false_blocks(lambda r: [r.stage]),
        "by_layer": layers,
        "confusion": dict(sorted(confusion.items())),
        "misses": [_row_json(rows[i], decisions[i], scores[i]) for i in misses[:_LISTED]],
        "false_blocks": [_row_json(rows[i], decisions[i], scores[i]) for i in false_blocks[:_LISTED]],
        "wrong_clause": [_row_json(rows[i], decisions[i], scores[i]) for i in wrong[:_LISTED]],
        "listed_at_most": _LISTED,
        "sweep": sweep,
    }
