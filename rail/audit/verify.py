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
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rail.audit.chain import Checkpoint, Entry, entry_hash, genesis_hash, parse_checkpoint
from rail.audit.store import AuditStore, Target, describe_target, open_store
from rail.errors import AuditCorruptError, AuditError
from rail.signing import CheckpointKey

__all__ = ["Problem", "VerifyResult", "verify_log"]

# How far a record is searched for its original position when its hash does not match where it now sits.
_MOVE_WINDOW = 8


@dataclass(frozen=True)
class Problem:
    """One integrity failure: where (sequence number, request id when known), what kind, and why.

    ``kind`` is one of ``modified``, ``deleted``, ``inserted``, ``reordered``, ``chain-broken``,
    ``truncated``, ``checkpoint-mismatch``, ``bad-signature``, ``bad-checkpoint``, ``foreign-checkpoint``,
    ``corrupt`` (the storage itself is damaged: a page overwritten, the file cut short).
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
    """The outcome of :func:`verify_log`; ``ok`` is True only when no problem was found.

    ``path`` is the log's file path or URL (without its password); ``log_id`` is empty when the log is too
    damaged to name it.
    """

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
            cover = (f"; {signed}checkpoint covers records 1..{self.latest_checkpoint:,}"
                     if self.latest_checkpoint is not None else "; no checkpoint checked")
            return f"intact: {self.size:,} records, chain verified{cover}"
        return f"TAMPERED: {self.problems[0]}"


def _request_id(store: AuditStore, seq: int) -> str | None:
    # Read from the stored JSON, not the lookup column, which a forger could edit separately.
    try:
        entry = store.entry(seq)
    except AuditError:
        return None
    if entry is None:
        return None
    try:
        value = json.loads(entry.data).get("rail.request_id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return value if isinstance(value, str) else None


def _diagnose_mismatch(store: AuditStore, seq: int, prev: bytes, digest: bytes, data: bytes) -> Problem:
    # A record that hashes correctly at a nearby position was moved: swapped, or renumbered after an insert
    # or delete. Only runs once, on the failure path.
    for offset in range(1, _MOVE_WINDOW + 1):
        for original in (seq + offset, seq - offset):
            if original < 1 or entry_hash(prev, original, data) != digest:
                continue
            try:
                other = store.entry(original)
            except AuditError:
                other = None
            if other is not None and entry_hash(other.prev, seq, other.data) == other.hash:
                return Problem("reordered", f"records {seq} and {original} were swapped", seq)
            if original > seq:
                return Problem("deleted", f"{offset} record(s) were deleted before it: the record now "
                               f"at {seq} was written as record {original}", seq)
            return Problem("inserted", f"{offset} record(s) were inserted before it: the record now at "
                           f"{seq} was written as record {original}", seq)
    return Problem("modified", "its content no longer matches its hash (edited, or moved here from "
                   "elsewhere)", seq)


def verify_log(target: Target, *, checkpoints: Iterable[Checkpoint] = (),
               key: CheckpointKey | None = None) -> VerifyResult:
    """Recompute the chain of the log at ``target`` and check checkpoints; never writes to the log.

    ``target`` is a log file path or a ``postgresql://`` URL. ``checkpoints`` are checkpoints kept outside the
    log (files from ``rail audit checkpoint``); the log's own checkpoints are always checked too. With
    ``key`` every checkpoint's signature is verified and a checkpoint that fails is reported as forged;
    without it checkpoints are checked for consistency only. Damaged storage (a page overwritten, the file
    cut short) is reported as a ``corrupt`` problem. Raises AuditError when the target is missing or not a
    rail audit log.
    """
    external = list(checkpoints)
    try:
        store = open_store(target)
    except AuditCorruptError as exc:
        return VerifyResult(path=describe_target(target), log_id="", size=0, verified=0, head="",
                            problems=(Problem("corrupt", str(exc)),), checkpoints_checked=len(external),
                            signatures_checked=key is not None,
                            notes=("no record could be read: restore the log from a backup or an export",))
    try:
        with store.snapshot():
            return _verify(store, external, key)
    finally:
        store.close()


def _stored_checkpoints(store: AuditStore, problems: list[Problem]) -> list[Checkpoint]:
    try:
        raw = store.checkpoints()
    except AuditCorruptError as exc:
        problems.append(Problem("corrupt", f"the stored checkpoints cannot be read: {exc}"))
        return []
    stored = []
    for number, data in enumerate(raw, start=1):
        try:
            stored.append(parse_checkpoint(data, f"stored checkpoint {number}"))
        except AuditError as exc:
            problems.append(Problem("bad-checkpoint", f"{exc}: it was edited in the log"))
    return stored


def _signature_problem(failed: list[tuple[str, Checkpoint]], total: int, key: CheckpointKey) -> Problem:
    other: list[tuple[str, Checkpoint]] = []
    forged: list[tuple[str, Checkpoint]] = []
    for label, checkpoint in failed:
        mine = checkpoint.key_id == key.key_id and checkpoint.alg == key.alg
        (forged if mine else other).append((label, checkpoint))
    parts = []
    if other:
        ids = sorted({f"{cp.alg} {cp.key_id}" for _, cp in other})
        parts.append(f"{len(other):,} of {total:,} checkpoints were signed with another key "
                     f"({', '.join(ids)}), not the key given ({key.alg} {key.key_id}); first: "
                     f"{other[0][0]} — most likely the wrong key was given: use the public key of the "
                     "service that wrote this log")
    if forged:
        parts.append(f"{len(forged):,} of {total:,} checkpoints name the given key but their signature does "
                     f"not match: forged or altered; first: {forged[0][0]}")
    return Problem("bad-signature", "; ".join(parts))


def _walk(store: AuditStore, log_id: str, wanted: set[int], *, ordered: bool,
          ) -> tuple[list[Problem], Entry | None, int, bytes, dict[int, bytes]]:
    """Walk the chain until its first problem; return (problems, entry whose hash fails, next expected seq,
    last verified hash, hashes at the ``wanted`` sizes)."""
    prev = genesis_hash(log_id)
    heads = {0: prev}
    expected = 1
    walk: list[Problem] = []
    mismatch: Entry | None = None
    entries = store.iter_entries(ordered=ordered)
    try:
        for seq, stored_prev, digest, data in entries:
            if seq < expected:
                # In sequence order from 1, a lower number can only be a row added below record 1.
                walk.append(Problem("inserted", f"a record numbered {seq} was inserted before record 1 "
                                    "(rail numbers records from 1)", seq))
                break
            if seq != expected:
                walk.append(Problem("deleted", f"records {expected}..{seq - 1} are missing; the log "
                                    f"resumes at record {seq}", expected))
                break
            if entry_hash(stored_prev, seq, data) != digest:
                mismatch = Entry(seq, stored_prev, digest, data)  # diagnosed once the walk has ended
                break
            if stored_prev != prev:
                if seq == 1:
                    walk.append(Problem("chain-broken", "record 1 is not chained to this log's genesis "
                                        "(log id changed, or records copied from another log)", 1))
                else:
                    walk.append(Problem("chain-broken", f"record {seq} was chained to a different record "
                                        f"{seq - 1}: this record was modified and re-hashed, replaced, or "
                                        "inserted", seq - 1))
                break
            prev = digest
            if seq in wanted:
                heads[seq] = digest
            expected += 1
    except AuditCorruptError as exc:
        walk.append(Problem("corrupt", f"record {expected} and those after it cannot be read: {exc}",
                            expected))
    finally:
        entries.close()  # a store may stream over its one connection: end that before other reads
    return walk, mismatch, expected, prev, heads


def _verify(store: AuditStore, external: list[Checkpoint], key: CheckpointKey | None) -> VerifyResult:
    log_id = store.meta.log_id
    problems: list[Problem] = []
    stored = _stored_checkpoints(store, problems)
    # Smallest first, so the first mismatch reported is the one closest to where the history was changed.
    labelled = [("checkpoint file", cp) for cp in external] + [("stored checkpoint", cp) for cp in stored]
    checkpoints = sorted(labelled, key=lambda item: item[1].size)
    wanted = {cp.size for _, cp in checkpoints}

    # Rows as stored first: in an untouched log that is sequence order, and the store can skip sorting. Any
    # deviation is walked again in sequence order, so what is reported never depends on where rows lie.
    walk, mismatch, expected, prev, heads = _walk(store, log_id, wanted, ordered=False)
    if walk or mismatch is not None:
        walk, mismatch, expected, prev, heads = _walk(store, log_id, wanted, ordered=True)
    if mismatch is not None:
        walk.append(_diagnose_mismatch(store, *mismatch))
    verified = expected - 1
    try:
        size = store.head()[0]
    except AuditCorruptError as exc:
        size = verified
        if not walk:
            walk.append(Problem("corrupt", f"the end of the log cannot be read: {exc}", expected))
    problems += [p if p.seq is None or p.kind == "corrupt"
                 else Problem(p.kind, p.message, p.seq, _request_id(store, p.seq)) for p in walk]

    latest = None
    unsigned: list[tuple[str, Checkpoint]] = []
    for source, checkpoint in checkpoints:
        label = f"{source} of size {checkpoint.size:,} signed {checkpoint.time}"
        if checkpoint.log_id != log_id:
            problems.append(Problem("foreign-checkpoint", f"{label} belongs to log {checkpoint.log_id}, "
                                    f"not {log_id}"))
            continue
        if key is not None and not checkpoint.verify_signature(key):
            unsigned.append((label, checkpoint))
            continue
        if checkpoint.size > size and not walk:
            problems.append(Problem("truncated", f"the log holds {size:,} records but {label} covers "
                                    f"{checkpoint.size:,}: records {size + 1}..{checkpoint.size} were "
                                    "removed", size + 1))
            continue
        if checkpoint.size in heads and heads[checkpoint.size].hex() != checkpoint.head:
            actual = heads[checkpoint.size].hex()
            problems.append(Problem("checkpoint-mismatch", f"{label} names head {checkpoint.head[:16]}… but "
                                    f"record {checkpoint.size} hashes to {actual[:16]}…: "
                                    f"records up to {checkpoint.size} were rewritten", checkpoint.size,
                                    _request_id(store, checkpoint.size)))
            continue
        if checkpoint.size in heads:
            latest = max(latest or 0, checkpoint.size)
    if unsigned:
        assert key is not None
        problems.append(_signature_problem(unsigned, len(checkpoints), key))
    damage = store.damage()
    if damage and not any(p.kind == "corrupt" for p in problems):
        problems.append(Problem("corrupt", f"{store.location}: {damage}"))

    notes = []
    if key is None and checkpoints:
        notes.append("checkpoint signatures were not checked (no key given)")
    if not checkpoints:
        notes.append("no checkpoint: truncation of the tail cannot be detected")
    elif latest is not None and latest < size:
        notes.append(f"records {latest + 1}..{size} are newer than the latest checkpoint")
    return VerifyResult(path=store.location, log_id=log_id, size=size, verified=verified,
                        head=prev.hex(), problems=tuple(problems),
                        checkpoints_checked=len(checkpoints), signatures_checked=key is not None,
                        latest_checkpoint=latest, notes=tuple(notes))
