"""Where the gate sends audit records: the sink protocol, plain JSON lines, batching, and opening by target.

Every sink raises :class:`rail.errors.AuditWriteError` when a record cannot be written (disk full, database
down), so a caller that answers requests can fail closed instead of answering without a record.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

from rail.audit.log import AuditLog
from rail.audit.privacy import PrivacyMode, apply_privacy, require_salt
from rail.audit.record import AuditRecord
from rail.audit.store import Target, is_url
from rail.canonical import canonical_json
from rail.errors import AuditError, AuditWriteError
from rail.signing import CheckpointKey

__all__ = ["AuditSink", "BufferedSink", "JsonlSink", "open_sink"]


@runtime_checkable
class AuditSink(Protocol):
    """Anything that stores audit records; the gate calls ``emit`` once per request."""

    def emit(self, record: AuditRecord) -> object:
        """Store one record (applying the sink's privacy mode first); raise AuditWriteError if it cannot."""


def _os_write_error(exc: OSError, path: Path, what: str) -> AuditWriteError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return AuditWriteError(f"the disk holding audit file {path} is full ({exc.strerror}): {what} was not "
                               "written, records already written are intact; free space and retry")
    return AuditWriteError(f"cannot write audit file {path}: {exc.strerror}; {what} was not written")


class JsonlSink:
    """Append each record as one canonical JSON line to a file; the plain, chain-less sink.

    Each line is written with a single ``write`` on a file opened in append mode, so lines from several
    processes do not interleave. ``fsync=True`` makes every record durable before ``emit`` returns. When the
    disk fills up mid-line the partial line is cut off again, so the file keeps only whole records (with
    several processes appending, a line another one wrote in that same instant would be cut with it: use
    :class:`rail.audit.AuditLog` for several writers). For a tamper-evident log use AuditLog too.
    """

    def __init__(self, path: str | Path, privacy: PrivacyMode | str = PrivacyMode.REDACTED, *,
                 salt: bytes | str | None = None, fsync: bool = False) -> None:
        self.path = Path(path)
        self.privacy = PrivacyMode.parse(privacy)
        self.fsync = fsync
        self._salt = require_salt(self.privacy, salt)  # fail at construction, not at the first request
        self._lock = threading.Lock()
        try:
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise AuditError(f"cannot open audit file {self.path}: {exc.strerror}") from exc

    def emit(self, record: AuditRecord) -> None:
        """Append ``record`` after applying this sink's privacy mode; AuditWriteError if it cannot."""
        line = canonical_json(apply_privacy(record, self.privacy, self._salt).to_dict()) + b"\n"
        what = f"record {record.request_id}"
        with self._lock:
            if self._fd is None:
                raise AuditError(f"audit file {self.path} is closed")
            try:
                written = os.write(self._fd, line)
            except OSError as exc:
                raise _os_write_error(exc, self.path, what) from None
            if written < len(line):
                # A short write to a regular file means the disk (or quota) ran out mid-line: take the
                # fragment back so the file still holds only whole records.
                try:
                    os.ftruncate(self._fd, os.fstat(self._fd).st_size - written)
                except OSError:
                    pass
                raise _os_write_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), self.path, what)
            if self.fsync:
                try:
                    os.fsync(self._fd)
                except OSError as exc:
                    raise _os_write_error(exc, self.path, what) from None

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


class BufferedSink:
    """Collect records in memory and append them to a log in batches: one commit per ``max_records`` or
    ``max_delay_s``, and on :meth:`flush`/:meth:`close`.

    Trades durability of the last ``max_delay_s`` seconds (records not yet flushed are lost if the process is
    killed) for throughput: one commit per batch instead of one per request. When a batch cannot be written
    it stays queued and is retried every ``max_delay_s``; until a retry succeeds, :meth:`emit` raises
    AuditWriteError, so the requests that follow fail closed.
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
        self._error: AuditError | None = None
        self._write_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="rail-audit-flush", daemon=True)
        self._thread.start()

    def emit(self, record: AuditRecord) -> None:
        """Queue one record; it is committed within ``max_delay_s`` or when the batch is full."""
        with self._cond:
            if self._closed:
                raise AuditError("the buffered audit sink is closed")
            if self._error is not None:
                raise AuditWriteError(f"the audit log cannot take records now: {self._error} "
                                      f"({len(self._pending)} record(s) queued for retry)")
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
            except AuditError:
                pass  # kept in self._error and surfaced on the next emit/flush
            if closed:
                return

    def _write(self) -> None:
        # One writer at a time, taking the queue under the same lock, keeps batches in emission order.
        with self._write_lock:
            with self._cond:
                batch = list(self._pending)
            if not batch:
                return
            try:
                self.log.append_many(batch)
            except AuditError as exc:
                with self._cond:
                    self._error = exc
                raise
            with self._cond:
                del self._pending[: len(batch)]
                self._error = None

    def flush(self) -> None:
        """Commit everything queued so far before returning; AuditWriteError if the log cannot take it."""
        try:
            self._write()
        except AuditError as exc:
            raise AuditWriteError(f"cannot flush buffered audit records: {exc}") from None

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


def open_sink(target: Target, *, privacy: PrivacyMode | str = PrivacyMode.REDACTED,
              salt: bytes | str | None = None, signing_key: CheckpointKey | str | Path | None = None,
              checkpoint_every: int | None = None) -> JsonlSink | AuditLog:
    """Open the sink ``rail generate --audit-log`` (and the server) writes to: path, ``.jsonl`` path or URL.

    A ``postgresql://`` URL or any other path gives the hash-chained :class:`AuditLog`; a path ending in
    ``.jsonl`` gives plain JSON lines (:class:`JsonlSink`, no chain, no checkpoints).
    """
    if not is_url(target) and str(target).endswith(".jsonl"):
        if signing_key is not None or checkpoint_every is not None:
            raise AuditError(f"{target} is a plain JSON-lines file: it has no chain to sign; use a .db path "
                             "or a postgresql:// URL for checkpoints")
        return JsonlSink(target, privacy=privacy, salt=salt)
    return AuditLog(target, privacy=privacy, salt=salt, signing_key=signing_key,
                    checkpoint_every=checkpoint_every)
