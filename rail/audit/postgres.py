"""The PostgreSQL audit store: one log in one database, appended to by any number of hosts.

Tables (created on first use, in the first schema of the connection's ``search_path`` — ``public`` unless
the URL says otherwise, e.g. ``?options=-csearch_path%3Daudit``):

- ``rail_audit_meta(key, value)``: ``format`` = ``rail-audit-log/1`` (its number is the schema version,
  checked on every open), ``log_id``, ``created``, ``salt_id``;
- ``rail_audit_records(seq, time, request_id, verdict, prev, hash, data)``: the same canonical JSON bytes
  and chain hashes as the SQLite store, ``seq`` the primary key;
- ``rail_audit_checkpoints(id, size, data)``: signed checkpoints as JSON.

A trigger on each table refuses UPDATE, DELETE and TRUNCATE for every role, so changing history needs a
role that owns the tables (and so may disable the trigger) — and verification still shows the change.

Appends: one transaction takes a transaction-scoped advisory lock keyed by the records table, reads the head,
inserts the batch (one binary COPY) and the checkpoint that is due, and commits; the lock
is released by the commit. Writers on every host therefore form one chain: no fork, no gap (and the primary
key on ``seq`` would refuse a fork even from a writer that skipped the lock). A failed connection, a server
restart, a full disk or a missing privilege raise :class:`rail.errors.AuditWriteError`; nothing of the
failed batch is stored, and the next append reconnects and continues from the head in the database.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from rail.audit.chain import Checkpoint, Entry, EntryRow, genesis_hash, link
from rail.audit.record import utc_now
from rail.audit.store import LOG_FORMAT, CheckpointDue, ImportSource, LogMeta, PreparedRecord, log_meta
from rail.canonical import canonical_json
from rail.errors import AuditCorruptError, AuditError, AuditWriteError

__all__ = ["SCHEMA", "PostgresStore", "import_postgres", "public_url"]

_Conn: TypeAlias = "psycopg.Connection[tuple[Any, ...]]"

SCHEMA = """
CREATE TABLE rail_audit_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE rail_audit_records (
    seq bigint PRIMARY KEY,
    time text NOT NULL,
    request_id text NOT NULL,
    verdict text NOT NULL,
    prev bytea NOT NULL,
    hash bytea NOT NULL,
    data bytea NOT NULL
);
CREATE INDEX rail_audit_records_time ON rail_audit_records (time);
CREATE TABLE rail_audit_checkpoints (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    size bigint NOT NULL,
    data text NOT NULL
);
CREATE FUNCTION rail_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'rail audit tables are append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON rail_audit_meta
    FOR EACH ROW EXECUTE FUNCTION rail_audit_append_only();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON rail_audit_meta
    FOR EACH STATEMENT EXECUTE FUNCTION rail_audit_append_only();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON rail_audit_records
    FOR EACH ROW EXECUTE FUNCTION rail_audit_append_only();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON rail_audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION rail_audit_append_only();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON rail_audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION rail_audit_append_only();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON rail_audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION rail_audit_append_only();
"""
_INSERT_RECORD = ("INSERT INTO rail_audit_records (seq, time, request_id, verdict, prev, hash, data) "
                  "VALUES (%s, %s, %s, %s, %s, %s, %s)")
# Binary COPY: no hex encoding of the hashes and record bytes, about twice as fast as text COPY or INSERTs.
_COPY_RECORDS = ("COPY rail_audit_records (seq, time, request_id, verdict, prev, hash, data) FROM STDIN "
                 "(FORMAT BINARY)")
_RECORD_TYPES = ["int8", "text", "text", "text", "bytea", "bytea", "bytea"]
_INSERT_CHECKPOINT = "INSERT INTO rail_audit_checkpoints (size, data) VALUES (%s, %s)"
_HEAD = "SELECT seq, hash FROM rail_audit_records ORDER BY seq DESC LIMIT 1"
# Held while the tables are created, so two first opens at once do not both try.
_CREATE_LOCK = "SELECT pg_advisory_xact_lock(hashtext('rail.audit/create'))"


def public_url(url: str) -> str:
    """Return ``url`` without its password (in the authority or as a ``password=`` parameter)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"{url.split('://', 1)[0]}://(a URL that cannot be parsed)"
    netloc = parts.netloc
    if "@" in netloc:
        credentials, host = netloc.rsplit("@", 1)
        netloc = f"{credentials.split(':', 1)[0]}@{host}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _conninfo(url: str, application: str) -> str:
    given = conninfo_to_dict(url)
    extra: dict[str, str] = {"application_name": application}
    if "connect_timeout" not in given:
        # libpq waits for ever by default; a database that does not answer must fail the request instead.
        extra["connect_timeout"] = "10"
    return make_conninfo(url, **extra)


def _cause(exc: psycopg.Error) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class PostgresStore:
    """Keep an audit log in a PostgreSQL database; see the module docstring for tables and locking.

    ``writable=True`` creates the tables when the database has none yet (the role needs CREATE on the
    schema; an appending role that may not create them gets a message saying who must run it first).
    ``writable=False`` never creates or changes anything and works with a role that may only SELECT.
    """

    def __init__(self, url: str, *, writable: bool = False, busy_timeout_s: float = 30.0,
                 synchronous: str = "full") -> None:
        self.url = url
        self.location = public_url(url)
        self._writable = writable
        self._busy_timeout_s = busy_timeout_s
        self._synchronous = synchronous
        self._lock = threading.RLock()
        self._conn: _Conn | None = None
        self._pid = -1
        self._append_lock_key = 0
        try:
            conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise AuditError(f"{self.location} is not a PostgreSQL URL libpq can read ({_cause(exc)}); "
                             "write it as postgresql://USER@HOST[:PORT]/DATABASE") from None
        conn = self._connection()
        action = "open"
        try:
            exists = conn.execute("SELECT to_regclass('rail_audit_meta') IS NOT NULL").fetchone()
            if not (exists and exists[0]):
                if not writable:
                    raise AuditError(f"{self.location} is not a rail audit log: the database has no "
                                     "rail_audit_* tables in the schema this connection uses")
                action = "create"
                self._create(conn)
                action = "open"
            self.meta = self._read_meta(conn)
            key = conn.execute("SELECT 'rail_audit_records'::regclass::oid::bigint").fetchone()
        except psycopg.Error as exc:
            self._drop()
            raise self._error(exc, action) from None
        assert key is not None
        self._append_lock_key = int(key[0])

    # -- connections -------------------------------------------------------------------------------------

    def _connect(self) -> _Conn:
        try:
            conn = psycopg.connect(_conninfo(self.url, "rail-audit"), autocommit=True)
            conn.execute(f"SET lock_timeout = {int(self._busy_timeout_s * 1000)}")
            # A walk over a large log looks costly enough to the planner to JIT-compile; it only streams rows.
            conn.execute("SET jit = off")
            # A table scan must start at the first page, not join another scan midway, to keep append order.
            conn.execute("SET synchronize_seqscans = off")
            if self._synchronous == "normal":
                conn.execute("SET synchronous_commit = off")
        except psycopg.Error as exc:
            error = AuditWriteError if self._writable else AuditError
            raise error(f"cannot connect to the audit database {self.location}: {_cause(exc)}") from None
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _connection(self) -> _Conn:
        # A connection must not cross fork(), and one the server dropped is replaced on the next call.
        if self._conn is None or self._pid != os.getpid() or self._conn.closed or self._conn.broken:
            return self._connect()
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    def close(self) -> None:
        """Close the connection; a later call reopens it."""
        with self._lock:
            self._drop()

    def _error(self, exc: psycopg.Error, action: str) -> AuditError:
        """Turn a driver error into rail's: AuditWriteError for writes, AuditCorruptError for damaged data."""
        if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)) or self._conn is None \
                or self._conn.broken:
            self._drop()
        cause = _cause(exc)
        if isinstance(exc, (pg_errors.DataCorrupted, pg_errors.IndexCorrupted)):
            return AuditCorruptError(f"the audit database {self.location} reports damaged data: {cause}")
        if action != "write":
            if isinstance(exc, pg_errors.InsufficientPrivilege) and action == "create":
                return AuditError(f"{self.location}: {cause} — the rail_audit_* tables are created by the "
                                  "role that owns the schema: open the log once with that role's URL, then "
                                  "grant the appending role INSERT and SELECT (see the README)")
            if isinstance(exc, pg_errors.InsufficientPrivilege):
                return AuditError(f"{self.location}: {cause} — this role needs SELECT on the rail_audit_* "
                                  "tables (and INSERT to append): have their owner grant it (see the README)")
            return AuditError(f"cannot {'read' if action == 'read' else 'open'} the audit log at "
                              f"{self.location}: {cause}")
        if isinstance(exc, pg_errors.DiskFull):
            why = "the database server's disk is full"
        elif isinstance(exc, pg_errors.InsufficientPrivilege):
            why = f"this role may not write the audit tables ({cause}); grant it INSERT and SELECT"
        elif isinstance(exc, pg_errors.LockNotAvailable):
            why = f"another writer held the log for more than {self._busy_timeout_s:g} s"
        elif isinstance(exc, pg_errors.UniqueViolation):
            why = f"another writer appended without rail's lock ({cause})"
        else:
            why = f"the database cannot take records now ({cause})"
        return AuditWriteError(f"cannot write the audit log at {self.location}: {why}; this record was not "
                               "written, records already committed are intact")

    # -- metadata ----------------------------------------------------------------------------------------

    def _create(self, conn: _Conn) -> None:
        with conn.transaction():
            conn.execute(_CREATE_LOCK)
            row = conn.execute("SELECT to_regclass('rail_audit_meta') IS NOT NULL").fetchone()
            if row and row[0]:
                return  # another process created them while this one waited
            conn.execute(SCHEMA)
            conn.cursor().executemany("INSERT INTO rail_audit_meta VALUES (%s, %s)",
                                      [("format", LOG_FORMAT), ("log_id", uuid.uuid4().hex),
                                       ("created", utc_now())])

    def _read_meta(self, conn: _Conn) -> LogMeta:
        rows = conn.execute("SELECT key, value FROM rail_audit_meta").fetchall()
        return log_meta({str(k): str(v) for k, v in rows}, self.location)

    def record_salt(self, salt_id: str) -> str:
        """Store the salt fingerprint if the log has none yet; return the one the log holds."""
        with self._lock:
            try:
                conn = self._connection()
                conn.execute("INSERT INTO rail_audit_meta VALUES ('salt_id', %s) "
                             "ON CONFLICT (key) DO NOTHING", (salt_id,))
                self.meta = self._read_meta(conn)
            except psycopg.Error as exc:
                raise self._error(exc, "write") from None
        assert self.meta.salt_id is not None
        return self.meta.salt_id

    # -- writing -----------------------------------------------------------------------------------------

    @contextmanager
    def _appending(self) -> Iterator[tuple[_Conn, int, bytes]]:
        """Open a transaction holding the append lock; yield (connection, size, head)."""
        with self._lock:
            try:
                conn = self._connection()
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._append_lock_key,))
                    # A statement of its own after the lock: in READ COMMITTED it sees every commit before.
                    row = conn.execute(_HEAD).fetchone()
                    if row is None:
                        yield conn, 0, genesis_hash(self.meta.log_id)
                    else:
                        yield conn, int(row[0]), bytes(row[1])
            except psycopg.Error as exc:
                raise self._error(exc, "write") from None

    def append_many(self, records: Sequence[PreparedRecord],
                    checkpoint: CheckpointDue | None = None) -> range:
        """Chain ``records`` after the head in one locked transaction; return their sequence numbers."""
        if not records:
            return range(0)
        with self._appending() as (conn, size, head):
            entries = link(size, head, [r.data for r in records])
            rows = [(e.seq, r.time, r.request_id, r.verdict, e.prev, e.hash, e.data)
                    for e, r in zip(entries, records, strict=True)]
            cursor = conn.cursor()
            if len(rows) == 1:
                cursor.execute(_INSERT_RECORD, rows[0])
            else:
                with cursor.copy(_COPY_RECORDS) as copy:
                    copy.set_types(_RECORD_TYPES)
                    for row in rows:
                        copy.write_row(row)
            last = entries[-1]
            made = checkpoint(size + 1, last.seq, last.hash) if checkpoint else None
            if made is not None:
                cursor.execute(_INSERT_CHECKPOINT, (made.size, canonical_json(made.to_dict()).decode()))
        return range(size + 1, last.seq + 1)

    def add_checkpoint(self, sign: Callable[[int, bytes], Checkpoint]) -> Checkpoint:
        """Sign (size, head) under the append lock, store the checkpoint and return it."""
        with self._appending() as (conn, size, head):
            made = sign(size, head)
            conn.execute(_INSERT_CHECKPOINT, (made.size, canonical_json(made.to_dict()).decode()))
        return made

    # -- reading -----------------------------------------------------------------------------------------

    def head(self) -> tuple[int, bytes]:
        """Return (highest sequence number, its hash) — (0, genesis hash) for an empty log."""
        with self._lock:
            try:
                row = self._connection().execute(_HEAD).fetchone()
            except psycopg.Error as exc:
                raise self._error(exc, "read") from None
        if row is None:
            return 0, genesis_hash(self.meta.log_id)
        return int(row[0]), bytes(row[1])

    def iter_entries(self, from_seq: int | None = None, *,
                     ordered: bool = True) -> Generator[EntryRow, None, None]:
        """Yield the stored entries (all, or those with ``seq >= from_seq``) in order, exactly as stored.

        Streams with ``COPY … TO STDOUT`` in binary: the server sends rows as fast as the client reads them,
        with no round trip per batch. ``ordered=False`` streams the table as it lies on disk, without the
        index: appends are serialized, so that is sequence order until a row is updated (its new version lies
        elsewhere), and about a quarter faster. No other query may run on this store until the iteration
        ends (or the generator is closed).
        """
        where = "" if from_seq is None else f"WHERE seq >= {int(from_seq)}"
        if ordered:
            query = f"SELECT seq, prev, hash, data FROM rail_audit_records {where} ORDER BY seq"
        else:
            query = f"SELECT seq, prev, hash, data FROM rail_audit_records {where}"
        try:
            conn = self._connection()
            with conn.transaction(), conn.cursor().copy(
                    f"COPY ({query}) TO STDOUT (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "bytea", "bytea", "bytea"])
                yield from copy.rows()
        except psycopg.Error as exc:
            raise self._error(exc, "read") from None

    def entry(self, seq: int) -> Entry | None:
        """Return the stored entry numbered ``seq``, or None."""
        with self._lock:
            try:
                row = self._connection().execute(
                    "SELECT seq, prev, hash, data FROM rail_audit_records WHERE seq = %s", (seq,)).fetchone()
            except psycopg.Error as exc:
                raise self._error(exc, "read") from None
        if row is None:
            return None
        return Entry(int(row[0]), bytes(row[1]), bytes(row[2]), bytes(row[3]))

    def checkpoints(self) -> list[bytes]:
        """Return the stored checkpoints as their JSON bytes, oldest first."""
        with self._lock:
            try:
                rows = self._connection().execute(
                    "SELECT data FROM rail_audit_checkpoints ORDER BY id").fetchall()
            except psycopg.Error as exc:
                raise self._error(exc, "read") from None
        return [str(data).encode("utf-8") for (data,) in rows]

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Hold one REPEATABLE READ, READ ONLY transaction: every read inside sees the same commits."""
        with self._lock:
            try:
                conn = self._connection()
                with conn.transaction():
                    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    yield
            except psycopg.Error as exc:
                raise self._error(exc, "read") from None

    def damage(self) -> str | None:
        """PostgreSQL checks its own pages; damage it finds surfaces as an error from the reads."""
        return None


def import_postgres(url: str, source: ImportSource) -> None:
    """Create the tables and load an export into them in one transaction: all of it, or nothing."""
    location = public_url(url)
    try:
        conn = psycopg.connect(_conninfo(url, "rail-audit-import"), autocommit=True)
    except psycopg.Error as exc:
        raise AuditError(f"cannot connect to the audit database {location}: {_cause(exc)}") from None
    try:
        with conn.transaction():
            conn.execute(_CREATE_LOCK)
            row = conn.execute("SELECT to_regclass('rail_audit_meta') IS NOT NULL").fetchone()
            if row and row[0]:
                raise AuditError(f"{location} already holds a rail audit log; import into a database (or "
                                 "schema) without one (an import never modifies a log)")
            conn.execute(SCHEMA)
            meta, items = source()
            cursor = conn.cursor()
            cursor.executemany("INSERT INTO rail_audit_meta VALUES (%s, %s)", [("format", LOG_FORMAT),
                                                                              *meta.items()])
            checkpoints = []
            with cursor.copy(_COPY_RECORDS) as copy:
                copy.set_types(_RECORD_TYPES)
                for item in items:
                    if isinstance(item, Checkpoint):
                        checkpoints.append((item.size, canonical_json(item.to_dict()).decode()))
                        continue
                    entry, record = item
                    copy.write_row((entry.seq, record.time, record.request_id, record.verdict, entry.prev,
                                    entry.hash, entry.data))
            cursor.executemany(_INSERT_CHECKPOINT, checkpoints)
    except psycopg.Error as exc:
        raise AuditWriteError(f"cannot import into {location}: {_cause(exc)}; nothing was imported") from None
    finally:
        conn.close()
