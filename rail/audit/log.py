"""AuditLog: the tamper-evident log the gate writes every request to, on SQLite or PostgreSQL.

The log applies the privacy mode, turns each record into canonical JSON and hands batches to its store
(:mod:`rail.audit.store`), which chains them after the head inside one transaction. Checkpoints due every
``checkpoint_every`` records are signed and stored in the same transaction.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from rail.audit.chain import Checkpoint, parse_checkpoint, sign_checkpoint
from rail.audit.privacy import PrivacyMode, apply_privacy, require_salt, salt_id
from rail.audit.record import AuditRecord
from rail.audit.store import AuditStore, PreparedRecord, Target, open_store
from rail.canonical import canonical_json
from rail.errors import AuditError, CanonicalJSONError
from rail.signing import CheckpointKey, load_key

__all__ = ["SIGNING_KEY_ENV", "AuditLog", "read_checkpoints", "read_records"]

#: Environment variable naming the checkpoint signing key file when none is passed explicitly.
SIGNING_KEY_ENV = "RAIL_AUDIT_SIGNING_KEY"


def read_records(target: Target, *, on_error: Callable[[int, AuditError], None] | None = None,
                 ) -> Iterator[tuple[int, AuditRecord]]:
    """Yield ``(seq, record)`` for every stored record in order, streaming; the chain is not checked here.

    ``target`` is a log file path or a ``postgresql://`` URL. A record that is not valid JSON or not a valid
    audit record raises AuditError naming its number, unless ``on_error`` is given: then it is called with
    the number and the error, and reading carries on. Damaged storage raises AuditCorruptError.
    """
    store = open_store(target)
    try:
        yield from stored_records(store, on_error=on_error)
    finally:
        store.close()


def stored_records(store: AuditStore, *, on_error: Callable[[int, AuditError], None] | None = None,
                   ) -> Iterator[tuple[int, AuditRecord]]:
    """Yield ``(seq, record)`` from an open store; see :func:`read_records`."""
    for seq, _, _, data in store.iter_entries():
        try:
            record = AuditRecord.from_dict(json.loads(data))
        except (ValueError, RecursionError, AuditError) as exc:
            error = AuditError(f"{store.location}: record {seq} is not a valid audit record: {exc}")
            if on_error is None:
                raise error from None
            on_error(seq, error)
            continue
        yield seq, record


def read_checkpoints(target: Target) -> list[Checkpoint]:
    """Return the checkpoints stored in the log at ``target``, oldest first, without writing to it."""
    store = open_store(target)
    try:
        return [parse_checkpoint(data, f"{store.location} checkpoint") for data in store.checkpoints()]
    finally:
        store.close()


class AuditLog:
    """Append audit records to a hash-chained log; pass it to the gate as its ``sink``.

    Example::

        log = AuditLog("audit.db", privacy="redacted", signing_key="audit.key", checkpoint_every=1000)
        seq = log.emit(record)          # durable when it returns (synchronous="full")
        log.checkpoint().save("/elsewhere/audit.checkpoint")
        shared = AuditLog("postgresql://rail_appender@db.internal/rail")   # one log for many hosts

    ``target`` is a file path (SQLite; created if it does not exist or is an empty file, any other file that
    is not a rail log is refused unchanged) or a ``postgresql://`` URL (the tables are created on first use
    by a role allowed to; see the README for the grants an appending role needs). Read-only tools (verify,
    report, export, ``checkpoint --latest``) never use this class, so they never create a log.

    Privacy is applied before anything is written. ``salt`` (or ``RAIL_AUDIT_SALT``) is needed for
    ``privacy="hashed"`` and keys output digests in ``"redacted"``; it is never stored in the log, only a
    fingerprint that stops a second salt being mixed in.

    ``signing_key`` (a :class:`CheckpointKey` or key file path, or ``RAIL_AUDIT_SIGNING_KEY``) signs
    checkpoints, written automatically every ``checkpoint_every`` records and on demand with
    :meth:`checkpoint`. ``synchronous="full"`` (default) makes every returned append survive power loss
    (SQLite fsyncs the WAL; PostgreSQL commits synchronously); ``"normal"`` survives a crash of the writing
    process but may lose the latest commits when the machine (or, for PostgreSQL, the server) fails.

    Every failed write raises :class:`rail.errors.AuditWriteError`; records already committed are intact.
    """

    def __init__(self, target: Target, *, privacy: PrivacyMode | str = PrivacyMode.REDACTED,
                 salt: bytes | str | None = None,
                 signing_key: CheckpointKey | str | Path | None = None,
                 checkpoint_every: int | None = None, synchronous: str = "full",
                 busy_timeout_s: float = 30.0) -> None:
        self.privacy = PrivacyMode.parse(privacy)
        self._salt = require_salt(self.privacy, salt)
        if signing_key is None and os.environ.get(SIGNING_KEY_ENV):
            signing_key = os.environ[SIGNING_KEY_ENV]
        self._key = signing_key if isinstance(signing_key, CheckpointKey) or signing_key is None \
            else load_key(signing_key)
        if self._key is not None and not self._key.can_sign:
            raise AuditError("the checkpoint key is a public key; the log needs the private key to sign")
        if checkpoint_every is not None and (checkpoint_every < 1 or self._key is None):
            raise AuditError("checkpoint_every needs a positive count and a signing key "
                             f"(signing_key=... or {SIGNING_KEY_ENV})")
        self.checkpoint_every = checkpoint_every
        self._lock = threading.Lock()
        self._store = open_store(target, writable=True, busy_timeout_s=busy_timeout_s,
                                 synchronous=synchronous)
        self.location = self._store.location
        self.log_id = self._store.meta.log_id
        if self._salt and self.privacy is not PrivacyMode.FULL:
            # Redacted mode keys provenance digests with the salt too, so both modes keep one salt per log.
            wanted = salt_id(self._salt)
            if self._store.record_salt(wanted) != wanted:
                self._store.close()
                raise AuditError(f"{self.location} was written with another hashing salt; hashes made with "
                                 "this one would not be comparable — use the original RAIL_AUDIT_SALT")

    def _prepare(self, record: AuditRecord) -> PreparedRecord:
        stored = apply_privacy(record, self.privacy, self._salt)
        try:
            data = canonical_json(stored.to_dict())
        except CanonicalJSONError as exc:
            raise AuditError(f"audit record {stored.request_id} cannot be stored: {exc}") from None
        return PreparedRecord(data, stored.time, stored.request_id, stored.verdict)

    def _due(self, first: int, size: int, head: bytes) -> Checkpoint | None:
        every = self.checkpoint_every
        if every and size // every > (first - 1) // every:
            assert self._key is not None
            return sign_checkpoint(self._key, self.log_id, size, head)
        return None

    def emit(self, record: AuditRecord) -> int:
        """Append one record (privacy applied first) and return its sequence number."""
        return self.append_many([record])[0]

    def append_many(self, records: Iterable[AuditRecord]) -> list[int]:
        """Append records in one transaction (one commit) and return their sequence numbers, in order."""
        prepared = [self._prepare(record) for record in records]
        if not prepared:
            return []
        with self._lock:
            return list(self._store.append_many(prepared, self._due if self.checkpoint_every else None))

    def checkpoint(self) -> Checkpoint:
        """Sign the current size and head, store the checkpoint in the log and return it to save elsewhere."""
        key = self._key
        if key is None:
            raise AuditError(f"signing a checkpoint needs a key: signing_key=... or {SIGNING_KEY_ENV}")
        with self._lock:
            return self._store.add_checkpoint(
                lambda size, head: sign_checkpoint(key, self.log_id, size, head))

    def head(self) -> tuple[int, str]:
        """Return (number of records, hex head hash)."""
        with self._lock:
            size, head = self._store.head()
        return size, head.hex()

    def __len__(self) -> int:
        return self.head()[0]

    def checkpoints(self) -> list[Checkpoint]:
        """Return the checkpoints stored in the log, oldest first."""
        with self._lock:
            raw = self._store.checkpoints()
        return [parse_checkpoint(data, f"{self.location} checkpoint") for data in raw]

    def close(self) -> None:
        """Close the connection; a later call reopens it."""
        with self._lock:
            self._store.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
