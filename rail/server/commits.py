"""Group commit: the server's audit sink, where concurrent requests share one commit of the audit store.

The gate hands each record to :meth:`GroupCommit.emit`, which queues it and returns at once; one writer
thread appends everything queued so far with a single ``append_many`` (one transaction, one fsync) while
the next records gather behind it. A response goes out only after :meth:`GroupCommit.committed` says its
record is stored, so no request is ever answered unaudited: when a commit fails, every request in it
gets the AuditError (the server answers 503) and nothing was answered from it.

Stores without ``append_many`` (the JSON-lines sink) are written record by record in the same thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from rail.audit.record import AuditRecord
from rail.audit.sinks import AuditSink
from rail.errors import AuditError, AuditWriteError

__all__ = ["GroupCommit"]

# Results of records nobody claimed (a request that timed out or whose client left) are kept this long.
_UNCLAIMED_LIMIT = 10_000


class GroupCommit:
    """Queue audit records and commit them in groups; ``committed(request_id)`` waits for one record.

    ``on_commit(seconds, records, ok)`` is called after every commit (for metrics). ``failing`` is true
    from a failed commit until the next one succeeds.
    """

    def __init__(
        self,
        store: AuditSink,
        *,
        max_records: int = 512,
        on_commit: Callable[[float, int, bool], None] | None = None,
    ) -> None:
        self.store = store
        self.max_records = max_records
        self._on_commit = on_commit
        # A None record is a barrier: its future completes when everything queued before it is stored.
        self._pending: list[tuple[AuditRecord | None, Future[int | None]]] = []
        self._results: OrderedDict[str, Future[int | None]] = OrderedDict()
        self._cond = threading.Condition()
        self._closed = False
        self.failing = False
        self._thread = threading.Thread(target=self._run, name="rail-audit-commit", daemon=True)
        self._thread.start()

    def emit(self, record: AuditRecord) -> None:
        """Queue ``record`` for the next commit (the gate calls this once per request)."""
        future: Future[int | None] = Future()
        with self._cond:
            if self._closed:
                raise AuditWriteError("the audit sink is closed: the server is shutting down")
            self._pending.append((record, future))
            self._results[record.request_id] = future
            while len(self._results) > _UNCLAIMED_LIMIT:
                self._results.popitem(last=False)
            self._cond.notify()

    async def barrier(self) -> None:
        """Wait until every record emitted so far is stored; raise AuditError when any could not be."""
        future: Future[int | None] = Future()
        with self._cond:
            if self._closed:
                raise AuditWriteError("the audit sink is closed: the server is shutting down")
            self._pending.append((None, future))
            self._cond.notify()
        await asyncio.wrap_future(future)

    def future(self, request_id: str) -> Future[int | None]:
        """Return the commit of record ``request_id``: its sequence number (None for stores without)."""
        with self._cond:
            future = self._results.pop(request_id, None)
        if future is None:
            raise AuditError(f"no audit record was emitted for request {request_id}")
        return future

    async def committed(self, request_ids: Sequence[str]) -> list[int | None]:
        """Wait until the records of ``request_ids`` are stored; return their sequence numbers.

        Raises AuditError when any of them could not be written.
        """
        futures = [asyncio.wrap_future(self.future(r)) for r in request_ids]
        return list(await asyncio.gather(*futures))

    def _take(self) -> list[tuple[AuditRecord | None, Future[int | None]]]:
        with self._cond:
            self._cond.wait_for(lambda: self._closed or bool(self._pending))
            batch, self._pending = self._pending[: self.max_records], self._pending[self.max_records :]
            return batch

    def _write(self, records: list[AuditRecord]) -> list[int | None]:
        append_many = getattr(self.store, "append_many", None)
        if append_many is not None:
            return list(append_many(records))
        out: list[int | None] = []
        emit: Callable[[AuditRecord], object] = self.store.emit  # AuditLog.emit returns the sequence number
        for record in records:
            seq = emit(record)
            out.append(seq if isinstance(seq, int) else None)
        return out

    def _run(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                return  # closed and drained
            records = [record for record, _ in batch if record is not None]
            t0 = time.perf_counter()
            try:
                written = iter(self._write(records) if records else [])
            except BaseException as exc:  # every waiter learns of the failure; none is answered
                error = exc if isinstance(exc, AuditError) else AuditWriteError(f"audit write failed: {exc}")
                self.failing = True
                self._report(time.perf_counter() - t0, len(records), False)
                for _, future in batch:
                    future.set_exception(error)
                continue
            self.failing = False
            if records:
                self._report(time.perf_counter() - t0, len(records), True)
            for record, future in batch:
                future.set_result(next(written) if record is not None else None)

    def _report(self, seconds: float, count: int, ok: bool) -> None:
        if self._on_commit is not None:
            self._on_commit(seconds, count, ok)

    def close(self) -> None:
        """Commit everything queued, stop the writer thread and close the store."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._thread.join()
        close = getattr(self.store, "close", None)
        if close is not None:
            close()
