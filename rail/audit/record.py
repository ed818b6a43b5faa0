"""The per-request audit record and its JSON form.

One :class:`AuditRecord` describes one request, allowed or blocked. Its JSON form
(:meth:`AuditRecord.to_dict`) uses the OpenTelemetry GenAI semantic-convention names (``gen_ai.*``) where one
exists and ``rail.*`` names for everything else, so records can sit next to OpenTelemetry spans unchanged.
What a record keeps of its text is decided by :mod:`rail.audit.privacy` before it is stored.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from rail._version import __version__
from rail.audit.privacy import PrivacyMode
from rail.errors import AuditError

__all__ = ["AuditRecord", "utc_now"]


def utc_now() -> str:
    """Return the current time as RFC 3339 UTC with microseconds, e.g. ``2025-01-31T12:00:00.000001Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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


_SCALARS = (str, int, bool, type(None))


def _plain(value: Any) -> Any:
    """Turn mappings, tuples and enums into the JSON-shaped value stored in a record."""
    # Exact-type checks first: records read back from a log are plain JSON already, and reports build
    # every one of them, so the common case must not pay for the ABC checks below.
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise AuditError(f"audit record holds a non-finite number ({value!r}); scores must be finite")
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): _plain(v) for k, v in value.items()}
    if kind is list:
        return [_plain(v) for v in value]
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

    ``violations`` holds Violation dicts (``Violation.to_dict()``; Violation objects are converted; a
    violation may carry a ``score`` and an ``evidence`` object), ``scores`` is
    ``{"prompt": {label: p}, "output": {label: p}}`` (detoxify labels and ``semantic.<clause>`` scores),
    ``params`` holds generation parameters under their OpenAI-style names (max_tokens, temperature, top_p,
    top_k, seed, do_sample, stop, ...).
    ``privacy`` says what the text fields hold: ``full`` for a record fresh from the gate, else the mode
    applied by :func:`rail.audit.apply_privacy`.
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
_OPT_NUMBER = (lambda v: v is None or _is_number(v), "a number or null")
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
    "severity": _OPT_STR, "reason": _OPT_STR, "span": _OPT_LIST, "clauses": _STR_LIST,
    "score": _OPT_NUMBER, "evidence": _OPT_OBJECT,
}
