"""AuditLog: the tamper-evident SQLite store the gate writes every request to.

Layout (one SQLite file in WAL mode):

- ``meta(key, value)``: ``format`` = ``rail-audit-log/1``, ``log_id`` (random), ``created``, and ``salt_id``
  (a fingerprint of the hashed-mode salt, never the salt).
- ``records(seq, time, request_id, verdict, prev, hash, data)``: ``data`` is the canonical JSON of the record
  after privacy was applied, ``hash`` its chain hash (see :mod:`rail.audit.chain`), ``prev`` the hash it was
  chained to. ``time``/``request_id``/``verdict`` are copies for lookups; verification and reports trust
  ``data``.
- ``checkpoints(id, size, data)``: signed checkpoints as JSON.

Appends run in ``BEGIN IMMEDIATE`` transactions that read the head inside the transaction, so several
processes can append to one log; SQLite's journal makes each append all-or-nothing, so a writer killed
mid-append leaves every earlier record intact.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from rail.audit.chain import Checkpoint, entry_hash, genesis_hash, sign_checkpoint
from rail.audit.keys import CheckpointKey, load_key
from rail.audit.record import (
    SALT_ENV,
    AuditRecord,
    PrivacyMode,
    apply_privacy,
    canonical_json,
    utc_now,
)
from rail.errors import AuditError

__all__ = ["LOG_FORMAT", "SIGNING_KEY_ENV", "AuditLog", "BufferedSink", "column_bytes", "open_log_readonly",
           "read_checkpoints", "read_records"]

LOG_FORMAT = "rail-audit-log/1"
#: Environment variable naming the checkpoint signing key file when none is passed explicitly.
SIGNING_KEY_ENV = "RAIL_AUDIT_SIGNING_KEY"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    request_id TEXT NOT NULL,
    verdict TEXT NOT NULL,
    prev BLOB NOT NULL,
    hash BLOB NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_time ON records(time);
CREATE TABLE IF NOT EXISTS checkpoints (id INTEGER PRIMARY KEY, size INTEGER NOT NULL, data TEXT NOT NULL);
"""


def _salt_id(salt: bytes) -> str:
    return hmac.new(salt, b"rail.audit.v1/salt-id", hashlib.sha256).hexdigest()[:16]


def _read_meta(conn: sqlite3.Connection, path: Path) -> dict[str, str]:
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError:
        meta = {}
    if meta.get("format") != LOG_FORMAT or "log_id" not in meta:
        raise AuditError(f"{path} is not a rail audit log (no '{LOG_FORMAT}' metadata)")
    return meta


def column_bytes(value: object) -> bytes:
    """Return a stored column as bytes: rail writes BLOBs, but an edit through SQL may leave TEXT or a number.

    Comparing and hashing these bytes means such an edit is reported as tampering instead of crashing.
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return repr(value).encode("utf-8")


def _require_file(path: Path) -> None:
    if path.is_dir():
        raise AuditError(f"audit log {path} is a directory, not a file")
    if not path.exists():
        raise AuditError(f"audit log {path} does not exist")
    if not path.is_file():
        raise AuditError(f"audit log {path} is not a regular file")


def open_log_readonly(path: str | Path) -> tuple[sqlite3.Connection, dict[str, str]]:
    """Open a log for reading only; return the connection and its metadata. AuditError if it is not a log."""
    path = Path(path)
    _require_file(path)
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        meta = _read_meta(conn, path)
    except sqlite3.DatabaseError as exc:
        raise AuditError(f"{path} is not a rail audit log ({exc})") from None
    return conn, meta


def read_records(path: str | Path, *, on_error: Callable[[int, AuditError], None] | None = None,
                 ) -> Iterator[tuple[int, AuditRecord]]:
    """Yield ``(seq, record)`` for every stored record in order, streaming; the chain is not checked here.

    A record that is not valid JSON or not a valid audit record raises AuditError naming its number, unless
    ``on_error`` is given: then it is called with the number and the error, and reading carries on.
    """
    conn, _ = open_log_readonly(path)
    try:
        for seq, data in conn.execute("SELECT seq, data FROM records ORDER BY seq"):
            try:
                record = AuditRecord.from_dict(json.loads(column_bytes(data)))
            except (ValueError, RecursionError, AuditError) as exc:
                error = AuditError(f"{path}: record {seq} is not a valid audit record: {exc}")
                if on_error is None:
                    raise error from None
                on_error(seq, error)
                continue
            yield seq, record
    finally:
        conn.close()


def read_checkpoints(path: str | Path) -> list[Checkpoint]:
    """Return the checkpoints stored in the log at ``path``, oldest first, without writing to it."""
    path = Path(path)
    conn, _ = open_log_readonly(path)
    try:
        rows = conn.execute("SELECT data FROM checkpoints ORDER BY id").fetchall()
    except sqlite3.DatabaseError as exc:
        raise AuditError(f"cannot read audit log {path}: {exc}") from None
    finally:
        conn.close()
    return [_parse_checkpoint(data, f"{path} checkpoint") for (data,) in rows]


def _parse_checkpoint(data: object, source: str) -> Checkpoint:
    try:
        value = json.loads(column_bytes(data))
    except ValueError as exc:
        raise AuditError(f"{source} is not JSON ({exc})") from None
    return Checkpoint.from_dict(value, source=source)


class AuditLog:
    """Append audit records to a hash-chained SQLite log; pass it to the gate as its ``sink``.

    Example::

        log = AuditLog("audit.db", privacy="redacted", signing_key="audit.key", checkpoint_every=1000)
        seq = log.emit(record)          # durable when it returns (synchronous="full")
        log.checkpoint().save("/elsewhere/audit.checkpoint")

    Privacy is applied before anything is written. ``salt`` (or ``RAIL_AUDIT_SALT``) is needed for
    ``privacy="hashed"`` and keys output digests in ``"redacted"``; it is never stored in the log, only a
    fingerprint that stops a second salt being mixed in.

    ``path`` must not exist yet (the log is created), be a rail audit log, or be an empty (0-byte) file.
    An empty file is taken as a new log: it holds nothing that could be lost, SQLite treats it as an empty
    database, and it is what a log being created by another process looks like for a moment — refusing it
    would make concurrent first opens fail at random. Any other existing file is refused unchanged
    (checked read-only first). Read-only tools (verify, report, export, ``checkpoint --latest``) never use
    this class, so they never turn a file into a log.

    ``signing_key`` (a :class:`CheckpointKey` or key file path, or ``RAIL_AUDIT_SIGNING_KEY``) signs
    checkpoints, written automatically every ``checkpoint_every`` records and on demand with
    :meth:`checkpoint`.
    ``synchronous="full"`` (default) fsyncs the WAL at every commit, so a returned append survives power loss;
    ``"normal"`` survives process crashes but may lose the latest commits on power loss.
    """

    def __init__(self, path: str | Path, *, privacy: PrivacyMode | str = PrivacyMode.REDACTED,
                 salt: bytes | str | None = None, signing_key: CheckpointKey | str | Path | None = None,
                 checkpoint_every: int | None = None, synchronous: str = "full",
                 busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.privacy = PrivacyMode.parse(privacy)
        if synchronous not in ("full", "normal"):
            raise AuditError(f"synchronous must be 'full' or 'normal', not {synchronous!r}")
        self._synchronous = synchronous
        self._busy_timeout_s = busy_timeout_s
        salt = salt if salt is not None else os.environ.get(SALT_ENV)
        self._salt = salt.encode("utf-8") if isinstance(salt, str) else salt
        if self.privacy is PrivacyMode.HASHED and not self._salt:
            raise AuditError(f"privacy mode 'hashed' needs a salt: pass salt=... or set {SALT_ENV}")
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
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self.log_id = self._open()
        self._genesis = genesis_hash(self.log_id)

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=self._busy_timeout_s)
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_s * 1000)}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous.upper()}")
        except sqlite3.DatabaseError as exc:
            raise AuditError(f"cannot open audit log {self.path}: {exc}") from None
        self._pid = os.getpid()
        return conn

    def _connection(self) -> sqlite3.Connection:
        # A connection must not cross fork(); a child process opens its own.
        if self._conn is None or self._pid != os.getpid():
            self._conn = self._connect()
        return self._conn

    def _open(self) -> str:
        if self.path.exists():
            _require_file(self.path)
        if self.path.exists() and self.path.stat().st_size > 0:
            # Check read-only first: switching a foreign database to WAL would already modify it.
            readonly, _ = open_log_readonly(self.path)
            readonly.close()
            conn = self._connection()
            meta = _read_meta(conn, self.path)
        else:
            conn = self._connection()
            with self._transaction(conn):
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(statement)
                meta_rows = (("format", LOG_FORMAT), ("log_id", uuid.uuid4().hex), ("created", utc_now()))
                for key, value in meta_rows:
                    conn.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, value))
            meta = _read_meta(conn, self.path)
        if self._salt and self.privacy is not PrivacyMode.FULL:
            # Redacted mode keys provenance digests with the salt too, so both modes keep one salt per log.
            self._check_salt(conn, meta)
        return meta["log_id"]

    def _check_salt(self, conn: sqlite3.Connection, meta: dict[str, str]) -> None:
        assert self._salt
        salt_id = _salt_id(self._salt)
        if "salt_id" not in meta:
            with self._transaction(conn):
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('salt_id', ?)", (salt_id,))
            meta = _read_meta(conn, self.path)
        if meta["salt_id"] != salt_id:
            raise AuditError(f"{self.path} was written with another hashing salt; hashes made with this one "
                             f"would not be comparable — use the original {SALT_ENV}")

    class _Tx:
        def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
            self.conn, self.path = conn, path

        def __enter__(self) -> sqlite3.Connection:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise AuditError(f"audit log {self.path} is busy or unwritable: {exc}") from None
            return self.conn

        def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
            if exc_type is None:
                try:
                    self.conn.execute("COMMIT")
                    return
                except sqlite3.DatabaseError as err:
                    self.conn.execute("ROLLBACK")
                    raise AuditError(f"cannot write audit log {self.path}: {err}") from None
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.DatabaseError):
                raise AuditError(f"cannot write audit log {self.path}: {exc}") from None

    def _transaction(self, conn: sqlite3.Connection) -> AuditLog._Tx:
        return AuditLog._Tx(conn, self.path)

    def emit(self, record: AuditRecord) -> int:  # type: ignore[override]
        """Append one record (privacy applied first) and return its sequence number."""
        return self.append_many([record])[0]

    def append_many(self, records: Iterable[AuditRecord]) -> list[int]:
        """Append records in one transaction (one fsync) and return their sequence numbers, in order."""
        prepared = []
        for record in records:
            stored = apply_privacy(record, self.privacy, self._salt)
            data = canonical_json(stored.to_dict())
            prepared.append((data, stored.time, stored.request_id, stored.verdict))
        if not prepared:
            return []
        with self._lock:
            conn = self._connection()
            with self._transaction(conn):
                row = conn.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
                seq, prev = row if row else (0, self._genesis)
                first = seq + 1
                rows = []
                for data, time, request_id, verdict in prepared:
                    seq += 1
                    digest = entry_hash(prev, seq, data)
                    rows.append((seq, time, request_id, verdict, prev, digest, data))
                    prev = digest
                conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                every = self.checkpoint_every
                if every and seq // every > (first - 1) // every:
                    assert self._key is not None
                    self._store_checkpoint(conn, sign_checkpoint(self._key, self.log_id, seq, prev))
        return list(range(first, seq + 1))

    @staticmethod
    def _store_checkpoint(conn: sqlite3.Connection, checkpoint: Checkpoint) -> None:
        conn.execute("INSERT INTO checkpoints (size, data) VALUES (?, ?)",
                     (checkpoint.size, canonical_json(checkpoint.to_dict()).decode("utf-8")))

    def checkpoint(self) -> Checkpoint:
        """Sign the current size and head, store the checkpoint in the log and return it to save elsewhere."""
        if self._key is None:
            raise AuditError(f"signing a checkpoint needs a key: signing_key=... or {SIGNING_KEY_ENV}")
        with self._lock:
            conn = self._connection()
            with self._transaction(conn):
                size, head = self._head(conn)
                checkpoint = sign_checkpoint(self._key, self.log_id, size, head)
                self._store_checkpoint(conn, checkpoint)
        return checkpoint

    def _head(self, conn: sqlite3.Connection) -> tuple[int, bytes]:
        row = conn.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, self._genesis)

    def head(self) -> tuple[int, str]:
        """Return (number of records, hex head hash)."""
        with self._lock:
            size, head = self._head(self._connection())
        return size, head.hex()

    def __len__(self) -> int:
        return self.head()[0]

    def checkpoints(self) -> list[Checkpoint]:
        """Return the checkpoints stored in the log, oldest first."""
        with self._lock:
            rows = self._connection().execute("SELECT data FROM checkpoints ORDER BY id").fetchall()
        return [_parse_checkpoint(data, f"{self.path} checkpoint") for (data,) in rows]

    def close(self) -> None:
        """Close the connection; a later call reopens it."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BufferedSink:
    """Collect records in memory and append them to a log in batches: one commit per ``max_records`` or
    ``max_delay_s``, and on :meth:`flush`/:meth:`close`.

    Trades durability of the last ``max_delay_s`` seconds (records not yet flushed are lost if the process is
    killed) for throughput: one fsync per batch instead of one per request.
    """

    def __init__(self, log: AuditLog, *, max_records: int = 256, max_delay_s: float = 0.5) -> None:
        if max_records < 1 or max_delay_s <= 0:
            raise AuditError("BufferedSink needs max_records >= 1 and max_delay_s > 0")
        self.log = log
        self.max_records = max_records
        self.max_delay_s = max_delay_s
        self._pending: list[AuditRecord] = []
        self._cond = threading.Condition()
        self._closed = False
        self._error: BaseException | None = None
        self._write_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="rail-audit-flush", daemon=True)
        self._thread.start()

    def emit(self, record: AuditRecord) -> None:
        """Queue one record; it is committed within ``max_delay_s`` or when the batch is full."""
        with self._cond:
            if self._closed:
                raise AuditError("the buffered audit sink is closed")
            if self._error is not None:
                raise AuditError(f"an earlier audit flush failed: {self._error}")
            self._pending.append(record)
            if len(self._pending) >= self.max_records:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or len(self._pending) >= self.max_records,
                                    timeout=self.max_delay_s)
                closed = self._closed
            try:
                self._write()
            except BaseException as exc:  # surfaced on the next emit/flush instead of dying silently
                with self._cond:
                    self._error = exc
            if closed:
                return

    def _write(self) -> None:
        # One writer at a time, taking the queue under the same lock, keeps batches in emission order.
        with self._write_lock:
            with self._cond:
                batch, self._pending = self._pending, []
            if batch:
                self.log.append_many(batch)

    def flush(self) -> None:
        """Commit everything queued so far before returning."""
        with self._cond:
            error = self._error
        if error is not None:
            raise AuditError(f"an earlier audit flush failed: {error}")
        self._write()

    def close(self) -> None:
        """Flush and stop the background thread; the log itself stays open."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify()
        self._thread.join()
        self.flush()

    def __enter__(self) -> BufferedSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
