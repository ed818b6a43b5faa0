"""Verify an audit log: recompute the hash chain and check it against signed checkpoints.

What a successful verification proves: every stored record is byte-for-byte the one written at its position
and none was removed, inserted or moved among records 1..N; and, for every checkpoint checked with a key, the
first ``size`` records are exactly those that existed when the checkpoint was signed (so truncation below a
checkpoint or a rewrite of the history it covers is detected). It cannot prove that records after the newest
checkpoint you hold were not replaced wholesale by someone able to rewrite the file, nor that the writer told
the truth.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rail.audit.chain import Checkpoint, entry_hash, genesis_hash
from rail.audit.keys import CheckpointKey
from rail.audit.log import _parse_checkpoint, column_bytes, open_log_readonly
from rail.errors import AuditError

__all__ = ["Problem", "VerifyResult", "verify_log"]

# How far a record is searched for its original position when its hash does not match where it now sits.
_MOVE_WINDOW = 8


@dataclass(frozen=True)
class Problem:
    """One integrity failure: where (sequence number, request id when known), what kind, and why.

    ``kind`` is one of ``modified``, ``deleted``, ``inserted``, ``reordered``, ``chain-broken``,
    ``truncated``, ``checkpoint-mismatch``, ``bad-signature``, ``foreign-checkpoint``.
    """

    kind: str
    message: str
    seq: int | None = None
    request_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "seq": self.seq, "request_id": self.request_id, "message": self.message}

    def __str__(self) -> str:
        where = f"record {self.seq}" if self.seq is not None else "log"
        if self.request_id:
            where += f" (request {self.request_id})"
        return f"{where}: {self.kind}: {self.message}"


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of :func:`verify_log`; ``ok`` is True only when no problem was found."""

    path: str
    log_id: str
    size: int
    verified: int
    head: str
    problems: tuple[Problem, ...]
    checkpoints_checked: int
    signatures_checked: bool
    latest_checkpoint: int | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "ok": self.ok, "verdict": "intact" if self.ok else "tampered",
            "log_id": self.log_id, "records": self.size, "verified": self.verified, "head": self.head,
            "checkpoints_checked": self.checkpoints_checked, "signatures_checked": self.signatures_checked,
            "latest_checkpoint_size": self.latest_checkpoint,
            "problems": [p.to_dict() for p in self.problems], "notes": list(self.notes),
        }

    def summary(self) -> str:
        """Return a one-line verdict for people."""
        if self.ok:
            signed = "signed " if self.signatures_checked else "unsigned "
            cover = (f"; {signed}checkpoint covers records 1..{self.latest_checkpoint}"
                     if self.latest_checkpoint is not None else "; no checkpoint checked")
            return f"intact: {self.size} records, chain verified{cover}"
        return f"TAMPERED: {self.problems[0]}"


def _request_id(conn: sqlite3.Connection, seq: int) -> str | None:
    # Read from the stored JSON, not the lookup column, which a forger could edit separately.
    row = conn.execute("SELECT data FROM records WHERE seq = ?", (seq,)).fetchone()
    if row is None:
        return None
    try:
        value = json.loads(column_bytes(row[0])).get("rail.request_id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return value if isinstance(value, str) else None


def _diagnose_mismatch(conn: sqlite3.Connection, seq: int, prev: bytes, digest: bytes,
                       data: bytes) -> Problem:
    # A record that hashes correctly at a nearby position was moved: swapped, or renumbered after an insert
    # or delete. Only runs once, on the failure path.
    for offset in range(1, _MOVE_WINDOW + 1):
        for original in (seq + offset, seq - offset):
            if original < 1 or entry_hash(prev, original, data) != digest:
                continue
            other = conn.execute("SELECT prev, hash, data FROM records WHERE seq = ?", (original,)).fetchone()
            if other and entry_hash(column_bytes(other[0]), seq,
                                    column_bytes(other[2])) == column_bytes(other[1]):
                return Problem("reordered", f"records {seq} and {original} were swapped", seq)
            if original > seq:
                return Problem("deleted", f"{offset} record(s) were deleted before it: the record now "
                               f"at {seq} was written as record {original}", seq)
            return Problem("inserted", f"{offset} record(s) were inserted before it: the record now at "
                           f"{seq} was written as record {original}", seq)
    return Problem("modified", "its content no longer matches its hash (edited, or moved here from "
                   "elsewhere)", seq)


def verify_log(path: str | Path, *, checkpoints: Iterable[Checkpoint] = (),
               key: CheckpointKey | None = None) -> VerifyResult:
    """Recompute the chain of the log at ``path`` and check checkpoints; never writes to the log.

    ``checkpoints`` are checkpoints kept outside the log (files from ``rail audit checkpoint``); the log's own
    checkpoints are always checked too. With ``key`` every checkpoint's signature is verified and a checkpoint
    that fails is reported as forged; without it checkpoints are checked for consistency only.
    Raises AuditError when the file is missing or not a rail audit log.
    """
    path = Path(path)
    conn, meta = open_log_readonly(path)
    try:
        return _verify(conn, meta, path, list(checkpoints), key)
    except sqlite3.DatabaseError as exc:
        raise AuditError(f"cannot read audit log {path}: {exc}") from None
    finally:
        conn.close()


def _verify(conn: sqlite3.Connection, meta: dict[str, str], path: Path, external: list[Checkpoint],
            key: CheckpointKey | None) -> VerifyResult:
    log_id = meta["log_id"]
    stored = []
    for (data,) in conn.execute("SELECT data FROM checkpoints ORDER BY id"):
        stored.append(_parse_checkpoint(data, f"{path} checkpoint"))
    # Smallest first, so the first mismatch reported is the one closest to where the history was changed.
    labelled = [("checkpoint file", cp) for cp in external] + [("stored checkpoint", cp) for cp in stored]
    checkpoints = sorted(labelled, key=lambda item: item[1].size)
    wanted = {cp.size for _, cp in checkpoints}
    heads: dict[int, bytes] = {}
    problems: list[Problem] = []

    prev = genesis_hash(log_id)
    heads[0] = prev
    expected = 1
    cursor = conn.execute("SELECT seq, prev, hash, data FROM records ORDER BY seq")
    for seq, stored_prev, digest, data in cursor:
        if not (type(data) is bytes and type(stored_prev) is bytes and type(digest) is bytes):
            # Someone stored a value of another type through SQL; compare its bytes so an edit still shows.
            stored_prev, digest, data = column_bytes(stored_prev), column_bytes(digest), column_bytes(data)
        if seq < expected:
            # Rows come in ascending order from 1, so a lower number can only be a row added below record 1.
            problems.append(Problem("inserted", f"a record numbered {seq} was inserted before record 1 "
                                    "(rail numbers records from 1)", seq))
            break
        if seq != expected:
            problems.append(Problem("deleted", f"records {expected}..{seq - 1} are missing; the log "
                                    f"resumes at record {seq}", expected))
            break
        if entry_hash(stored_prev, seq, data) != digest:
            problems.append(_diagnose_mismatch(conn, seq, stored_prev, digest, data))
            break
        if stored_prev != prev:
            if seq == 1:
                problems.append(Problem("chain-broken", "record 1 is not chained to this log's genesis "
                                        "(log id changed, or records copied from another log)", 1))
            else:
                problems.append(Problem("chain-broken", f"record {seq} was chained to a different record "
                                        f"{seq - 1}: this record was modified and re-hashed, replaced, or "
                                        "inserted", seq - 1))
            break
        prev = digest
        if seq in wanted:
            heads[seq] = digest
        expected += 1
    cursor.close()
    verified = expected - 1
    size = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM records").fetchone()[0]
    problems = [p if p.seq is None else Problem(p.kind, p.message, p.seq, _request_id(conn, p.seq))
                for p in problems]

    latest = None
    for source, checkpoint in checkpoints:
        label = f"{source} of size {checkpoint.size} signed {checkpoint.time}"
        if checkpoint.log_id != log_id:
            problems.append(Problem("foreign-checkpoint", f"{label} belongs to log {checkpoint.log_id}, "
                                    f"not {log_id}"))
            continue
        if key is not None and not checkpoint.verify_signature(key):
            why = ("signed with another key" if checkpoint.key_id != key.key_id or checkpoint.alg != key.alg
                   else "signature does not match: forged or altered")
            problems.append(Problem("bad-signature", f"{label}: {why}"))
            continue
        if checkpoint.size > size and not problems:
            problems.append(Problem("truncated", f"the log holds {size} records but {label} covers "
                                    f"{checkpoint.size}: records {size + 1}..{checkpoint.size} were removed",
                                    size + 1))
            continue
        if checkpoint.size in heads and heads[checkpoint.size].hex() != checkpoint.head:
            actual = heads[checkpoint.size].hex()
            problems.append(Problem("checkpoint-mismatch", f"{label} names head {checkpoint.head[:16]}… but "
                                    f"record {checkpoint.size} hashes to {actual[:16]}…: "
                                    f"records up to {checkpoint.size} were rewritten", checkpoint.size,
                                    _request_id(conn, checkpoint.size)))
            continue
        if checkpoint.size in heads:
            latest = max(latest or 0, checkpoint.size)

    notes = []
    if key is None and checkpoints:
        notes.append("checkpoint signatures were not checked (no key given)")
    if not checkpoints:
        notes.append("no checkpoint: truncation of the tail cannot be detected")
    elif latest is not None and latest < size:
        notes.append(f"records {latest + 1}..{size} are newer than the latest checkpoint")
    return VerifyResult(path=str(path), log_id=log_id, size=size, verified=verified,
                        head=prev.hex(), problems=tuple(problems),
                        checkpoints_checked=len(checkpoints), signatures_checked=key is not None,
                        latest_checkpoint=latest, notes=tuple(notes))
