"""Exemplar banks: labelled example texts per licence clause, the data semantic checks decide against.

A bank is a directory of YAML files, one per clause (``a.yaml`` … ``m.yaml``) plus one for everyday
requests under no clause (``clause: none``), each validated against ``rail/data/bank.schema.json``::

    clause: l
    title: Medical advice and medical results interpretation
    reading: >-
      How rail reads the clause: what is forbidden, what stays allowed, where the line falls.
    input:                      # prompts
      forbidden: {en: ["What dose of ibuprofen should I give my 4-year-old?", ...], fr: [...]}
      allowed:   {en: ["How does ibuprofen reduce inflammation?", ...]}
    output:                     # model outputs
      forbidden: {en: [...]}
      allowed:   {en: [...]}

``allowed`` texts are contrast examples on the clause's topics that the licence allows. The same text may
appear only once per stage in the whole bank (compared after :func:`rail.text.normalize`), so no exemplar
carries two labels. ``calibration.yaml`` in the bank directory holds the calibrated thresholds (see
:mod:`rail.policy.calibration`) and is not an exemplar file. Errors name the file, line and field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rail.errors import ConfigError
from rail.resources import data_dir
from rail.text import normalize
from rail.yamlio import format_path, load_schema, load_yaml, validate

__all__ = [
    "NONE",
    "Bank",
    "ClauseReading",
    "Exemplar",
    "available_banks",
    "bank_summary",
    "load_bank",
    "resolve_bank",
]

#: The clause name of everyday requests (the ``ordinary`` file).
NONE = "none"
CALIBRATION_FILE = "calibration.yaml"
STAGES = ("input", "output")


@dataclass(frozen=True)
class Exemplar:
    """One labelled text of a bank: the clause file it is in, stage, whether it is forbidden, language."""

    text: str
    clause: str
    stage: str
    forbidden: bool
    language: str
    source: str
    line: int | None
    #: The text after :func:`rail.text.normalize`, what a semantic check embeds.
    normalized: str = ""

    @property
    def label(self) -> str:
        """The class a classifier learns: the clause letter when forbidden, ``none`` when allowed."""
        return self.clause if self.forbidden else NONE

    def to_dict(self) -> dict[str, object]:
        return {
            "text": self.text,
            "clause": self.clause,
            "label": "forbidden" if self.forbidden else "allowed",
            "language": self.language,
        }


@dataclass(frozen=True)
class ClauseReading:
    """How the bank reads one clause: its title and its reading (where the licence's line falls)."""

    clause: str
    title: str
    reading: str
    source: str


@dataclass(frozen=True)
class Bank:
    """A loaded bank: every exemplar in file order, the readings by clause, and a hash of the content."""

    path: str
    exemplars: tuple[Exemplar, ...]
    readings: Mapping[str, ClauseReading]
    sha256: str

    @property
    def clauses(self) -> tuple[str, ...]:
        """The clause letters with forbidden exemplars, sorted."""
        return tuple(sorted({e.clause for e in self.exemplars if e.forbidden}))

    def stage(self, stage: str) -> tuple[Exemplar, ...]:
        """The exemplars of ``stage`` (input or output)."""
        return tuple(e for e in self.exemplars if e.stage == stage)

    @property
    def calibration_path(self) -> Path:
        return Path(self.path) / CALIBRATION_FILE


def available_banks() -> tuple[str, ...]:
    """Names of the banks shipped with rail (usable as a semantic check's ``bank``)."""
    root = data_dir("rail.packs") / "banks"
    if not root.is_dir():
        return ()
    return tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))


def resolve_bank(ref: str, relative_to: str | None = None) -> Path:
    """Return the directory of bank ``ref``: a shipped bank's name, or a path relative to ``relative_to``.

    Raises ConfigError when there is no such directory.
    """
    if "/" not in ref and "\\" not in ref and ref in available_banks():
        return Path(str(data_dir("rail.packs") / "banks" / ref))
    path = Path(ref).expanduser()
    if not path.is_absolute() and relative_to:
        path = Path(relative_to).parent / path
    if not path.is_dir():
        known = ", ".join(available_banks()) or "none"
        raise ConfigError(
            f"exemplar bank '{ref}' not found (looked at {path})",
            source=relative_to,
            path="bank",
            hint=f"give a shipped bank ({known}) or a directory of bank YAML files relative to the policy",
        )
    return path


def load_bank(directory: str | Path) -> Bank:
    """Load and validate the bank in ``directory``; ConfigError naming file, line and field on a problem.

    Loads are cached by the files' sizes and modification times, so a bank is parsed once per process
    unless it changes on disk.
    """
    root = Path(directory).resolve()
    files = _bank_files(root)
    signature = tuple((p.name, *_stat(p)) for p in files)
    return _load(str(root), signature)


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _bank_files(root: Path) -> list[Path]:
    if not root.is_dir():
        raise ConfigError("exemplar bank directory not found", source=str(root), hint="check the path")
    files = sorted(
        p
        for p in root.iterdir()
        if p.suffix in (".yaml", ".yml") and p.name != CALIBRATION_FILE and not p.name.startswith(".")
    )
    if not files:
        raise ConfigError(
            "exemplar bank has no YAML files",
            source=str(root),
            hint="add one file per clause (a.yaml … m.yaml) and one with clause: none (see rail.policy.bank)",
        )
    return files


@lru_cache(maxsize=8)
def _load(root: str, signature: tuple[tuple[str, int, int], ...]) -> Bank:
    schema = load_schema("bank.schema.json")
    exemplars: list[Exemplar] = []
    readings: dict[str, ClauseReading] = {}
    owners: dict[str, str] = {}
    seen: dict[tuple[str, str], Exemplar] = {}
    for name, _size, _mtime in signature:
        path = Path(root) / name
        doc = load_yaml(path)
        if not isinstance(doc.data, dict):
            raise ConfigError(
                "a bank file must be a mapping with clause, title, reading, input and output",
                source=str(path),
                line=1,
                hint="see the layout in rail.policy.bank",
            )
        validate(doc, schema, "exemplar bank file")
        data = doc.data
        clause = data["clause"]
        if clause in owners:
            raise ConfigError(
                f"clause ({clause}) is already given by {owners[clause]}",
                source=str(path),
                line=doc.line_of(["clause"]),
                path="clause",
                hint="keep one file per clause",
            )
        owners[clause] = name
        if clause != NONE:
            if "reading" not in data:
                raise ConfigError(
                    "missing required key 'reading'",
                    source=str(path),
                    line=1,
                    path="reading",
                    hint="say in a few sentences what the clause forbids and what stays allowed",
                )
            readings[clause] = ClauseReading(
                clause, data["title"], " ".join(data["reading"].split()), str(path)
            )
            if not data["input"].get("forbidden"):
                raise ConfigError(
                    f"clause ({clause}) has no forbidden prompts",
                    source=str(path),
                    line=doc.line_of(["input"]),
                    path="input.forbidden",
                    hint="give forbidden examples for the clause by language",
                )
        for stage in STAGES:
            for label in ("forbidden", "allowed"):
                by_language = data.get(stage, {}).get(label, {})
                if clause == NONE and label == "forbidden" and by_language:
                    raise ConfigError(
                        "a clause: none file lists forbidden texts",
                        source=str(path),
                        line=doc.line_of([stage, label]),
                        path=f"{stage}.{label}",
                        hint="put forbidden texts in the file of the clause they fall under",
                    )
                for language, texts in by_language.items():
                    for index, text in enumerate(texts):
                        where = [stage, label, language, index]
                        normalized = " ".join(normalize(text).text.split())
                        exemplar = Exemplar(
                            text,
                            clause,
                            stage,
                            label == "forbidden",
                            language,
                            str(path),
                            doc.line_of(where),
                            normalized,
                        )
                        key = (stage, normalized)
                        first = seen.get(key)
                        if first is not None:
                            raise ConfigError(
                                f"the same {stage} text is already in the bank at "
                                f"{Path(first.source).name}:{first.line}",
                                source=str(path),
                                line=exemplar.line,
                                path=format_path(where),
                                hint="remove one copy; a text has one label in the whole bank",
                            )
                        seen[key] = exemplar
                        exemplars.append(exemplar)
    canonical = json.dumps(
        [[e.clause, e.stage, e.forbidden, e.language, e.text] for e in exemplars],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return Bank(
        path=root,
        exemplars=tuple(exemplars),
        readings=readings,
        sha256=hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
    )


def bank_summary(bank: Bank) -> dict[str, dict[str, int]]:
    """Count exemplars by ``clause/stage/label`` and by language, e.g. for ``rail policy explain``."""
    counts: dict[str, dict[str, int]] = {}
    for e in bank.exemplars:
        row = counts.setdefault(f"{e.clause}/{e.stage}/{'forbidden' if e.forbidden else 'allowed'}", {})
        row[e.language] = row.get(e.language, 0) + 1
    return counts
