"""Check kinds: one module per kind, discovered at import, each with its own ``params`` schema entry.

A check module defines ``KIND`` (the name used in policy files), ``NEEDS_SCORES`` (whether it reads toxicity
scores), ``YIELDS_SPANS`` (whether its findings point at characters of the text, which ``action: redact``
needs), optionally ``NEEDS_WEIGHTS`` (whether it runs a model, so ``--weights-free`` skips it; defaults to
``NEEDS_SCORES``), optionally ``group(stage, checks)`` (called once per engine with the kind's checks at a
stage, so they can share work such as one automaton for every phrase rule) and
``build(params, where) -> Check``. Its ``params`` are validated by the entry for that
kind in ``rail/data/policy.schema.json`` before ``build`` is called; ``build`` raises
:class:`~rail.errors.ConfigError` (through ``where.error``) for problems a schema cannot express, such as
a regular expression that does not compile. Adding a kind is one module here plus one schema entry.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from rail.errors import ConfigError
from rail.text import NormalizedText, normalize

if TYPE_CHECKING:
    from rail.policy.declaration import Declaration

__all__ = [
    "BatchCheck",
    "Check",
    "CheckInput",
    "CheckUnavailable",
    "Finding",
    "Where",
    "build_check",
    "check_kinds",
    "group_checks",
    "kind_needs_scores",
    "kind_needs_weights",
    "kind_yields_spans",
]


@dataclass(frozen=True)
class Finding:
    """What a check found: why it fired, where in the original text (if anywhere), and a redaction label.

    ``clauses`` names the licence clauses this finding is about when the check itself decides them (a
    semantic check covering every clause); None means the rule's own ``restrictions``. ``score`` and
    ``evidence`` (a JSON-shaped mapping, e.g. the nearest exemplars) travel to the Violation and the audit
    record.
    """

    reason: str
    span: tuple[int, int] | None = None
    label: str | None = None
    clauses: tuple[str, ...] | None = None
    score: float | None = None
    evidence: Mapping[str, Any] | None = None


@dataclass
class CheckInput:
    """What a check looks at: the text (normalized lazily, once per request), scores and the declaration.

    ``memo`` is shared by every rule that looks at this text, so work such as an embedding is done once per
    text and stage; ``measurements`` collects numbers checks record for the audit trail whether or not they
    fired (``semantic.a`` …), keyed ``<kind>.<name>``.
    """

    text: str
    stage: str
    scores: Mapping[str, float] | None = None
    language: str | None = None
    declaration: Declaration | None = None
    memo: dict[Any, Any] = field(default_factory=dict)
    measurements: dict[str, float] = field(default_factory=dict)

    @cached_property
    def normalized(self) -> NormalizedText:
        return normalize(self.text)


class CheckUnavailable(Exception):
    """Raised by a check that cannot run (its model cannot load): the engine applies the fail-open rule.

    The message says why and how to fix it; it becomes the reason of a blocking (or, under ``fail_open``,
    warning) violation. It is not a :class:`~rail.errors.RailError`: it never leaves the engine.
    """


class Check(Protocol):
    """A configured check: ``find`` returns what fired in one input (an empty list when nothing did)."""

    def find(self, item: CheckInput) -> list[Finding]: ...


class BatchCheck(Check, Protocol):
    """A check that does shared work for a whole batch first (one embedding call for every text)."""

    def prepare(self, items: list[CheckInput]) -> None:
        """Do the batch's work before ``find`` is called on each item; raise CheckUnavailable if it cannot."""


@dataclass(frozen=True)
class Where:
    """Where a check's parameters were written, so build errors name the file, line and path."""

    source: str
    path: str
    line: int | None = None

    def error(self, message: str, hint: str | None = None, subpath: str = "") -> ConfigError:
        return ConfigError(message, source=self.source, path=self.path + subpath, line=self.line, hint=hint)


@cache
def _modules() -> Mapping[str, ModuleType]:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found[module.KIND] = module
    return found


def check_kinds() -> tuple[str, ...]:
    """Return the names of the check kinds rail knows, sorted."""
    return tuple(sorted(_modules()))


def kind_needs_scores(kind: str) -> bool:
    """Whether checks of ``kind`` read toxicity scores (and so need a model)."""
    return bool(_modules()[kind].NEEDS_SCORES)


def kind_needs_weights(kind: str) -> bool:
    """Whether checks of ``kind`` run a model (so a weights-free run skips them)."""
    module = _modules()[kind]
    return bool(getattr(module, "NEEDS_WEIGHTS", module.NEEDS_SCORES))


def kind_yields_spans(kind: str) -> bool:
    """Whether findings of checks of ``kind`` carry a span of the text (so ``action: redact`` can apply)."""
    return bool(_modules()[kind].YIELDS_SPANS)


def group_checks(stage: str, checks: Sequence[tuple[str, Check]]) -> None:
    """Hand each kind that shares work across rules its ``(kind, check)`` pairs at ``stage``."""
    by_kind: dict[str, list[Check]] = {}
    for kind, check in checks:
        by_kind.setdefault(kind, []).append(check)
    for kind, same in by_kind.items():
        join = getattr(_modules()[kind], "group", None)
        if join is not None:
            join(stage, same)


def build_check(kind: str, params: Mapping[str, Any], where: Where) -> Check:
    """Build a check of ``kind`` from validated ``params``; raise ConfigError for a bad kind or params."""
    modules = _modules()
    if kind not in modules:
        guess = difflib.get_close_matches(kind, modules, n=1)
        hint = f"did you mean '{guess[0]}'?" if guess else f"known kinds: {', '.join(sorted(modules))}"
        raise where.error(f"unknown check kind '{kind}'", hint=hint)
    builder: Callable[[Mapping[str, Any], Where], Check] = modules[kind].build
    return builder(params, where)
