"""Score embedded texts per licence clause against an exemplar bank: nearest neighbours plus a linear head.

For each clause ``c`` the score of a prompt's vector ``x`` is

    margin_c(x) + 0.01 * log-odds_c(x)

and the score of a model output's vector is ``margin_c(x)`` alone:

- ``margin_c``: the mean cosine similarity of ``x`` to its 5 nearest forbidden exemplars of clause ``c``,
  minus the mean similarity to its 5 nearest allowed exemplars (contrast texts of every clause and everyday
  requests). It says "closer to what (c) forbids than to anything allowed", and it carries the evidence:
  the nearest exemplars are what a reviewer sees.
- ``log-odds_c``: ``logit_c - logit_none`` of a multinomial logistic regression over the classes
  ``clauses + none``, fitted on the bank when the check first runs (deterministic: zero start, a fixed
  number of accelerated gradient steps, class-balanced weights, L2 penalty). It generalizes along
  directions the neighbours alone do not, and sharpens which clause is named.

Both terms are computed from the same vectors; a score above the clause's calibrated threshold fires.
The comparison that chose this rule (neighbours alone, the linear head alone, ridge, and the combination,
per stage) is in README.md and reproducible with ``python evals/compare_rules.py``: on prompts the
combination ranks best; on outputs the head, fitted mostly on prompts (the bank has four times more), only
adds noise, so outputs use the margin alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from rail.policy.bank import NONE, Exemplar

__all__ = ["ClauseClassifier"]

NEAREST = 5
#: The weight of the linear head's log-odds per stage (outputs: the neighbour margin alone).
LOGIT_WEIGHTS = {"input": 0.01, "output": 0.0}
_STEPS = 150
_PENALTY = 1e-4
_SCALE = 10.0


class ClauseClassifier:
    """Per-clause scores of vectors against labelled bank vectors; ``scores(vectors)`` is ``(n, clauses)``.

    ``exemplars[i]`` labels ``vectors[i]``; forbidden exemplars of clauses outside ``clauses`` are left out.
    """

    def __init__(self, vectors: np.ndarray, exemplars: Sequence[Exemplar], clauses: Sequence[str]) -> None:
        if len(vectors) != len(exemplars):
            raise ValueError("one vector per exemplar")
        self.clauses = tuple(clauses)
        classes = (*self.clauses, NONE)
        keep = [i for i, e in enumerate(exemplars) if e.label in classes]
        labels = np.array([classes.index(exemplars[i].label) for i in keep], dtype=np.int64)
        if not (labels == len(self.clauses)).any():
            raise ValueError("the bank has no allowed exemplars")
        missing = [c for i, c in enumerate(self.clauses) if not (labels == i).any()]
        if missing:
            raise ValueError(f"the bank has no forbidden exemplars for clause(s) {', '.join(missing)}")
        # Rows grouped by class, so each class is one contiguous slice of the similarity matrix.
        order = np.argsort(labels, kind="stable")
        self._index = np.array(keep, dtype=np.int64)[order]
        self.exemplars = tuple(exemplars[i] for i in self._index)
        self._vectors = np.ascontiguousarray(vectors[self._index], dtype=np.float32)
        sorted_labels = labels[order]
        bounds = np.searchsorted(sorted_labels, np.arange(len(classes) + 1))
        self._slices = [(int(bounds[k]), int(bounds[k + 1])) for k in range(len(classes))]
        self._mean, self._weights, self._bias = _fit_logistic(self._vectors, sorted_labels, len(classes))

    def similarities(self, vectors: np.ndarray) -> np.ndarray:
        """Cosine similarities of ``vectors`` to every exemplar, columns in :attr:`exemplars` order."""
        return np.asarray(vectors, dtype=np.float32) @ self._vectors.T

    def terms(
        self, vectors: np.ndarray, similarities: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The two terms of the score, each ``(n, len(clauses))``: the neighbour margin and the log-odds."""
        x = np.asarray(vectors, dtype=np.float32)
        sims = self.similarities(x) if similarities is None else similarities
        nearest = np.empty((len(x), len(self._slices)), dtype=np.float32)
        for k, (start, end) in enumerate(self._slices):
            top = min(NEAREST, end - start)
            nearest[:, k] = np.partition(sims[:, start:end], end - start - top, axis=1)[:, -top:].mean(axis=1)
        logits = ((x - self._mean) * _SCALE) @ self._weights + self._bias
        return nearest[:, :-1] - nearest[:, -1:], logits[:, :-1] - logits[:, -1:]

    def scores(self, vectors: np.ndarray, stage: str, similarities: np.ndarray | None = None) -> np.ndarray:
        """Return the ``(n, len(clauses))`` scores of ``vectors`` at ``stage`` (higher: closer to what it
        forbids)."""
        margin, log_odds = self.terms(vectors, similarities)
        return margin + LOGIT_WEIGHTS[stage] * log_odds

    def nearest(self, similarities: np.ndarray, count: int) -> list[tuple[Exemplar, float]]:
        """The ``count`` exemplars most similar to one text, given its row of :meth:`similarities`."""
        count = min(count, len(self.exemplars))
        if count <= 0:
            return []
        top = np.argpartition(similarities, len(similarities) - count)[-count:]
        top = top[np.argsort(-similarities[top], kind="stable")]
        return [(self.exemplars[i], float(similarities[i])) for i in top]


def _fit_logistic(
    x: np.ndarray, labels: np.ndarray, classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit a class-balanced multinomial logistic regression with Nesterov-accelerated gradient descent."""
    mean = x.mean(axis=0)
    xc = (x - mean) * _SCALE
    n, d = xc.shape
    target = np.zeros((n, classes), dtype=np.float32)
    target[np.arange(n), labels] = 1.0
    counts = np.bincount(labels, minlength=classes).astype(np.float32)
    sample = (1.0 / (classes * counts))[labels].astype(np.float32)
    # Step 1/L for the Lipschitz constant of the weighted loss's gradient (the spectral norm of xc squared
    # is the largest eigenvalue of the small d x d matrix xc^T xc).
    top = float(np.linalg.eigvalsh(xc.T @ xc)[-1])
    lipschitz = top * float(sample.max()) * 0.5 + _PENALTY
    step = 1.0 / lipschitz
    w = np.zeros((d, classes), dtype=np.float32)
    b = np.zeros(classes, dtype=np.float32)
    w_look, b_look = w.copy(), b.copy()
    t = 1.0
    for _ in range(_STEPS):
        z = xc @ w_look + b_look
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        g = (p - target) * sample[:, None]
        w_next = w_look - step * (xc.T @ g + _PENALTY * w_look)
        b_next = b_look - step * g.sum(axis=0)
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        # Python floats, so the arrays stay float32 (a numpy float64 scalar would promote them).
        momentum = (t - 1.0) / t_next
        w_look = w_next + momentum * (w_next - w)
        b_look = b_next + momentum * (b_next - b)
        w, b, t = w_next, b_next, t_next
    return mean, w, b
