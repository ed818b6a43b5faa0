"""Who may call the server: API keys as Bearer tokens, kept as SHA-256 digests, compared in constant time.

Keys come from ``--api-key KEY`` (repeatable, or ``RAIL_API_KEY``) for one deployment, or from a keys
file (``--config``) that binds each key to its own tenant: deployment declaration, policy and limits::

    keys:
      - id: support-bot                      # named in audit records and metrics; never the key
        sha256: 5e88489…                     # printf %s "$KEY" | sha256sum
        declaration: deployments/support.yaml
        policy: bigscience-bloom-rail-1.0
        limits: {requests_per_minute: 60, tokens_per_minute: 20000}

Why SHA-256 and not a password hash such as scrypt: API keys are random secrets of 128 bits or more, not
passwords people choose, so there is no dictionary to slow down; a fast digest keeps each request's check
cheap, and the file reveals nothing usable. Keys shorter than :data:`MIN_KEY_CHARS` are refused.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from rail.errors import ConfigError
from rail.yamlio import load_schema, load_yaml, validate

__all__ = [
    "MIN_KEY_CHARS",
    "KeyLimits",
    "KeyRing",
    "KeySpec",
    "bearer_token",
    "key_digest",
    "keys_from_cli",
    "load_keys_file",
]

#: The shortest key accepted on the command line (a random key of 128 bits is 22 base64 characters).
MIN_KEY_CHARS = 16


def key_digest(key: str) -> bytes:
    """Return the SHA-256 digest of ``key`` (its UTF-8 bytes), the only form the server keeps."""
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True)
class KeyLimits:
    """Per-key limits: requests and tokens per minute (None: no limit)."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


@dataclass(frozen=True)
class KeySpec:
    """One API key as configured: its id, digest, and what its tenant deploys (None: the server's default)."""

    id: str
    digest: bytes
    declaration: str | None = None
    policy: str | None = None
    limits: KeyLimits = KeyLimits()
    source: str = "--api-key"
    line: int | None = None

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source


def keys_from_cli(keys: Iterable[str], limits: KeyLimits) -> list[KeySpec]:
    """Turn ``--api-key`` values into KeySpecs with ids ``key-<first 12 hex of the digest>``."""
    specs = []
    for key in keys:
        if len(key) < MIN_KEY_CHARS or not key.isprintable() or any(c.isspace() for c in key):
            raise ConfigError(
                f"an API key must be at least {MIN_KEY_CHARS} printable characters without spaces",
                path="--api-key",
                hint="generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
            )
        digest = key_digest(key)
        specs.append(KeySpec(id=f"key-{digest.hex()[:12]}", digest=digest, limits=limits))
    return specs


def _resolve(value: str | None, base: Path, *, packs: Iterable[str] = ()) -> str | None:
    if value is None or value in packs:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def load_keys_file(path: str | Path) -> list[KeySpec]:
    """Read and validate a keys file; raise ConfigError naming file:line for any problem."""
    from rail.policy import available_policies

    doc = load_yaml(path)
    validate(doc, load_schema("server-keys.schema.json"), "keys file")
    base = Path(path).parent
    specs: list[KeySpec] = []
    seen_ids: dict[str, int | None] = {}
    seen_digests: dict[bytes, str] = {}
    for index, raw in enumerate(doc.data["keys"]):
        line = doc.line_of(["keys", index])
        if raw["id"] in seen_ids:
            raise ConfigError(
                f"duplicate key id '{raw['id']}' (first on line {seen_ids[raw['id']]})",
                source=doc.source,
                line=line,
                path=f"keys[{index}].id",
                hint="give every key its own id",
            )
        digest = bytes.fromhex(raw["sha256"])
        if digest in seen_digests:
            raise ConfigError(
                f"key '{raw['id']}' has the same sha256 as key '{seen_digests[digest]}'",
                source=doc.source,
                line=doc.line_of(["keys", index, "sha256"]),
                path=f"keys[{index}].sha256",
                hint="one key cannot belong to two tenants; generate a new key",
            )
        seen_ids[raw["id"]] = line
        seen_digests[digest] = raw["id"]
        limits: Mapping[str, int] = raw.get("limits", {})
        specs.append(
            KeySpec(
                id=raw["id"],
                digest=digest,
                declaration=_resolve(raw.get("declaration"), base),
                policy=_resolve(raw.get("policy"), base, packs=available_policies()),
                limits=KeyLimits(limits.get("requests_per_minute"), limits.get("tokens_per_minute")),
                source=doc.source,
                line=line,
            )
        )
    return specs


T = TypeVar("T")


class KeyRing(Generic[T]):
    """Find what a presented key unlocks, comparing its digest with every known digest in constant time."""

    def __init__(self, entries: Iterable[tuple[bytes, T]]) -> None:
        self._entries = list(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def find(self, presented: str | None) -> T | None:
        """Return the value bound to ``presented``, or None; the time taken does not say which matched."""
        digest = key_digest(presented or "")
        found: T | None = None
        for known, value in self._entries:
            # No early exit: every digest is compared, each in constant time.
            if hmac.compare_digest(known, digest) and presented:
                found = value
        return found


def bearer_token(header: str | None) -> str | None:
    """Return the token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
