"""Export an audit log to JSON lines and import it back, keeping the chain verifiable across the trip.

Export format (one canonical JSON object per line):

1. header ``{"format": "rail-audit-export/1", "log_id": ..., "created": ...}``
2. one line per record ``{"seq": n, "prev": hex, "hash": hex, "record": {...}}`` — ``record`` re-serialised
   canonically gives back exactly the stored bytes, so the chain can be recomputed from the export alone;
3. one line per stored checkpoint ``{"checkpoint": {...}}``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from pathlib import Path

from rail.audit.chain import Checkpoint, entry_hash, genesis_hash
from rail.audit.log import _SCHEMA, LOG_FORMAT, column_bytes, open_log_readonly
from rail.audit.record import canonical_json
from rail.errors import AuditError

__all__ = ["EXPORT_FORMAT", "export_jsonl", "import_jsonl"]

EXPORT_FORMAT = "rail-audit-export/1"


def export_jsonl(log_path: str | Path, out_path: str | Path) -> int:
    """Write the whole log (records and checkpoints) to ``out_path`` atomically; return the record count."""
    conn, meta = open_log_readonly(log_path)
    out_path = Path(out_path)
    count = 0
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    except OSError as exc:
        conn.close()
        raise AuditError(f"cannot write {out_path}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as out:
            header = {"format": EXPORT_FORMAT, "log_id": meta["log_id"], "created": meta.get("created")}
            out.write(canonical_json(header) + b"\n")
            rows = conn.execute("SELECT seq, prev, hash, data FROM records ORDER BY seq")
            for seq, prev, digest, data in rows:
                # Splice the stored bytes in unparsed: the export carries exactly what was hashed (or what an
                # edit through SQL left, as TEXT or a number), so verifying the export finds the same break.
                out.write(b'{"hash":"' + column_bytes(digest).hex().encode() + b'","prev":"'
                          + column_bytes(prev).hex().encode() + b'","record":' + column_bytes(data)
                          + b',"seq":' + str(seq).encode() + b"}\n")
                count += 1
            for (data,) in conn.execute("SELECT data FROM checkpoints ORDER BY id"):
                out.write(b'{"checkpoint":' + column_bytes(data) + b"}\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, out_path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, sqlite3.DatabaseError):
            raise AuditError(f"cannot read audit log {log_path}: {exc}") from None
        raise
    finally:
        conn.close()
    return count


def import_jsonl(src: str | Path, dest: str | Path, *, force: bool = False) -> int:
    """Build a new log at ``dest`` from an export, verifying the chain; return the record count.

    Refuses (AuditError) when ``dest`` already exists — an import never touches an existing log — and when the
    chain in the export is broken, unless ``force``; a forced import keeps the stored hashes, so
    ``rail audit verify`` on the result still reports the break.
    """
    src, dest = Path(src), Path(dest)
    if dest.exists():
        raise AuditError(f"{dest} already exists; import into a new file (an import never modifies a log)")
    try:
        handle = src.open("rb")
    except OSError as exc:
        raise AuditError(f"cannot read export {src}: {exc.strerror}") from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as exc:
        handle.close()
        where = (f"the directory {dest.parent} does not exist" if not dest.parent.is_dir()
                 else exc.strerror)
        raise AuditError(f"cannot create {dest}: {where}") from None
    os.close(fd)
    try:
        with handle:
            count = _import(handle, src, Path(tmp), force)
        # Link rather than rename so that a log created at dest meanwhile is never replaced.
        try:
            os.link(tmp, dest)
        except FileExistsError:
            raise AuditError(f"{dest} was created during the import; nothing was changed") from None
    finally:
        for leftover in (tmp, tmp + "-wal", tmp + "-shm", tmp + "-journal"):
            if os.path.exists(leftover):
                os.unlink(leftover)
    return count


def _import(handle, src: Path, tmp: Path, force: bool) -> int:  # type: ignore[no-untyped-def]
    def parse(number: int, line: bytes) -> dict:
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise AuditError(f"{src}:{number}: not JSON ({exc})") from None
        if not isinstance(value, dict):
            raise AuditError(f"{src}:{number}: expected a JSON object")
        return value

    try:
        header = json.loads(handle.readline() or b"{}")
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT \
            or not isinstance(header.get("log_id"), str):
        raise AuditError(f"{src} is not a rail audit export (first line must carry format {EXPORT_FORMAT!r})")
    log_id = header["log_id"]
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        # The temporary file is private until linked into place, so no WAL or fsync per row is needed.
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("BEGIN")
        for statement in filter(str.strip, _SCHEMA.split(";")):
            conn.execute(statement)
        conn.executemany("INSERT INTO meta VALUES (?, ?)",
                         [("format", LOG_FORMAT), ("log_id", log_id),
                          ("created", header.get("created") or ""), ("imported_from", str(src))])
        prev, count, broken = genesis_hash(log_id), 0, None
        for number, line in enumerate(handle, start=2):
            if not line.strip():
                continue
            item = parse(number, line)
            if "checkpoint" in item:
                checkpoint = Checkpoint.from_dict(item["checkpoint"], source=f"{src}:{number}")
                conn.execute("INSERT INTO checkpoints (size, data) VALUES (?, ?)",
                             (checkpoint.size, canonical_json(checkpoint.to_dict()).decode("utf-8")))
                continue
            try:
                seq, stored_prev = int(item["seq"]), bytes.fromhex(item["prev"])
                digest, record = bytes.fromhex(item["hash"]), item["record"]
                data = canonical_json(record)
                row = (seq, str(record["rail.time"]), str(record["rail.request_id"]),
                       str(record["rail.verdict"]), stored_prev, digest, data)
            except (KeyError, TypeError, ValueError) as exc:
                raise AuditError(f"{src}:{number}: malformed record line ({exc})") from None
            count += 1
            intact = seq == count and stored_prev == prev and entry_hash(prev, seq, data) == digest
            if broken is None and not intact:
                broken = f"{src}:{number}: the chain breaks at record {seq} (request {row[2]})"
                if not force:
                    raise AuditError(f"{broken}; refusing to import a tampered log (use --force to import it "
                                     "for inspection — verification will still report the break)")
            prev = digest
            try:
                conn.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)", row)
            except sqlite3.IntegrityError:
                raise AuditError(f"{src}:{number}: record {seq} appears twice") from None
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
    with open(tmp, "rb+") as done:
        os.fsync(done.fileno())
    return count
