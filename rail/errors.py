"""The exceptions rail raises for misconfiguration and broken input.

Verdicts (allowed, blocked) are return values; these exceptions mean the request or the configuration cannot
be used as given. Every message names the file or field at fault and says how to fix it. The CLI turns any
``RailError`` into a one-paragraph message and exit code 2.
"""

from __future__ import annotations


class RailError(Exception):
    """Base of every error a user can cause; the CLI reports it without a traceback and exits 2."""


class ConfigError(RailError):
    """A policy, declaration, card or settings file is missing, malformed or invalid."""

    def __init__(self, message: str, *, source: str | None = None, path: str | None = None,
                 line: int | None = None, hint: str | None = None) -> None:
        self.source = source
        self.path = path
        self.line = line
        self.hint = hint
        self.detail = message
        where = []
        if source:
            where.append(str(source) + (f":{line}" if line else ""))
        if path:
            where.append(f"at {path}")
        text = (", ".join(where) + ": " if where else "") + message
        if hint:
            text += f" — {hint}"
        super().__init__(text)


class DeploymentRefused(RailError):
    """The deployment declaration falls under a licence restriction; the gate will not start."""

    def __init__(self, message: str, *, clauses: tuple[str, ...] = ()) -> None:
        self.clauses = clauses
        super().__init__(message)


class ModelLoadError(RailError):
    """Model weights or a tokenizer could not be loaded (no network, gated repository, wrong id or path)."""


class GenerationError(RailError):
    """The model backend failed to generate: a remote engine that is down, refuses, or answers nonsense."""


class GenerationTimeout(GenerationError):
    """The model backend did not answer within its time limit."""


class ScorerError(RailError):
    """The toxicity scorer could not be loaded or failed on an input."""


class EmbeddingError(RailError):
    """The sentence-embedding model of the semantic checks could not be loaded or failed on an input."""


class AuditError(RailError):
    """The audit log cannot be opened, read or written."""


class AuditWriteError(AuditError):
    """The audit store cannot take a record now (disk full, database down, no privilege): fail closed.

    Raised by every audit sink and store when a write fails; nothing already committed is lost. A caller that
    answers requests must block (or answer 503) rather than answer without a record.
    """


class AuditCorruptError(AuditError):
    """The audit log's storage is damaged (a page overwritten, a file cut short); verify reports it."""


class SigningKeyError(RailError):
    """A signing key file is missing, unreadable, of the wrong kind, or would be overwritten."""


class CanonicalJSONError(RailError, ValueError):
    """A value has no canonical JSON form (NaN, Infinity, or a type JSON lacks)."""
