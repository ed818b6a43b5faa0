"""The storage interface every audit log sits on, and the one place that picks a store for a path or URL.

A store keeps three things — the log's metadata, the chain of entries, the signed checkpoints — and knows
nothing about records, privacy or verification. Two stores implement :class:`AuditStore`:

- :class:`rail.audit.sqlite.SQLiteStore` for a file path (one host, several processes);
- :class:`rail.audit.postgres.PostgresStore` for a ``postgresql://`` URL (many hosts, one database).

Both hold the same canonical JSON bytes, chain hashes and checkpoints, so an export from one imports into the
other and verifies there. :func:`open_store` chooses by the target's form.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeAlias

from rail.audit.chain import Checkpoint, Entry, EntryRow
from rail.errors import AuditError

__all__ = ["LOG_FORMAT", "SCHEMA_VERSION", "AuditStore", "CheckpointDue", "ImportItem", "ImportSource",
           "LogMeta", "PreparedRecord", "Target", "describe_target", "import_store", "is_url", "log_meta",
           "open_store"]

#: Format name stored in every log's metadata; the number after the slash is the schema version.
LOG_FORMAT = "rail-audit-log/1"
SCHEMA_VERSION = 1
_FORMAT_PREFIX = "rail-audit-log/"

#: A file path, or a ``postgresql://`` URL.
Target: TypeAlias = str | Path

#: Called inside the appending transaction with (first new seq, new size, new head); returns the checkpoint to
#: store in the same transaction, or None.
CheckpointDue: TypeAlias = Callable[[int, int, bytes], Checkpoint | None]


@dataclass(frozen=True)
class LogMeta:
    """What identifies a log: its random id (bound into the chain), creation time, salt fingerprint."""

    log_id: str
    created: str | None
    schema_version: int
    salt_id: str | None = None
    imported_from: str | None = None


@dataclass(frozen=True, slots=True)
class PreparedRecord:
    """A record in the form a store writes: its canonical JSON and the lookup columns copied from it."""

    data: bytes
    time: str
    request_id: str
    verdict: str


def log_meta(values: Mapping[str, str], location: str) -> LogMeta:
    """Read a store's metadata rows; raise AuditError when they are not a rail log of this schema version."""
    fmt = values.get("format")
    if not fmt or not fmt.startswith(_FORMAT_PREFIX) or "log_id" not in values:
        raise AuditError(f"{location} is not a rail audit log (no '{LOG_FORMAT}' metadata)")
    try:
        version = int(fmt[len(_FORMAT_PREFIX):])
    except ValueError:
        raise AuditError(f"{location} names an unknown audit log format {fmt!r}") from None
    if version != SCHEMA_VERSION:
        newer = "a newer" if version > SCHEMA_VERSION else "an older"
        raise AuditError(f"{location} holds audit log schema version {version}, written by {newer} rail; "
                         f"this rail reads version {SCHEMA_VERSION} — use the rail version that wrote it "
                         "(or export with it and import here)")
    return LogMeta(log_id=values["log_id"], created=values.get("created") or None, schema_version=version,
                   salt_id=values.get("salt_id"), imported_from=values.get("imported_from"))


class AuditStore(Protocol):
    """Where a log's entries, checkpoints and metadata live; every audit command goes through one.

    Appends are serialized by the store itself (a SQLite write transaction, a PostgreSQL lock held in the
    appending transaction), so any number of writers form one chain with no fork and no gap. Every failed
    write raises :class:`rail.errors.AuditWriteError` and leaves nothing of the failed batch behind.
    """

    location: str
    meta: LogMeta

    def append_many(self, records: Sequence[PreparedRecord],
                    checkpoint: CheckpointDue | None = None) -> range:
        """Chain ``records`` after the head in one transaction; return their sequence numbers."""
        ...

    def add_checkpoint(self, sign: Callable[[int, bytes], Checkpoint]) -> Checkpoint:
        """Sign (size, head) as they are inside one transaction, store the checkpoint and return it."""
        ...

    def record_salt(self, salt_id: str) -> str:
        """Store the salt fingerprint if the log has none yet; return the one the log holds."""
        ...

    def head(self) -> tuple[int, bytes]:
        """Return (highest sequence number, its hash) — (0, genesis hash) for an empty log."""
        ...

    def iter_entries(self, from_seq: int | None = None, *,
                     ordered: bool = True) -> Generator[EntryRow, None, None]:
        """Yield the stored entries (all, or those with ``seq >= from_seq``) in order, exactly as stored.

        Each is a (seq, prev, hash, data) tuple — plain tuples rather than Entry objects, since verification
        walks a million of them in seconds. Every stored row is yielded, whatever its number (a row added
        below record 1 included), so verification sees what a forger left. ``ordered=False`` lets a store
        yield rows in the order they lie, which is sequence order only while nothing was moved: the caller
        must treat any deviation as a reason to walk again ordered.
        """
        ...

    def entry(self, seq: int) -> Entry | None:
        """Return the stored entry numbered ``seq``, or None."""
        ...

    def checkpoints(self) -> list[bytes]:
        """Return the stored checkpoints as their JSON bytes, oldest first."""
        ...

    def snapshot(self) -> AbstractContextManager[None]:
        """Hold one consistent view of the log for the reads made inside the ``with`` block."""
        ...

    def damage(self) -> str | None:
        """Describe damage to the storage found without reading records (a file cut short), else None."""
        ...

    def close(self) -> None:
        """Release the connection; a later call reopens it."""
        ...


def is_url(target: Target) -> bool:
    """Return whether ``target`` names a PostgreSQL database rather than a file."""
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def describe_target(target: Target) -> str:
    """Return ``target`` as it may appear in messages and reports: a URL loses its password."""
    if is_url(target):
        from rail.audit.postgres import public_url

        return public_url(str(target))
    return str(target)


def open_store(target: Target, *, writable: bool = False, busy_timeout_s: float = 30.0,
               synchronous: str = "full") -> AuditStore:
    """Open the log at a path or ``postgresql://`` URL; ``writable`` creates it when it does not exist yet.

    A read-only open never changes anything (it never creates a file, tables or metadata). Raises AuditError
    when the target is missing, not a rail audit log, or of another schema version.
    """
    if synchronous not in ("full", "normal"):
        raise AuditError(f"synchronous must be 'full' or 'normal', not {synchronous!r}")
    if is_url(target):
        from rail.audit.postgres import PostgresStore

        return PostgresStore(str(target), writable=writable, busy_timeout_s=busy_timeout_s,
                             synchronous=synchronous)
    from rail.audit.sqlite import SQLiteStore

    return SQLiteStore(Path(target), writable=writable, busy_timeout_s=busy_timeout_s,
                       synchronous=synchronous)


#: What an import hands a new store: an entry with its lookup columns, or a checkpoint.
ImportItem: TypeAlias = tuple[Entry, PreparedRecord] | Checkpoint
#: Opens the source of an import once the target is known to be free: returns (metadata, items).
ImportSource: TypeAlias = Callable[[], tuple[Mapping[str, str], Iterable[ImportItem]]]


def import_store(target: Target, source: ImportSource) -> None:
    """Create a new log at ``target`` from ``source`` (metadata, then entries and checkpoints).

    Refuses a target that already holds a log before reading anything (an import never modifies a log). All
    or nothing: when reading the items raises, nothing is left at the target.
    """
    if is_url(target):
        from rail.audit.postgres import import_postgres

        import_postgres(str(target), source)
        return
    from rail.audit.sqlite import import_sqlite

    import_sqlite(Path(target), source)
