"""The hash chain and signed checkpoints that make an audit log tamper-evident.

Every hash input starts with its own domain tag so a value of one kind can never be passed off as another:

- genesis     ``G = SHA-256("rail.audit.v1/genesis" 0x00 || log_id)``
- entry ``n``  ``H(n) = SHA-256("rail.audit.v1/entry" 0x00 || H(n-1) || n || canonical JSON)``, ``n`` as 8
  bytes big-endian, with ``H(0) = G``; binding ``n`` means a record moved to another position no longer
  matches its hash.
- checkpoint  signature over ``"rail.audit.v1/checkpoint" 0x00 || canonical JSON of the checkpoint body``
  (log id, size, head hash ``H(size)``, time, algorithm, key id).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

from rail.audit.record import utc_now
from rail.canonical import canonical_json
from rail.errors import AuditError
from rail.signing import CheckpointKey

__all__ = ["CHECKPOINT_FORMAT", "Checkpoint", "Entry", "EntryRow", "entry_hash", "genesis_hash", "link",
           "load_checkpoint", "parse_checkpoint", "sign_checkpoint", "write_atomic"]

CHECKPOINT_FORMAT = "rail-audit-checkpoint/1"
_GENESIS_TAG = b"rail.audit.v1/genesis\x00"
_ENTRY_TAG = b"rail.audit.v1/entry\x00"
_CHECKPOINT_TAG = b"rail.audit.v1/checkpoint\x00"


def genesis_hash(log_id: str) -> bytes:
    """Return the hash that record 1 is chained to; it ties the chain to one log."""
    return hashlib.sha256(_GENESIS_TAG + log_id.encode("utf-8")).digest()


def entry_hash(prev: bytes, seq: int, data: bytes) -> bytes:
    """Return the chain hash of record ``seq`` with canonical JSON ``data`` and predecessor hash ``prev``."""
    return hashlib.sha256(_ENTRY_TAG + prev + seq.to_bytes(8, "big") + data).digest()


#: A stored link as the stores stream it: (seq, prev, hash, data) — an Entry or a plain tuple of that shape.
EntryRow = tuple[int, bytes, bytes, bytes]


class Entry(NamedTuple):
    """One stored link of the chain: record number, the hash it is chained to, its own hash, its bytes."""

    seq: int
    prev: bytes
    hash: bytes
    data: bytes


def link(size: int, head: bytes, records: Iterable[bytes]) -> list[Entry]:
    """Return the entries chaining ``records`` (canonical JSON) after ``size`` entries ending at ``head``."""
    entries = []
    seq, prev = size, head
    for data in records:
        seq += 1
        digest = entry_hash(prev, seq, data)
        entries.append(Entry(seq, prev, digest, data))
        prev = digest
    return entries


@dataclass(frozen=True)
class Checkpoint:
    """A signed "log ``log_id`` had ``size`` records and head ``head`` at ``time``"; keep copies elsewhere.

    ``head`` is the hex chain hash of record ``size``. ``signature`` is base64.
    """

    log_id: str
    size: int
    head: str
    time: str
    alg: str
    key_id: str
    signature: str

    def body(self) -> dict[str, Any]:
        """Return the signed fields (everything but the signature)."""
        data = asdict(self)
        del data["signature"]
        data["format"] = CHECKPOINT_FORMAT
        return data

    def signed_bytes(self) -> bytes:
        """Return the exact bytes the signature covers."""
        return _CHECKPOINT_TAG + canonical_json(self.body())

    def verify_signature(self, key: CheckpointKey) -> bool:
        """Return whether the signature is valid under ``key`` (False for another algorithm or key)."""
        if key.alg != self.alg or key.key_id != self.key_id:
            return False
        try:
            signature = base64.b64decode(self.signature, validate=True)
        except ValueError:
            return False
        return key.verify(self.signed_bytes(), signature)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form written to checkpoint files and export files."""
        return {**self.body(), "signature": self.signature}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "checkpoint") -> Checkpoint:
        """Read the JSON form; raise AuditError naming ``source`` when a field is missing or mistyped."""
        if not isinstance(data, Mapping) or data.get("format") != CHECKPOINT_FORMAT:
            raise AuditError(f"{source} is not a rail audit checkpoint "
                             f"(format {CHECKPOINT_FORMAT!r} expected)")
        try:
            checkpoint = cls(log_id=str(data["log_id"]), size=int(data["size"]), head=str(data["head"]),
                             time=str(data["time"]), alg=str(data["alg"]), key_id=str(data["key_id"]),
                             signature=str(data["signature"]))
        except KeyError as exc:
            raise AuditError(f"{source} lacks the field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise AuditError(f"{source} has a malformed field: {exc}") from None
        if checkpoint.size < 0:
            raise AuditError(f"{source} has a negative size")
        return checkpoint

    def save(self, path: str | Path) -> Path:
        """Write the checkpoint to ``path`` atomically (temp file + rename) and return the path."""
        path = Path(path)
        write_atomic(path, json.dumps(self.to_dict(), indent=2, sort_keys=True).encode() + b"\n")
        return path


def sign_checkpoint(key: CheckpointKey, log_id: str, size: int, head: bytes,
                    time: str | None = None) -> Checkpoint:
    """Return a checkpoint over (log_id, size, head) signed with ``key``."""
    unsigned = Checkpoint(log_id=log_id, size=size, head=head.hex(), time=time or utc_now(), alg=key.alg,
                          key_id=key.key_id, signature="")
    signature = base64.b64encode(key.sign(unsigned.signed_bytes())).decode("ascii")
    return Checkpoint(**{**asdict(unsigned), "signature": signature})


def parse_checkpoint(data: bytes | str, source: str) -> Checkpoint:
    """Read a checkpoint stored as JSON text; raise AuditError naming ``source`` when it is not one."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise AuditError(f"{source} is not JSON ({exc})") from None
    return Checkpoint.from_dict(value, source=source)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint file written by :meth:`Checkpoint.save` or ``rail audit checkpoint``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AuditError(f"checkpoint file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AuditError(f"cannot read checkpoint file {path}: {exc}") from None
    return Checkpoint.from_dict(data, source=str(path))


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    except OSError as exc:
        raise AuditError(f"cannot write {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
