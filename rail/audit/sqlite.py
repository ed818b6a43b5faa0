"""The SQLite audit store: one file in WAL mode, for one host and any number of processes on it.

Layout:

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

import os
import sqlite3
import tempfile
import threading
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rail.audit.chain import Checkpoint, Entry, EntryRow, genesis_hash, link
from rail.audit.record import utc_now
from rail.audit.store import LOG_FORMAT, CheckpointDue, ImportSource, LogMeta, PreparedRecord, log_meta
from rail.canonical import canonical_json
from rail.errors import AuditCorruptError, AuditError, AuditWriteError

__all__ = ["SQLiteStore", "import_sqlite"]

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
_INSERT_RECORD = "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)"
_INSERT_CHECKPOINT = "INSERT INTO checkpoints (size, data) VALUES (?, ?)"
_HEAD = "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1"
_SQLITE_MAGIC = b"SQLite format 3\x00"
# How many pages after the first are searched for rail's metadata when the first page is unreadable: the
# meta table is created first, so its rows sit on one of the first pages.
_SNIFF_PAGES = 8


def column_bytes(value: object) -> bytes:
    """Return a stored column as bytes: rail writes BLOBs, but an edit through SQL may leave TEXT or a number.

    Comparing and hashing these bytes means such an edit is reported as tampering instead of crashing.
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return repr(value).encode("utf-8")


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    name = getattr(exc, "sqlite_errorname", "")
    text = str(exc)
    return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text \
        or "not a database" in text


def _has_wal(path: Path) -> bool:
    try:
        return os.path.getsize(f"{path}-wal") > 0
    except OSError:
        return False


def file_damage(path: Path) -> str | None:
    """Describe how the file at ``path`` is damaged as a SQLite database, judged from its header alone.

    While a write-ahead log holds frames, the newest pages (and the true size) live there and the file's
    header may be older — a checkpoint cut off by a full disk leaves exactly that — so the size is only
    judged when there is no WAL content.
    """
    try:
        with path.open("rb") as handle:
            header = handle.read(100)
            size = os.fstat(handle.fileno()).st_size
            if header.startswith(_SQLITE_MAGIC):
                page_size = int.from_bytes(header[16:18], "big")
                page_size = 65536 if page_size == 1 else page_size
                pages = int.from_bytes(header[28:32], "big")
                # The page count in the header is only maintained when these two counters agree.
                valid = header[24:28] == header[92:96]
                expected = page_size * pages
                if valid and pages and size < expected and not _has_wal(path):
                    return (f"the file is cut short: it is {size:,} bytes but its header records {pages:,} "
                            f"pages of {page_size:,} bytes ({expected:,} bytes), so the last "
                            f"{expected - size:,} bytes are missing")
                return None
            if not header.strip(b"\x00") and size >= 4096:
                handle.seek(0)
                window = handle.read(65536 * (_SNIFF_PAGES + 1))
                if LOG_FORMAT.encode() in window:
                    return ("its first page was overwritten with zeros: the database header and the table "
                            "directory are gone")
    except OSError:
        return None
    return None


def _require_file(path: Path) -> None:
    if path.is_dir():
        raise AuditError(f"audit log {path} is a directory, not a file")
    if not path.exists():
        raise AuditError(f"audit log {path} does not exist")
    if not path.is_file():
        raise AuditError(f"audit log {path} is not a regular file")


def _write_error(exc: sqlite3.Error, path: Path, busy_timeout_s: float) -> AuditWriteError:
    name = getattr(exc, "sqlite_errorname", "")
    text = str(exc)
    if name == "SQLITE_FULL" or "disk is full" in text:
        return AuditWriteError(f"the disk holding audit log {path} is full ({text}): this record was not "
                               "written, records already committed are intact; free space and retry")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return AuditWriteError(f"audit log {path} stayed locked by another writer for {busy_timeout_s:g} s "
                               f"({text}); this record was not written")
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return AuditWriteError(f"audit log {path} is read-only here ({text}); this record was not written")
    return AuditWriteError(f"cannot write audit log {path}: {text}; this record was not written")


class SQLiteStore:
    """Keep an audit log in one SQLite file; see the module docstring for the layout.

    ``writable=False`` opens the file read-only and never changes it (never creates it, never switches it to
    WAL). ``writable=True`` creates the log when ``path`` does not exist or is an empty (0-byte) file — an
    empty file holds nothing that could be lost, SQLite treats it as an empty database, and it is what a log
    being created by another process looks like for a moment, so refusing it would make concurrent first
    opens fail at random. Any other existing file that is not a rail log is refused unchanged (checked
    read-only first).
    """

    def __init__(self, path: Path, *, writable: bool = False, busy_timeout_s: float = 30.0,
                 synchronous: str = "full") -> None:
        self.path = Path(path)
        self.location = str(path)
        self._writable = writable
        self._busy_timeout_s = busy_timeout_s
        self._synchronous = synchronous
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        if self.path.exists():
            _require_file(self.path)
        if writable and not (self.path.exists() and self.path.stat().st_size > 0):
            self.meta = self._create()
            return
        if not self.path.exists():
            _require_file(self.path)
        # Check read-only first: switching a foreign database to WAL would already modify it.
        self.meta = self._read_meta(self._connect_readonly())
        if writable:
            self._close_connection()

    # -- connections -------------------------------------------------------------------------------------

    def _connect_readonly(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.DatabaseError as exc:
            raise AuditError(f"cannot open audit log {self.path}: {exc}") from None
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _connect_writable(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=self._busy_timeout_s)
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_s * 1000)}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous.upper()}")
        except sqlite3.DatabaseError as exc:
            raise _write_error(exc, self.path, self._busy_timeout_s) from None
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _connection(self) -> sqlite3.Connection:
        # A connection must not cross fork(); a child process opens its own.
        if self._conn is None or self._pid != os.getpid():
            return self._connect_writable() if self._writable else self._connect_readonly()
        return self._conn

    def _close_connection(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    def close(self) -> None:
        """Close the connection; a later call reopens it."""
        with self._lock:
            self._close_connection()

    # -- metadata ----------------------------------------------------------------------------------------

    def _read_meta(self, conn: sqlite3.Connection) -> LogMeta:
        try:
            values = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            damage = file_damage(self.path)
            if damage is not None:
                raise AuditCorruptError(f"{self.path} is a damaged rail audit log: {damage}") from None
            if _is_corruption(exc) and self._has_rail_tables(conn):
                raise AuditCorruptError(f"{self.path} is a damaged rail audit log: its metadata cannot be "
                                        f"read ({exc})") from None
            values = {}
        return log_meta(values, str(self.path))

    @staticmethod
    def _has_rail_tables(conn: sqlite3.Connection) -> bool:
        try:
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError:
            return False
        return {"meta", "records", "checkpoints"} <= names

    def _create(self) -> LogMeta:
        conn = self._connect_writable()
        with self._transaction(conn):
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)
            rows = (("format", LOG_FORMAT), ("log_id", uuid.uuid4().hex), ("created", utc_now()))
            conn.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", rows)
        return self._read_meta(conn)

    def record_salt(self, salt_id: str) -> str:
        """Store the salt fingerprint if the log has none yet; return the one the log holds."""
        with self._lock:
            conn = self._connection()
            with self._transaction(conn):
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('salt_id', ?)", (salt_id,))
            self.meta = self._read_meta(conn)
        assert self.meta.salt_id is not None
        return self.meta.salt_id

    # -- writing -----------------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _write_error(exc, self.path, self._busy_timeout_s) from None
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            # SQLite rolls back by itself on some errors (a full disk among them): end only what is open.
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            if isinstance(exc, sqlite3.Error):
                raise _write_error(exc, self.path, self._busy_timeout_s) from None
            raise

    def _head(self, conn: sqlite3.Connection) -> tuple[int, bytes]:
        row = conn.execute(_HEAD).fetchone()
        return (row[0], column_bytes(row[1])) if row else (0, genesis_hash(self.meta.log_id))

    def append_many(self, records: Sequence[PreparedRecord],
                    checkpoint: CheckpointDue | None = None) -> range:
        """Chain ``records`` after the head in one ``BEGIN IMMEDIATE`` transaction; return their numbers."""
        if not records:
            return range(0)
        with self._lock:
            conn = self._connection()
            with self._transaction(conn):
                size, head = self._head(conn)
                entries = link(size, head, [r.data for r in records])
                conn.executemany(_INSERT_RECORD, [
                    (e.seq, r.time, r.request_id, r.verdict, e.prev, e.hash, e.data)
                    for e, r in zip(entries, records, strict=True)])
                last = entries[-1]
                made = checkpoint(size + 1, last.seq, last.hash) if checkpoint else None
                if made is not None:
                    conn.execute(_INSERT_CHECKPOINT, (made.size, canonical_json(made.to_dict()).decode()))
        return range(size + 1, last.seq + 1)

    def add_checkpoint(self, sign: Callable[[int, bytes], Checkpoint]) -> Checkpoint:
        """Sign the current (size, head) inside one transaction, store the checkpoint and return it."""
        with self._lock:
            conn = self._connection()
            with self._transaction(conn):
                made = sign(*self._head(conn))
                conn.execute(_INSERT_CHECKPOINT, (made.size, canonical_json(made.to_dict()).decode()))
        return made

    # -- reading -----------------------------------------------------------------------------------------

    def _read_error(self, exc: sqlite3.DatabaseError) -> AuditError:
        if _is_corruption(exc):
            damage = file_damage(self.path)
            return AuditCorruptError(f"{self.path} is damaged: {damage or exc}")
        return AuditError(f"cannot read audit log {self.path}: {exc}")

    def head(self) -> tuple[int, bytes]:
        """Return (highest sequence number, its hash) — (0, genesis hash) for an empty log."""
        with self._lock:
            try:
                return self._head(self._connection())
            except sqlite3.DatabaseError as exc:
                raise self._read_error(exc) from None

    def iter_entries(self, from_seq: int | None = None, *,
                     ordered: bool = True) -> Generator[EntryRow, None, None]:
        """Yield the stored entries (all, or those with ``seq >= from_seq``) in order, exactly as stored.

        ``seq`` is the table's rowid: the rows always lie in sequence order, and ``ordered`` changes nothing.
        """
        where, params = ("", ()) if from_seq is None else ("WHERE seq >= ?", (from_seq,))
        try:
            cursor = self._connection().execute(
                f"SELECT seq, prev, hash, data FROM records {where} ORDER BY seq", params)
            for row in cursor:
                seq, prev, digest, data = row
                if type(data) is bytes and type(prev) is bytes and type(digest) is bytes:
                    yield row
                else:
                    # Someone stored a value of another type through SQL; its bytes still show the edit.
                    yield seq, column_bytes(prev), column_bytes(digest), column_bytes(data)
        except sqlite3.DatabaseError as exc:
            raise self._read_error(exc) from None

    def entry(self, seq: int) -> Entry | None:
        """Return the stored entry numbered ``seq``, or None."""
        with self._lock:
            try:
                row = self._connection().execute("SELECT seq, prev, hash, data FROM records WHERE seq = ?",
                                                 (seq,)).fetchone()
            except sqlite3.DatabaseError as exc:
                raise self._read_error(exc) from None
        return None if row is None else Entry(row[0], *(column_bytes(v) for v in row[1:]))

    def checkpoints(self) -> list[bytes]:
        """Return the stored checkpoints as their JSON bytes, oldest first."""
        with self._lock:
            try:
                rows = self._connection().execute("SELECT data FROM checkpoints ORDER BY id").fetchall()
            except sqlite3.DatabaseError as exc:
                raise self._read_error(exc) from None
        return [column_bytes(data) for (data,) in rows]

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Hold one read transaction, so every read inside sees the log as of its first read."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN")
            except sqlite3.DatabaseError as exc:
                raise self._read_error(exc) from None
            try:
                yield
            finally:
                if conn.in_transaction:
                    try:
                        conn.execute("COMMIT")
                    except sqlite3.Error:
                        pass  # a read transaction holds nothing to lose; the read error itself was raised

    def damage(self) -> str | None:
        """Describe damage the record walk does not touch: a file cut short, a broken lookup index."""
        found = file_damage(self.path)
        if found is not None:
            return found
        # Verification reads the tables, not their indexes; scanning both (a few ms per 100,000 records)
        # means a page overwritten anywhere in the file is reported.
        with self._lock:
            conn = self._connection()
            for index, table in (("records_time", "records"), ("sqlite_autoindex_meta_1", "meta")):
                try:
                    conn.execute(f"SELECT count(*) FROM {table} INDEXED BY {index}").fetchone()
                except sqlite3.DatabaseError as exc:
                    return f"its lookup index {index} is damaged ({exc})"
        return None


def import_sqlite(dest: Path, source: ImportSource) -> None:
    """Build a new SQLite log at ``dest`` from ``items``; it appears all at once or not at all."""
    if dest.exists():
        raise AuditError(f"{dest} already exists; import into a new file (an import never modifies a log)")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as exc:
        where = (f"the directory {dest.parent} does not exist" if not dest.parent.is_dir()
                 else exc.strerror)
        raise AuditError(f"cannot create {dest}: {where}") from None
    os.close(fd)
    try:
        _fill(Path(tmp), source)
        # Link rather than rename so that a log created at dest meanwhile is never replaced.
        try:
            os.link(tmp, dest)
        except FileExistsError:
            raise AuditError(f"{dest} was created during the import; nothing was changed") from None
        except OSError as exc:
            raise AuditWriteError(f"cannot create {dest}: {exc.strerror}") from None
    finally:
        for leftover in (tmp, tmp + "-wal", tmp + "-shm", tmp + "-journal"):
            if os.path.exists(leftover):
                os.unlink(leftover)


def _fill(tmp: Path, source: ImportSource) -> None:
    meta, items = source()
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        # The temporary file is private until linked into place, so no WAL or fsync per row is needed.
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("BEGIN")
        for statement in filter(str.strip, _SCHEMA.split(";")):
            conn.execute(statement)
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [("format", LOG_FORMAT), *meta.items()])
        for item in items:
            if isinstance(item, Checkpoint):
                conn.execute(_INSERT_CHECKPOINT, (item.size, canonical_json(item.to_dict()).decode()))
                continue
            entry, record = item
            conn.execute(_INSERT_RECORD, (entry.seq, record.time, record.request_id, record.verdict,
                                          entry.prev, entry.hash, entry.data))
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:
        raise _write_error(exc, tmp, 0) from None
    finally:
        conn.close()
    with open(tmp, "rb+") as done:
        os.fsync(done.fileno())
