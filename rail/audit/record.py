"""The per-request audit record, its JSON form, privacy modes and the sink protocol the gate writes to.

One :class:`AuditRecord` describes one request, allowed or blocked. Its JSON form
(:meth:`AuditRecord.to_dict`) uses the OpenTelemetry GenAI semantic-convention names (``gen_ai.*``) where one
exists and ``rail.*`` names for everything else, so records can sit next to OpenTelemetry
spans unchanged.

Prompt and output text are personal data. :func:`apply_privacy` turns a record into what may be stored:
``full`` keeps the text, ``redacted`` (the default) replaces personal data found by the policy engine's PII
detectors, ``hashed`` keeps only a salted SHA-256 (HMAC) of each text.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from rail import __version__
from rail.errors import AuditError

__all__ = [
    "SALT_ENV",
    "AuditRecord",
    "AuditSink",
    "JsonlSink",
    "PrivacyMode",
    "apply_privacy",
    "canonical_json",
    "hash_text",
    "utc_now",
]

#: Environment variable holding the salt for ``hashed`` privacy when none is passed explicitly.
SALT_ENV = "RAIL_AUDIT_SALT"


def canonical_json(obj: Any) -> bytes:
    """Return the one byte form rail hashes and stores: sorted keys, no spaces, UTF-8, no NaN/Infinity.

    Two equal JSON values always give equal bytes, so a hash over these bytes is a hash over the record.
    """
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")
    except ValueError as exc:
        raise AuditError(f"audit record is not representable as canonical JSON: {exc} "
                         "(scores and durations must be finite numbers)") from exc
    except TypeError as exc:
        raise AuditError(f"audit record holds a value JSON cannot represent: {exc}") from exc


def utc_now() -> str:
    """Return the current time as RFC 3339 UTC with microseconds, e.g. ``2025-01-31T12:00:00.000001Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class PrivacyMode(str, Enum):
    """What an audit record keeps of prompt and output text; accepts the strings ``full|redacted|hashed``."""

    FULL = "full"
    REDACTED = "redacted"
    HASHED = "hashed"

    @classmethod
    def parse(cls, value: PrivacyMode | str) -> PrivacyMode:
        """Return the mode for ``value``; raise AuditError naming the allowed values otherwise."""
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(m.value for m in cls)
            raise AuditError(f"unknown privacy mode {value!r}; use one of: {allowed}") from None


# Generation parameters with an OpenTelemetry GenAI attribute; the rest go under ``rail.request.params``.
_OTEL_PARAMS = {
    "max_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "seed": "gen_ai.request.seed",
    "stop": "gen_ai.request.stop_sequences",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
}
_OTEL_PARAM_NAMES = {v: k for k, v in _OTEL_PARAMS.items()}

# Python field name -> JSON key, for the fields that map one to one.
_KEYS = {
    "time": "rail.time",
    "request_id": "rail.request_id",
    "deployment": "rail.deployment",
    "operation": "gen_ai.operation.name",
    "model": "gen_ai.request.model",
    "model_revision": "rail.model.revision",
    "provider": "gen_ai.provider.name",
    "input_tokens": "gen_ai.usage.input_tokens",
    "output_tokens": "gen_ai.usage.output_tokens",
    "verdict": "rail.verdict",
    "violations": "rail.violations",
    "scores": "rail.scores",
    "language": "rail.language",
    "provenance": "rail.provenance",
    "policy_id": "rail.policy.id",
    "policy_sha256": "rail.policy.sha256",
    "licence": "rail.licence",
    "rail_version": "rail.version",
    "durations_ms": "rail.durations_ms",
    "prompt": "rail.prompt",
    "output": "rail.output",
    "privacy": "rail.privacy",
    "extra": "rail.extra",
}


def _plain(value: Any) -> Any:
    """Turn mappings, tuples and enums into the JSON-shaped value stored in a record."""
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "to_dict"):
        return _plain(value.to_dict())
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise AuditError(f"audit record holds a non-finite number ({value!r}); scores must be finite")
    return value


@dataclass(frozen=True, kw_only=True)
class AuditRecord:
    """Record one request, allowed or blocked; build with keywords, store with an AuditSink.

    ``violations`` holds Violation dicts (``Violation.to_dict()``; Violation objects are converted),
    ``scores`` is ``{"prompt": {label: p}, "output": {label: p}}``, ``params`` holds generation parameters
    under their OpenAI-style names (max_tokens, temperature, top_p, top_k, seed, do_sample, stop, ...).
    ``privacy`` says what the text fields hold: ``full`` for a record fresh from the gate, else the mode
    applied by :func:`apply_privacy`.
    """

    time: str = field(default_factory=utc_now)
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    deployment: str | None = None
    operation: str = "text_completion"
    model: str | None = None
    model_revision: str | None = None
    provider: str = "rail"
    params: Mapping[str, Any] = field(default_factory=dict)
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    verdict: str = "allowed"
    violations: tuple[Mapping[str, Any], ...] = ()
    scores: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    language: str | None = None
    provenance: Mapping[str, Any] | None = None
    policy_id: str | None = None
    policy_sha256: str | None = None
    licence: str | None = None
    rail_version: str = __version__
    durations_ms: Mapping[str, float] = field(default_factory=dict)
    prompt: str = ""
    output: str | None = None
    privacy: str = PrivacyMode.FULL.value
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Normalise once here so every sink, hash and report sees the same JSON-shaped values.
        set_ = object.__setattr__
        set_(self, "verdict", _plain(self.verdict))
        set_(self, "privacy", PrivacyMode.parse(self.privacy).value)
        set_(self, "violations", tuple(_plain(v) for v in self.violations))
        for name in ("params", "scores", "durations_ms", "extra"):
            set_(self, name, _plain(getattr(self, name) or {}))
        if self.provenance is not None:
            set_(self, "provenance", _plain(self.provenance))
        if self.verdict not in ("allowed", "modified", "blocked"):
            raise AuditError("audit record verdict must be allowed, modified or blocked, "
                             f"not {self.verdict!r}")

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form: OpenTelemetry GenAI ``gen_ai.*`` keys where one exists, else ``rail.*``."""
        out: dict[str, Any] = {key: getattr(self, name) for name, key in _KEYS.items()}
        out["rail.violations"] = [dict(v) for v in self.violations]
        out["gen_ai.response.model"] = self.model
        out["gen_ai.response.finish_reasons"] = [self.finish_reason] if self.finish_reason else []
        other = {}
        for name, value in self.params.items():
            if name in _OTEL_PARAMS:
                out[_OTEL_PARAMS[name]] = value
            else:
                other[name] = value
        out["rail.request.params"] = other
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditRecord:
        """Rebuild a record from :meth:`to_dict` output; raise AuditError naming the first missing/bad key."""
        if not isinstance(data, Mapping):
            raise AuditError(f"audit record must be a JSON object, not {type(data).__name__}")
        for required in ("rail.time", "rail.request_id", "rail.verdict"):
            if required not in data:
                raise AuditError(f"audit record lacks {required!r}; is this a rail audit record?")
        kwargs: dict[str, Any] = {name: data[key] for name, key in _KEYS.items() if key in data}
        params = dict(data.get("rail.request.params") or {})
        for key, name in _OTEL_PARAM_NAMES.items():
            if key in data:
                params[name] = data[key]
        kwargs["params"] = params
        reasons = data.get("gen_ai.response.finish_reasons") or []
        kwargs["finish_reason"] = reasons[0] if reasons else None
        kwargs["violations"] = tuple(kwargs.get("violations") or ())
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise AuditError(f"audit record has a malformed field: {exc}") from exc


def _salt_bytes(salt: bytes | str | None) -> bytes:
    if salt is None:
        salt = os.environ.get(SALT_ENV)
    if not salt:
        raise AuditError(f"privacy mode 'hashed' needs a salt: pass salt=... or set {SALT_ENV}; "
                         "without one, short prompts could be recovered by hashing guesses")
    return salt.encode("utf-8") if isinstance(salt, str) else bytes(salt)


def hash_text(text: str, salt: bytes | str | None) -> str:
    """Return ``sha256:<hex>`` of HMAC-SHA256(salt, text): what ``hashed`` privacy keeps of a text.

    The same text and salt always give the same value, so an auditor holding the salt can check whether a
    given prompt was seen; without the salt the value reveals nothing practical about the text.
    """
    digest = hmac.new(_salt_bytes(salt), text.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"sha256:{digest}"


def _redact(text: str) -> str:
    # Imported here so this module (and the gate that imports it) loads even before the policy package does.
    from rail.policy.pii import redact

    return redact(text)


def _redact_violations(violations: tuple[Mapping[str, Any], ...]) -> tuple[dict[str, Any], ...]:
    # Rule reasons may quote the text that fired (an e-mail address, a phone number): personal data too.
    return tuple({**v, "reason": _redact(v["reason"])} if isinstance(v.get("reason"), str) else dict(v)
                 for v in violations)


def apply_privacy(record: AuditRecord, mode: PrivacyMode | str = PrivacyMode.REDACTED,
                  salt: bytes | str | None = None) -> AuditRecord:
    """Return the record as it may be stored under ``mode``; call before anything reaches disk.

    - ``full``: unchanged text.
    - ``redacted``: prompt, output and violation reasons with personal data (e-mail, phone, payment card,
      IBAN, US SSN, IP address) replaced by ``[REDACTED:<kind>]``.
    - ``hashed``: prompt and output replaced by :func:`hash_text` values (needs ``salt`` or
      ``RAIL_AUDIT_SALT``); violation reasons redacted as above.

    A record that already went through a privacy mode is only ever made more private, never less.
    """
    mode = PrivacyMode.parse(mode)
    current = PrivacyMode(record.privacy)
    order = [PrivacyMode.FULL, PrivacyMode.REDACTED, PrivacyMode.HASHED]
    if order.index(mode) <= order.index(current):
        return record
    if mode is PrivacyMode.REDACTED:
        return replace(record, prompt=_redact(record.prompt),
                       output=None if record.output is None else _redact(record.output),
                       violations=_redact_violations(record.violations), privacy=mode.value)
    violations = (record.violations if current is PrivacyMode.REDACTED
                  else _redact_violations(record.violations))
    return replace(record, prompt=hash_text(record.prompt, salt),
                   output=None if record.output is None else hash_text(record.output, salt),
                   violations=violations, privacy=mode.value)


@runtime_checkable
class AuditSink(Protocol):
    """Anything that stores audit records; the gate calls ``emit`` once per request."""

    def emit(self, record: AuditRecord) -> None:
        """Store one record (applying the sink's privacy mode first)."""


class JsonlSink:
    """Append each record as one canonical JSON line to a file; the plain, chain-less sink.

    Each line is written with a single ``write`` on a file opened in append mode, so lines from several
    processes do not interleave. ``fsync=True`` makes every record durable before ``emit`` returns. For a
    tamper-evident log use :class:`rail.audit.AuditLog`.
    """

    def __init__(self, path: str | Path, privacy: PrivacyMode | str = PrivacyMode.REDACTED, *,
                 salt: bytes | str | None = None, fsync: bool = False) -> None:
        self.path = Path(path)
        self.privacy = PrivacyMode.parse(privacy)
        self.fsync = fsync
        self._salt = salt
        if self.privacy is PrivacyMode.HASHED:
            _salt_bytes(salt)  # fail at construction, not at the first request
        self._lock = threading.Lock()
        try:
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise AuditError(f"cannot open audit file {self.path}: {exc.strerror}") from exc

    def emit(self, record: AuditRecord) -> None:
        """Append ``record`` after applying this sink's privacy mode."""
        line = canonical_json(apply_privacy(record, self.privacy, self._salt).to_dict()) + b"\n"
        with self._lock:
            if self._fd is None:
                raise AuditError(f"audit file {self.path} is closed")
            os.write(self._fd, line)
            if self.fsync:
                os.fsync(self._fd)

    def close(self) -> None:
        """Close the file; further emits raise AuditError."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
