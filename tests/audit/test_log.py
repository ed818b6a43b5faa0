"""AuditLog: tampering of every kind is detected; concurrent and killed writers leave a verifiable chain."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import kill_writer_inside_a_transaction

from rail.audit import (
    AuditLog,
    AuditRecord,
    load_checkpoint,
    load_key,
    read_records,
    verify_log,
)
from rail.audit.chain import entry_hash
from rail.errors import AuditError

RECORDS = 40


@pytest.fixture
def signed_log(tmp_path, make_record, ed25519_key):
    """A 40-record log with an automatic checkpoint every 10 records and one exported checkpoint file."""
    path = tmp_path / "audit.db"
    with AuditLog(path, privacy="full", signing_key=ed25519_key[0], checkpoint_every=10) as log:
        for i in range(1, RECORDS + 1):
            log.emit(make_record(i))
        log.checkpoint().save(tmp_path / "head.checkpoint")
    return path


def _sql(path: Path, *statements: str, params: tuple = ()) -> None:
    conn = sqlite3.connect(path)
    for statement in statements:
        conn.execute(statement, params if "?" in statement else ())
    conn.commit()
    conn.close()


def _rehash_from(path: Path, start: int) -> None:
    """Recompute every hash from ``start`` on, as a forger who knows the chain algorithm would."""
    conn = sqlite3.connect(path)
    prev = conn.execute("SELECT hash FROM records WHERE seq = ?", (start - 1,)).fetchone()[0]
    for seq, data in conn.execute("SELECT seq, data FROM records WHERE seq >= ? ORDER BY seq",
                                  (start,)).fetchall():
        digest = entry_hash(prev, seq, data)
        conn.execute("UPDATE records SET prev = ?, hash = ? WHERE seq = ?", (prev, digest, seq))
        prev = digest
    conn.commit()
    conn.close()


def _edit_record(path: Path, seq: int) -> None:
    conn = sqlite3.connect(path)
    data = json.loads(conn.execute("SELECT data FROM records WHERE seq = ?", (seq,)).fetchone()[0])
    assert data["rail.verdict"] == "blocked", "pick a blocked record so the edit changes it"
    data["rail.verdict"] = "allowed"
    data["rail.violations"] = []
    conn.execute("UPDATE records SET data = ? WHERE seq = ?",
                 (json.dumps(data, sort_keys=True, separators=(",", ":")).encode(), seq))
    conn.commit()
    conn.close()


def test_an_untouched_log_verifies(signed_log, ed25519_key):
    result = verify_log(signed_log, checkpoints=[load_checkpoint(signed_log.parent / "head.checkpoint")],
                        key=load_key(ed25519_key[1]))
    assert result.ok, result.summary()
    assert result.size == RECORDS and result.latest_checkpoint == RECORDS
    assert result.checkpoints_checked == 6 and result.signatures_checked


def _rehash_one(path: Path, seq: int) -> None:
    conn = sqlite3.connect(path)
    prev, data = conn.execute("SELECT prev, data FROM records WHERE seq = ?", (seq,)).fetchone()
    conn.execute("UPDATE records SET hash = ? WHERE seq = ?", (entry_hash(prev, seq, data), seq))
    conn.commit()
    conn.close()


def _forge_insert(path: Path) -> None:
    # Shift records 15.. up by one and put a copy of record 3 at 15 with a freshly computed hash.
    _sql(path, "UPDATE records SET seq = -seq WHERE seq >= 15",
         "UPDATE records SET seq = 1 - seq WHERE seq < 0")
    conn = sqlite3.connect(path)
    prev = conn.execute("SELECT hash FROM records WHERE seq = 14").fetchone()[0]
    row = conn.execute("SELECT time, request_id, verdict, data FROM records WHERE seq = 3").fetchone()
    conn.execute("INSERT INTO records VALUES (15, ?, ?, ?, ?, ?, ?)",
                 (*row[:3], prev, entry_hash(prev, 15, row[3]), row[3]))
    conn.commit()
    conn.close()


TAMPERING = {
    # name: (tamper(path), expected first bad seq, expected kind)
    "modified field": (lambda p: _edit_record(p, 12), 12, "modified"),
    "modified and re-hashed record": (lambda p: (_edit_record(p, 12), _rehash_one(p, 12)),
                                      12, "chain-broken"),
    "deleted row": (lambda p: _sql(p, "DELETE FROM records WHERE seq = 7"), 7, "deleted"),
    "deleted row, rest renumbered": (lambda p: _sql(p, "DELETE FROM records WHERE seq = 7",
                                                    "UPDATE records SET seq = seq - 1 WHERE seq > 7"),
                                     7, "deleted"),
    "inserted forged row": (_forge_insert, 16, "inserted"),
    "swapped rows": (lambda p: _sql(p, "UPDATE records SET seq = -1 WHERE seq = 20",
                                    "UPDATE records SET seq = 20 WHERE seq = 21",
                                    "UPDATE records SET seq = 21 WHERE seq = -1"), 20, "reordered"),
    "history rewritten with valid hashes": (lambda p: (_edit_record(p, 24), _rehash_from(p, 24)),
                                            30, "checkpoint-mismatch"),
    "tail truncated": (lambda p: _sql(p, "DELETE FROM records WHERE seq > 33"), 34, "truncated"),
    "tail and in-log checkpoints truncated": (lambda p: _sql(p, "DELETE FROM records WHERE seq > 33",
                                                             "DELETE FROM checkpoints WHERE size > 33"),
                                              34, "truncated"),
    "log identity replaced": (lambda p: _sql(p, "UPDATE meta SET value = 'f00' WHERE key = 'log_id'"),
                              1, "chain-broken"),
}


@pytest.mark.parametrize("name", list(TAMPERING))
def test_tampering_is_detected_and_the_first_bad_record_named(signed_log, ed25519_key, name):
    tamper, seq, kind = TAMPERING[name]
    tamper(signed_log)
    result = verify_log(signed_log, checkpoints=[load_checkpoint(signed_log.parent / "head.checkpoint")],
                        key=load_key(ed25519_key[1]))
    assert not result.ok
    first = result.first_problem
    assert (first.kind, first.seq) == (kind, seq), str(first)
    if name not in ("deleted row", "tail truncated", "tail and in-log checkpoints truncated"):
        # The named record still exists, so its request id is reported (read from the stored JSON).
        assert first.request_id and first.request_id.startswith("req-")


def test_truncation_without_any_checkpoint_is_not_provable(tmp_path, make_record):
    path = tmp_path / "plain.db"
    with AuditLog(path, privacy="full") as log:
        log.append_many([make_record(i) for i in range(1, 11)])
    _sql(path, "DELETE FROM records WHERE seq > 6")
    result = verify_log(path)
    assert result.ok and result.size == 6
    assert any("truncation" in note for note in result.notes)


def test_truncation_below_an_exported_checkpoint_is_caught_after_in_log_ones_are_removed(signed_log):
    _sql(signed_log, "DELETE FROM records WHERE seq > 20", "DELETE FROM checkpoints")
    assert verify_log(signed_log).ok  # nothing inside the log betrays it ...
    result = verify_log(signed_log, checkpoints=[load_checkpoint(signed_log.parent / "head.checkpoint")])
    assert result.first_problem.kind == "truncated"  # ... the checkpoint kept elsewhere does


def test_forged_checkpoint_signature_is_detected(signed_log, ed25519_key, other_key):
    file = signed_log.parent / "head.checkpoint"
    data = json.loads(file.read_text())
    data["size"] = 39
    file.write_text(json.dumps(data))
    result = verify_log(signed_log, checkpoints=[load_checkpoint(file)], key=load_key(ed25519_key[1]))
    assert result.first_problem.kind == "bad-signature"
    assert "forged" in result.first_problem.message


def test_checkpoint_signed_with_another_key_is_rejected(signed_log, other_key):
    result = verify_log(signed_log, key=load_key(other_key[1]))
    assert result.first_problem.kind == "bad-signature"
    assert "another key" in result.first_problem.message


def test_checkpoint_of_another_log_is_rejected(tmp_path, signed_log, make_record, ed25519_key):
    with AuditLog(tmp_path / "other.db", privacy="full", signing_key=ed25519_key[0]) as other:
        other.emit(make_record(1))
        foreign = other.checkpoint()
    result = verify_log(signed_log, checkpoints=[foreign])
    assert result.first_problem.kind == "foreign-checkpoint"


def test_hmac_keys_sign_and_verify_checkpoints(tmp_path, make_record):
    from rail.audit import generate_key

    key, public = generate_key(tmp_path / "hmac.key", "hmac-sha256")
    assert public is None
    with AuditLog(tmp_path / "h.db", privacy="full", signing_key=key, checkpoint_every=2) as log:
        for i in range(1, 6):
            log.emit(make_record(i))
    result = verify_log(tmp_path / "h.db", key=load_key(key))
    assert result.ok and result.signatures_checked
    assert result.checkpoints_checked == 2 and result.latest_checkpoint == 4
    other, _ = generate_key(tmp_path / "other.key", "hmac-sha256")
    assert verify_log(tmp_path / "h.db", key=load_key(other)).first_problem.kind == "bad-signature"


def test_privacy_is_applied_before_anything_is_stored(tmp_path, make_record, monkeypatch):
    monkeypatch.setenv("RAIL_AUDIT_SALT", "s1")
    path = tmp_path / "hashed.db"
    with AuditLog(path, privacy="hashed") as log:
        log.emit(make_record(1, prompt="very private prompt", output="very private output"))
    raw = path.read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("hashed.db-*"))
    assert b"very private" not in raw
    [(_, record)] = list(read_records(path))
    assert record.privacy == "hashed" and record.prompt.startswith("sha256:")
    assert b"s1" not in raw  # the salt itself is never stored
    with pytest.raises(AuditError, match="another hashing salt"):
        AuditLog(path, privacy="hashed", salt="s2")


@pytest.mark.parametrize("content", [b"", b"not a database at all" * 100])
def test_files_that_are_not_logs_are_refused_without_being_changed(tmp_path, content):
    path = tmp_path / "x.db"
    path.write_bytes(content)
    with pytest.raises(AuditError, match="not a rail audit log"):
        verify_log(path)
    if content:
        with pytest.raises(AuditError, match="not a rail audit log"):
            AuditLog(path)
    assert path.read_bytes() == content


def test_a_foreign_sqlite_database_is_not_taken_for_a_log(tmp_path):
    path = tmp_path / "app.db"
    _sql(path, "CREATE TABLE users (name TEXT)")
    before = path.read_bytes()
    with pytest.raises(AuditError, match="not a rail audit log"):
        AuditLog(path)
    assert path.read_bytes() == before


def test_checkpoint_every_needs_a_signing_key(tmp_path):
    with pytest.raises(AuditError, match="signing key"):
        AuditLog(tmp_path / "a.db", checkpoint_every=10)


_WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from conftest import build_record
    from rail.audit import AuditLog
    log = AuditLog({path!r}, privacy="full")
    worker, count = int(sys.argv[1]), int(sys.argv[2])
    for i in range(count):
        log.emit(build_record(1, request_id=f"w{{worker}}-{{i}}"))
        if i == 0:
            print("started", flush=True)
    print("done", flush=True)
""")


def _writer(path: Path, worker: int, count: int) -> subprocess.Popen:
    script = _WRITER.format(tests=str(Path(__file__).parent), path=str(path))
    return subprocess.Popen([sys.executable, "-c", script, str(worker), str(count)],
                            stdout=subprocess.PIPE, text=True)


def test_concurrent_writers_in_several_processes_lose_nothing(tmp_path):
    path = tmp_path / "shared.db"
    AuditLog(path).close()
    writers = [_writer(path, worker, 250) for worker in range(4)]
    for writer in writers:
        writer.communicate(timeout=300)
        assert writer.returncode == 0
    result = verify_log(path)
    assert result.ok, result.summary()
    ids = [r.request_id for _, r in read_records(path)]
    assert len(ids) == 1000 and len(set(ids)) == 1000
    for worker in range(4):  # each writer's own records keep their order
        mine = [int(i.split("-")[1]) for i in ids if i.startswith(f"w{worker}-")]
        assert mine == list(range(250))


def test_a_writer_killed_mid_write_leaves_a_verifiable_log(tmp_path):
    path = tmp_path / "killed.db"
    AuditLog(path).close()
    writer = _writer(path, 0, 1_000_000)
    assert writer.stdout.readline().strip() == "started"
    deadline = time.monotonic() + 60
    while len(AuditLog(path)) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    result = verify_log(path)
    assert result.ok, result.summary()
    assert result.size >= 200
    with AuditLog(path, privacy="full") as log:  # and the log keeps accepting records
        seq = log.emit(AuditRecord(request_id="after-kill"))
    after = verify_log(path)
    assert after.ok and after.size == seq
    # The writer may have been killed after its commit reached the WAL but before it updated the WAL index:
    # that record (never acknowledged to it) is recovered by the next writer, so seq can be one more.
    assert seq in (result.size + 1, result.size + 2)


def test_a_writer_killed_inside_its_transaction_leaves_no_partial_batch(tmp_path, ed25519_key):
    path = tmp_path / "stalled.db"
    kill_writer_inside_a_transaction(str(path), ed25519_key[0])
    result = verify_log(path, key=load_key(ed25519_key[1]))
    assert result.ok, result.summary()
    assert result.size == 10 and result.checkpoints_checked == 0  # none of the 15, nor their checkpoint
    with AuditLog(path, privacy="full") as log:
        assert log.emit(AuditRecord(request_id="after-kill")) == 11


def test_a_row_inserted_below_record_1_is_reported_as_inserted(signed_log):
    conn = sqlite3.connect(signed_log)
    columns = "time, request_id, verdict, prev, hash, data"
    row = conn.execute(f"SELECT {columns} FROM records WHERE seq = 1").fetchone()
    conn.execute("INSERT INTO records VALUES (0, ?, ?, ?, ?, ?, ?)", row)
    conn.commit()
    conn.close()
    problem = verify_log(signed_log).first_problem
    assert problem.kind == "inserted" and problem.seq == 0
    assert "inserted before record 1" in problem.message and "missing" not in problem.message


def test_a_directory_is_named_as_one(tmp_path):
    with pytest.raises(AuditError, match="is a directory, not a file"):
        verify_log(tmp_path)
    with pytest.raises(AuditError, match="is a directory, not a file"):
        AuditLog(tmp_path)


def test_an_empty_file_becomes_a_new_log(tmp_path, make_record):
    # Documented choice: a 0-byte file holds nothing to lose, and a log being created looks like one briefly.
    path = tmp_path / "empty.db"
    path.touch()
    with AuditLog(path, privacy="full") as log:
        log.emit(make_record(1))
    assert verify_log(path).ok and verify_log(path).size == 1


def test_redacted_logs_keep_one_salt_too(tmp_path, make_record):
    path = tmp_path / "redacted.db"
    with AuditLog(path, privacy="redacted", salt="one") as log:
        log.emit(make_record(1))
    with pytest.raises(AuditError, match="another hashing salt"):
        AuditLog(path, privacy="redacted", salt="two")
