"""Privacy modes: what an audit record keeps of prompt and output text before anything is written.

Prompt and output text are personal data. :func:`apply_privacy` turns a record into what may be stored:
``full`` keeps the text, ``redacted`` (the default) replaces personal data found by the policy engine's PII
detectors, ``hashed`` keeps only a salted SHA-256 (HMAC) of each text (see :func:`apply_privacy` for every
field each mode changes).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from enum import Enum
from functools import partial
from typing import TYPE_CHECKING, Any

from rail.errors import AuditError

if TYPE_CHECKING:
    from rail.audit.record import AuditRecord

__all__ = ["SALT_ENV", "PrivacyMode", "apply_privacy", "configured_salt", "hash_text", "salt_id"]

#: Environment variable holding the salt for ``hashed`` privacy when none is passed explicitly.
SALT_ENV = "RAIL_AUDIT_SALT"


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


def configured_salt(salt: bytes | str | None) -> bytes | None:
    """Return ``salt`` as bytes, or the salt in ``RAIL_AUDIT_SALT`` when ``salt`` is None; None if neither."""
    if salt is None:
        salt = os.environ.get(SALT_ENV)
    if not salt:
        return None
    return salt.encode("utf-8") if isinstance(salt, str) else bytes(salt)


def _salt_bytes(salt: bytes | str | None) -> bytes:
    configured = configured_salt(salt)
    if configured is None:
        raise AuditError(f"privacy mode 'hashed' needs a salt: pass salt=... or set {SALT_ENV}; "
                         "without one, short prompts could be recovered by hashing guesses")
    return configured


def salt_id(salt: bytes) -> str:
    """Return the fingerprint a log stores instead of its salt, so a second, different salt is refused."""
    return hmac.new(salt, b"rail.audit.v1/salt-id", hashlib.sha256).hexdigest()[:16]


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


def _redact_strings(value: Any) -> Any:
    if isinstance(value, str):
        return _redact(value)
    if isinstance(value, Mapping):
        return {k: _redact_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_strings(v) for v in value]
    return value


def _redact_violations(violations: tuple[Mapping[str, Any], ...]) -> tuple[dict[str, Any], ...]:
    # Rule reasons and evidence may quote the text that fired (an e-mail address, a phone number): personal
    # data too.
    out = []
    for violation in violations:
        item = dict(violation)
        if isinstance(item.get("reason"), str):
            item["reason"] = _redact(item["reason"])
        if isinstance(item.get("evidence"), Mapping):
            item["evidence"] = _redact_strings(item["evidence"])
        out.append(item)
    return tuple(out)


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
    - ``redacted``: prompt, output, stop sequences (in ``params`` and in the provenance's ``params``),
      violation reasons and the text in violation evidence with personal data (e-mail, phone, payment card,
      IBAN, US SSN, IP address) replaced by ``[REDACTED:<kind>]``. The provenance's ``output_sha256`` is a
      plain SHA-256 of the unredacted final output, which a dictionary attack reverses for short outputs: it
      becomes ``hash_text(output_sha256, salt)`` when a salt is configured (``salt`` or ``RAIL_AUDIT_SALT``)
      — so whoever holds the salt can still match a delivered output to its record — and null otherwise.
    - ``hashed``: prompt, output and stop sequences replaced by :func:`hash_text` values, and the
      provenance's ``output_sha256`` by ``hash_text(output_sha256, salt)`` (needs ``salt`` or
      ``RAIL_AUDIT_SALT``); violation reasons and evidence redacted as above.

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
        key = configured_salt(salt)
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


def require_salt(mode: PrivacyMode, salt: bytes | str | None) -> bytes | None:
    """Return the salt a sink in ``mode`` will use; raise AuditError now when ``hashed`` has none."""
    if mode is PrivacyMode.HASHED:
        return _salt_bytes(salt)
    return configured_salt(salt)
