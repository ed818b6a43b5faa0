"""Export an audit log to JSON lines and import it back, keeping the chain verifiable across the trip.

The export is the same whichever store the log is on, so a SQLite log imports into PostgreSQL and back.

Export format (one canonical JSON object per line):

1. header ``{"format": "rail-audit-export/1", "log_id": ..., "created": ...}``
2. one line per record ``{"seq": n, "prev": hex, "hash": hex, "record": {...}}`` — ``record`` re-serialised
   canonically gives back exactly the stored bytes, so the chain can be recomputed from the export alone;
3. one line per stored checkpoint ``{"checkpoint": {...}}``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from rail.audit.chain import Checkpoint, Entry, entry_hash, genesis_hash
from rail.audit.store import ImportItem, PreparedRecord, Target, import_store, open_store
from rail.canonical import canonical_json
from rail.errors import AuditError, AuditWriteError

__all__ = ["EXPORT_FORMAT", "export_jsonl", "import_jsonl"]

EXPORT_FORMAT = "rail-audit-export/1"


def export_jsonl(log: Target, out_path: str | Path) -> int:
    """Write the whole log (records and checkpoints) to ``out_path`` atomically; return the record count.

    ``log`` is a file path or a ``postgresql://`` URL; the log is read in one consistent snapshot.
    """
    store = open_store(log)
    out_path = Path(out_path)
    count = 0
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    except OSError as exc:
        store.close()
        raise AuditError(f"cannot write {out_path}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as out, store.snapshot():
            header = {"format": EXPORT_FORMAT, "log_id": store.meta.log_id, "created": store.meta.created}
            out.write(canonical_json(header) + b"\n")
            for seq, prev, digest, data in store.iter_entries():
                # Splice the stored bytes in unparsed: the export carries exactly what was hashed (or what an
                # edit through SQL left), so verifying the export finds the same break.
                out.write(b'{"hash":"' + digest.hex().encode() + b'","prev":"' + prev.hex().encode()
                          + b'","record":' + data + b',"seq":' + str(seq).encode() + b"}\n")
                count += 1
            for data in store.checkpoints():
                out.write(b'{"checkpoint":' + data + b"}\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, out_path)
    except OSError as exc:
        raise AuditWriteError(f"cannot write {out_path}: {exc.strerror}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        store.close()
    return count


def import_jsonl(src: str | Path, dest: Target, *, force: bool = False) -> int:
    """Build a new log at ``dest`` (a path or ``postgresql://`` URL) from an export; return the record count.

    Refuses (AuditError) when ``dest`` already holds a log — an import never touches an existing log — and
    when the chain in the export is broken, unless ``force``; a forced import keeps the stored hashes, so
    ``rail audit verify`` on the result still reports the break. Nothing is left at ``dest`` when it fails.
    """
    src = Path(src)
    readers: list[_ExportReader] = []

    def source() -> tuple[dict[str, str], Iterator[ImportItem]]:
        try:
            handle = stack.enter_context(src.open("rb"))
        except OSError as exc:
            raise AuditError(f"cannot read export {src}: {exc.strerror}") from None
        try:
            header = json.loads(handle.readline() or b"{}")
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT \
                or not isinstance(header.get("log_id"), str):
            raise AuditError(f"{src} is not a rail audit export (first line must carry format "
                             f"{EXPORT_FORMAT!r})")
        readers.append(_ExportReader(handle, src, header["log_id"], force))
        meta = {"log_id": header["log_id"], "created": str(header.get("created") or ""),
                "imported_from": str(src)}
        return meta, readers[0].items()

    with ExitStack() as stack:
        import_store(dest, source)
    return readers[0].count


class _ExportReader:
    """Stream an export's lines as store items, checking the chain as it goes."""

    def __init__(self, handle: IO[bytes], src: Path, log_id: str, force: bool) -> None:
        self.handle, self.src, self.force = handle, src, force
        self.prev = genesis_hash(log_id)
        self.count = 0
        self.broken: str | None = None
        # Records 1..clean came in order before the chain broke; only a forced import of a broken chain can
        # meet a number twice, so only the numbers after the break are remembered.
        self.clean = 0
        self.seen_after_break: set[int] = set()

    def _parse(self, number: int, line: bytes) -> dict[str, Any]:
        try:
            value = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise AuditError(f"{self.src}:{number}: not JSON ({exc})") from None
        if not isinstance(value, dict):
            raise AuditError(f"{self.src}:{number}: expected a JSON object")
        return value

    def items(self) -> Iterator[ImportItem]:
        for number, line in enumerate(self.handle, start=2):
            if not line.strip():
                continue
            item = self._parse(number, line)
            if "checkpoint" in item:
                yield Checkpoint.from_dict(item["checkpoint"], source=f"{self.src}:{number}")
                continue
            try:
                seq, stored_prev = int(item["seq"]), bytes.fromhex(item["prev"])
                digest, record = bytes.fromhex(item["hash"]), item["record"]
                data = canonical_json(record)
                prepared = PreparedRecord(data, str(record["rail.time"]), str(record["rail.request_id"]),
                                          str(record["rail.verdict"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise AuditError(f"{self.src}:{number}: malformed record line ({exc})") from None
            self.count += 1
            intact = (seq == self.count and stored_prev == self.prev
                      and entry_hash(self.prev, seq, data) == digest)
            if self.broken is None and not intact:
                self.broken = f"{self.src}:{number}: the chain breaks at record {seq}"
                self.clean = self.count - 1
                if not self.force:
                    raise AuditError(f"{self.broken} (request {prepared.request_id}); refusing to import a "
                                     "tampered log (use --force to import it for inspection — verification "
                                     "will still report the break)")
            if self.broken is not None:
                if 1 <= seq <= self.clean or seq in self.seen_after_break:
                    raise AuditError(f"{self.src}:{number}: record {seq} appears twice")
                self.seen_after_break.add(seq)
            self.prev = digest
            yield Entry(seq, stored_prev, digest, data), prepared
