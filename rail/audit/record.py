"""The per-request audit record, its JSON form, privacy modes and the sink protocol the gate writes to.

One :class:`AuditRecord` describes one request, allowed or blocked. Its JSON form
(:meth:`AuditRecord.to_dict`) uses the OpenTelemetry GenAI semantic-convention names (``gen_ai.*``) where one
exists and ``rail.*`` names for everything else, so records can sit next to OpenTelemetry
spans unchanged.

Prompt and output text are personal data. :func:`apply_privacy` turns a record into what may be stored:
``full`` keeps the text, ``redacted`` (the default) replaces personal data found by the policy engine's PII
detectors, ``hashed`` keeps only a salted SHA-256 (HMAC) of each text (see :func:`apply_privacy` for every
field each mode changes).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from rail._version import __version__
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
        """Rebuild a record from :meth:`to_dict` output; raise AuditError naming the first missing/bad key.

        Every field is type-checked (a string where an object belongs, a list of durations, a number as the
        time), so a record edited by hand is refused with the key that is wrong instead of failing later.
        """
        if not isinstance(data, Mapping):
            raise AuditError(f"audit record must be a JSON object, not {type(data).__name__}")
        for required in ("rail.time", "rail.request_id", "rail.verdict"):
            if required not in data:
                raise AuditError(f"audit record lacks {required!r}; is this a rail audit record?")
        for key, (check, accepted) in _FIELD_TYPES.items():
            if key in data and not check(data[key]):
                raise AuditError(f"audit record field {key!r} must be {accepted}, "
                                 f"not {_json_type(data[key])}")
        for index, violation in enumerate(data.get("rail.violations") or ()):
            if "rule" not in violation:
                raise AuditError(f"audit record field 'rail.violations' item {index} lacks 'rule'")
            for name, (check, accepted) in _VIOLATION_TYPES.items():
                if name in violation and not check(violation[name]):
                    raise AuditError(f"audit record field 'rail.violations' item {index} key {name!r} "
                                     f"must be {accepted}, not {_json_type(violation[name])}")
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


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object" if isinstance(value, Mapping) else "a value"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers(value: Any) -> bool:
    return value is None or (isinstance(value, Mapping) and all(_is_number(v) for v in value.values()))


# (check, what it accepts) for each JSON type a stored key may have.
_STR = (lambda v: isinstance(v, str), "a string")
_OPT_STR = (lambda v: v is None or isinstance(v, str), "a string or null")
_OPT_INT = (lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)), "an integer or null")
_OPT_OBJECT = (lambda v: v is None or isinstance(v, Mapping), "an object or null")
_OPT_LIST = (lambda v: v is None or isinstance(v, list), "a list or null")
_STR_LIST = (lambda v: v is None or (isinstance(v, list) and all(isinstance(i, str) for i in v)),
             "a list of strings")
_OBJECT_LIST = (lambda v: v is None or (isinstance(v, list) and all(isinstance(i, Mapping) for i in v)),
                "a list of objects")
_NUMBERS = (_numbers, "an object of numbers")
_SCORES = (lambda v: v is None or (isinstance(v, Mapping) and all(_numbers(i) for i in v.values())),
           "an object of {label: number} objects")

# The JSON type of every stored key; a record edited by hand is checked against this when it is read back.
_FIELD_TYPES = {
    "rail.time": _STR, "rail.request_id": _STR, "rail.verdict": _STR, "rail.deployment": _OPT_STR,
    "gen_ai.operation.name": _STR, "gen_ai.request.model": _OPT_STR, "rail.model.revision": _OPT_STR,
    "gen_ai.provider.name": _STR, "gen_ai.usage.input_tokens": _OPT_INT,
    "gen_ai.usage.output_tokens": _OPT_INT, "gen_ai.response.finish_reasons": _STR_LIST,
    "rail.violations": _OBJECT_LIST, "rail.scores": _SCORES, "rail.language": _OPT_STR,
    "rail.provenance": _OPT_OBJECT, "rail.policy.id": _OPT_STR, "rail.policy.sha256": _OPT_STR,
    "rail.licence": _OPT_STR, "rail.version": _STR, "rail.durations_ms": _NUMBERS, "rail.prompt": _STR,
    "rail.output": _OPT_STR, "rail.privacy": _STR, "rail.extra": _OPT_OBJECT,
    "rail.request.params": _OPT_OBJECT,
}
_VIOLATION_TYPES = {
    "rule": _STR, "restriction": _OPT_STR, "licence": _OPT_STR, "stage": _OPT_STR, "action": _OPT_STR,
    "severity": _OPT_STR, "reason": _OPT_STR, "span": _OPT_LIST,
}


def _configured_salt(salt: bytes | str | None) -> bytes | None:
    if salt is None:
        salt = os.environ.get(SALT_ENV)
    if not salt:
        return None
    return salt.encode("utf-8") if isinstance(salt, str) else bytes(salt)


def _salt_bytes(salt: bytes | str | None) -> bytes:
    configured = _configured_salt(salt)
    if configured is None:
        raise AuditError(f"privacy mode 'hashed' needs a salt: pass salt=... or set {SALT_ENV}; "
                         "without one, short prompts could be recovered by hashing guesses")
    return configured


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


def _private_params(params: Mapping[str, Any], text: Callable[[str], str]) -> dict[str, Any]:
    # Stop sequences are text the caller chose (a name, a delimiter quoting the prompt): treated like prompts.
    out = dict(params)
    stop = out.get("stop")
    if isinstance(stop, str):
        out["stop"] = text(stop)
    elif isinstance(stop, list):
        out["stop"] = [text(s) if isinstance(s, str) else s for s in stop]
    return out


def _private_provenance(provenance: Mapping[str, Any] | None, text: Callable[[str], str],
                        digest: Callable[[str], str | None] | None) -> dict[str, Any] | None:
    if provenance is None:
        return None
    out = dict(provenance)
    if isinstance(out.get("params"), Mapping):
        out["params"] = _private_params(out["params"], text)
    if digest is not None and isinstance(out.get("output_sha256"), str):
        out["output_sha256"] = digest(out["output_sha256"])
    return out


def apply_privacy(record: AuditRecord, mode: PrivacyMode | str = PrivacyMode.REDACTED,
                  salt: bytes | str | None = None) -> AuditRecord:
    """Return the record as it may be stored under ``mode``; call before anything reaches disk.

    - ``full``: unchanged.
    - ``redacted``: prompt, output, stop sequences (in ``params`` and in the provenance's ``params``) and
      violation reasons with personal data (e-mail, phone, payment card, IBAN, US SSN, IP address) replaced
      by ``[REDACTED:<kind>]``. The provenance's ``output_sha256`` is a plain SHA-256 of the unredacted
      final output, which a dictionary attack reverses for short outputs: it becomes
      ``hash_text(output_sha256, salt)`` when a salt is configured (``salt`` or ``RAIL_AUDIT_SALT``) — so
      whoever holds the salt can still match a delivered output to its record — and null otherwise.
    - ``hashed``: prompt, output and stop sequences replaced by :func:`hash_text` values, and the
      provenance's ``output_sha256`` by ``hash_text(output_sha256, salt)`` (needs ``salt`` or
      ``RAIL_AUDIT_SALT``); violation reasons redacted as above.

    A provenance signature covers the original digest, so it verifies against the provenance delivered with
    the output, not against the stored copy. A record that already went through a privacy mode is only ever
    made more private, never less (a digest already keyed or dropped is left as it is).
    """
    mode = PrivacyMode.parse(mode)
    current = PrivacyMode(record.privacy)
    order = [PrivacyMode.FULL, PrivacyMode.REDACTED, PrivacyMode.HASHED]
    if order.index(mode) <= order.index(current):
        return record
    if mode is PrivacyMode.REDACTED:
        key = _configured_salt(salt)
        digest: Callable[[str], str | None] = partial(hash_text, salt=key) if key else (lambda _: None)
        return replace(record, prompt=_redact(record.prompt),
                       output=None if record.output is None else _redact(record.output),
                       params=_private_params(record.params, _redact),
                       provenance=_private_provenance(record.provenance, _redact, digest),
                       violations=_redact_violations(record.violations), privacy=mode.value)
    key = _salt_bytes(salt)
    violations = (record.violations if current is PrivacyMode.REDACTED
                  else _redact_violations(record.violations))
    hashed = partial(hash_text, salt=key)
    return replace(record, prompt=hashed(record.prompt),
                   output=None if record.output is None else hashed(record.output),
                   params=_private_params(record.params, hashed),
                   provenance=_private_provenance(record.provenance, hashed,
                                                  hashed if current is PrivacyMode.FULL else None),
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
