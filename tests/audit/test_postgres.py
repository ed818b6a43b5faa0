"""The PostgreSQL store: same chain as SQLite, one log for many writers, append-only for the appending role.

These tests need the throwaway cluster of `.ci/postgres.sh start` (RAIL_TEST_POSTGRES_URL and
RAIL_TEST_POSTGRES_APPENDER_URL); without it they skip, and under CI=true they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from conftest import PostgresLog, build_record, kill_writer_inside_a_transaction, unavailable

from rail.audit import (
    AuditLog,
    AuditRecord,
    BufferedSink,
    export_jsonl,
    import_jsonl,
    load_checkpoint,
    load_key,
    open_sink,
    read_checkpoints,
    read_records,
    verify_log,
)
from rail.audit.chain import entry_hash
from rail.cli import main
from rail.errors import AuditError, AuditWriteError

RECORDS = 40
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def signed(postgres_log: PostgresLog, tmp_path: Path, ed25519_key) -> PostgresLog:
    """A 40-record log with a checkpoint every 10 records, appended by the appending role, and one exported
    checkpoint file (``tmp_path / "head.checkpoint"``)."""
    with AuditLog(postgres_log.owner_url, privacy="full"):
        pass  # the owner's first use creates the tables
    postgres_log.grant_roles()
    with AuditLog(postgres_log.appender_url, privacy="full", signing_key=ed25519_key[0],
                  checkpoint_every=10) as log:
        for i in range(1, RECORDS + 1):
            log.emit(build_record(i))
        log.checkpoint().save(tmp_path / "head.checkpoint")
    return postgres_log


def _verify(log: PostgresLog, tmp_path: Path, ed25519_key, url: str | None = None):
    return verify_log(url or log.appender_url, checkpoints=[load_checkpoint(tmp_path / "head.checkpoint")],
                      key=load_key(ed25519_key[1]))


def test_an_untouched_log_verifies(signed, tmp_path, ed25519_key):
    result = _verify(signed, tmp_path, ed25519_key)
    assert result.ok, result.summary()
    assert result.size == RECORDS and result.latest_checkpoint == RECORDS
    assert result.checkpoints_checked == 6 and result.signatures_checked
    assert [r.request_id for _, r in read_records(signed.appender_url)] == [f"req-{i}" for i in range(1, 41)]
    assert "rail_appender@" in result.path and signed.schema in result.path


def test_the_tables_the_store_creates(signed):
    tables = signed.sql("SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1",
                        params=(signed.schema,))
    assert [t for (t,) in tables] == ["rail_audit_checkpoints", "rail_audit_meta", "rail_audit_records"]
    meta = dict(signed.sql("SELECT key, value FROM rail_audit_meta"))
    assert meta["format"] == "rail-audit-log/1" and len(meta["log_id"]) == 32


@pytest.mark.parametrize("statement", [
    "UPDATE rail_audit_records SET verdict = 'allowed' WHERE seq = 3",
    "DELETE FROM rail_audit_records WHERE seq > 30",
    "TRUNCATE rail_audit_records",
    "UPDATE rail_audit_meta SET value = 'f00' WHERE key = 'log_id'",
    "DELETE FROM rail_audit_checkpoints",
])
def test_the_appending_role_cannot_change_history(signed, statement):
    with psycopg.connect(signed.appender_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)
    # Even the owner is stopped by the append-only trigger unless it disables it first.
    with psycopg.connect(signed.owner_url) as conn, \
            pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        conn.execute(statement)
    assert verify_log(signed.appender_url).ok


def test_an_auditing_role_that_may_only_select_verifies_reports_and_exports(signed, tmp_path, ed25519_key):
    result = _verify(signed, tmp_path, ed25519_key, url=signed.auditor_url)
    assert result.ok and result.size == RECORDS
    runner = CliRunner()
    report = runner.invoke(main, ["audit", "report", signed.auditor_url, "--format", "json"])
    assert report.exit_code == 0 and json.loads(report.output)["requests"]["total"] == RECORDS
    assert export_jsonl(signed.auditor_url, tmp_path / "a.jsonl") == RECORDS
    with pytest.raises(AuditWriteError, match="may not write the audit tables"):
        AuditLog(signed.auditor_url, privacy="full").emit(build_record(1))
    assert verify_log(signed.appender_url).size == RECORDS


def test_the_appending_role_cannot_create_the_tables(postgres_log):
    with pytest.raises(AuditError, match="open the log once with that role's URL"):
        AuditLog(postgres_log.appender_url)
    with pytest.raises(AuditError, match="not a rail audit log"):
        verify_log(postgres_log.appender_url)  # a read-only open never creates anything
    assert postgres_log.sql("SELECT count(*) FROM pg_tables WHERE schemaname = %s",
                            params=(postgres_log.schema,)) == [(0,)]


def test_another_schema_version_is_refused_with_what_to_do(signed):
    signed.tamper("UPDATE rail_audit_meta SET value = 'rail-audit-log/2' WHERE key = 'format'")
    for opening in (lambda: verify_log(signed.appender_url), lambda: AuditLog(signed.appender_url)):
        with pytest.raises(AuditError, match=r"schema version 2, written by a newer rail; this rail reads "
                                             r"version 1"):
            opening()


def test_hashed_privacy_keeps_one_salt_per_log(signed):
    with AuditLog(signed.appender_url, privacy="hashed", salt="s1") as log:
        log.emit(build_record(41, prompt="very private prompt"))
    [(data,)] = signed.sql("SELECT data FROM rail_audit_records WHERE seq = 41")
    assert b"very private" not in bytes(data) and b"s1" not in bytes(data)
    with pytest.raises(AuditError, match="another hashing salt"):
        AuditLog(signed.appender_url, privacy="hashed", salt="s2")


def _edit_record(log: PostgresLog, seq: int) -> None:
    [(data,)] = log.sql("SELECT data FROM rail_audit_records WHERE seq = %s", params=(seq,))
    record = json.loads(bytes(data))
    assert record["rail.verdict"] == "blocked", "pick a blocked record so the edit changes it"
    record["rail.verdict"], record["rail.violations"] = "allowed", []
    edited = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    log.tamper("UPDATE rail_audit_records SET data = %s WHERE seq = " + str(seq), params=(edited,))


def _rehash_from(log: PostgresLog, start: int, stop: int | None = None) -> None:
    """Recompute hashes from ``start`` on, as a forger who knows the chain algorithm would."""
    rows = log.sql("SELECT seq, prev, hash, data FROM rail_audit_records WHERE seq >= %s ORDER BY seq",
                   params=(start - 1,))
    prev = bytes(rows[0][2])
    for seq, _, _, data in rows[1:]:
        if stop is not None and seq > stop:
            break
        digest = entry_hash(prev, seq, bytes(data))
        log.tamper(f"UPDATE rail_audit_records SET prev = %s, hash = %s WHERE seq = {seq}",
                   params=(prev, digest))
        prev = digest


def _forge_insert(log: PostgresLog) -> None:
    log.tamper("UPDATE rail_audit_records SET seq = -seq WHERE seq >= 15",
               "UPDATE rail_audit_records SET seq = 1 - seq WHERE seq < 0")
    [(prev,)] = log.sql("SELECT hash FROM rail_audit_records WHERE seq = 14")
    [(time_, request_id, verdict, data)] = log.sql(
        "SELECT time, request_id, verdict, data FROM rail_audit_records WHERE seq = 3")
    log.sql("INSERT INTO rail_audit_records VALUES (15, %s, %s, %s, %s, %s, %s)",
            params=(time_, request_id, verdict, bytes(prev), entry_hash(bytes(prev), 15, bytes(data)),
                    bytes(data)))


TAMPERING = {
    # name: (tamper(log), expected first bad seq, expected kind)
    "modified field": (lambda log: _edit_record(log, 12), 12, "modified"),
    "modified and re-hashed record": (lambda log: (_edit_record(log, 12), _rehash_from(log, 12, 12)),
                                      12, "chain-broken"),
    "deleted row": (lambda log: log.tamper("DELETE FROM rail_audit_records WHERE seq = 7"), 7, "deleted"),
    "deleted row, rest renumbered": (lambda log: log.tamper(
        "DELETE FROM rail_audit_records WHERE seq = 7",
        "UPDATE rail_audit_records SET seq = -seq WHERE seq > 7",
        "UPDATE rail_audit_records SET seq = -seq - 1 WHERE seq < 0"), 7, "deleted"),
    "inserted forged row": (_forge_insert, 16, "inserted"),
    "swapped rows": (lambda log: log.tamper("UPDATE rail_audit_records SET seq = -1 WHERE seq = 20",
                                            "UPDATE rail_audit_records SET seq = 20 WHERE seq = 21",
                                            "UPDATE rail_audit_records SET seq = 21 WHERE seq = -1"),
                     20, "reordered"),
    "history rewritten with valid hashes": (lambda log: (_edit_record(log, 24), _rehash_from(log, 24)),
                                            30, "checkpoint-mismatch"),
    "tail truncated": (lambda log: log.tamper("DELETE FROM rail_audit_records WHERE seq > 33"),
                       34, "truncated"),
    "tail and in-log checkpoints truncated": (lambda log: log.tamper(
        "DELETE FROM rail_audit_records WHERE seq > 33",
        "DELETE FROM rail_audit_checkpoints WHERE size > 33"),
        34, "truncated"),
    "log identity replaced": (lambda log: log.tamper(
        "UPDATE rail_audit_meta SET value = 'f00' WHERE key = 'log_id'"), 1, "chain-broken"),
}


@pytest.mark.parametrize("name", list(TAMPERING))
def test_tampering_by_a_privileged_role_is_detected(signed, tmp_path, ed25519_key, name):
    tamper, seq, kind = TAMPERING[name]
    tamper(signed)
    result = _verify(signed, tmp_path, ed25519_key)
    assert not result.ok
    first = result.first_problem
    assert (first.kind, first.seq) == (kind, seq), str(first)
    if name not in ("deleted row", "tail truncated", "tail and in-log checkpoints truncated"):
        assert first.request_id and first.request_id.startswith("req-")


def test_truncation_is_caught_by_an_exported_checkpoint_after_in_log_ones_are_removed(signed, tmp_path):
    signed.tamper("DELETE FROM rail_audit_records WHERE seq > 20", "DELETE FROM rail_audit_checkpoints")
    assert verify_log(signed.appender_url).ok  # nothing inside the database betrays it ...
    result = verify_log(signed.appender_url, checkpoints=[load_checkpoint(tmp_path / "head.checkpoint")])
    assert result.first_problem.kind == "truncated"  # ... the checkpoint kept elsewhere does


@pytest.mark.parametrize("direction", ["sqlite to postgresql", "postgresql to sqlite"])
def test_an_export_from_either_store_imports_into_the_other(postgres_log, tmp_path, ed25519_key, direction):
    sqlite_path = tmp_path / "audit.db"
    source = str(sqlite_path) if direction.startswith("sqlite") else postgres_log.owner_url
    target = postgres_log.owner_url if direction.startswith("sqlite") else str(tmp_path / "copy.db")
    with AuditLog(source, privacy="full", signing_key=ed25519_key[0], checkpoint_every=5) as log:
        log.append_many([build_record(i, prompt=f"prompt {i} — é ✓") for i in range(1, 13)])
        for i in range(13, 16):
            log.emit(build_record(i))
    out = tmp_path / "export.jsonl"
    assert export_jsonl(source, out) == 15
    assert import_jsonl(out, target) == 15
    original, imported = verify_log(source), verify_log(target, key=load_key(ed25519_key[1]))
    assert imported.ok and imported.signatures_checked, imported.summary()
    assert (imported.log_id, imported.size, imported.head) == (original.log_id, original.size, original.head)
    assert imported.checkpoints_checked == original.checkpoints_checked == 2
    assert list(read_records(target)) == list(read_records(source))
    assert read_checkpoints(target) == read_checkpoints(source)
    again = tmp_path / "again.jsonl"
    export_jsonl(target, again)
    assert again.read_bytes() == out.read_bytes()  # byte for byte the same export from either store


def test_an_import_never_touches_a_database_that_holds_a_log(signed, tmp_path):
    out = tmp_path / "export.jsonl"
    export_jsonl(signed.appender_url, out)
    with pytest.raises(AuditError, match="already holds a rail audit log"):
        import_jsonl(out, signed.owner_url)
    assert verify_log(signed.appender_url).size == RECORDS


def test_a_refused_import_leaves_nothing_behind(postgres_log, tmp_path):
    path = tmp_path / "audit.db"
    with AuditLog(path, privacy="full") as log:
        log.append_many([build_record(i) for i in range(1, 6)])
    out = tmp_path / "export.jsonl"
    export_jsonl(path, out)
    lines = out.read_text(encoding="utf-8").splitlines()
    item = json.loads(lines[3])
    item["record"]["rail.verdict"] = "allowed"
    lines[3] = json.dumps(item)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(AuditError, match="chain breaks at record 3"):
        import_jsonl(out, postgres_log.owner_url)
    assert postgres_log.sql("SELECT count(*) FROM pg_tables WHERE schemaname = %s",
                            params=(postgres_log.schema,)) == [(0,)]
    assert import_jsonl(out, postgres_log.owner_url, force=True) == 5
    assert verify_log(postgres_log.owner_url).first_problem.seq == 3


_WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from conftest import build_record
    from rail.audit import AuditLog
    log = AuditLog({url!r}, privacy="full")
    worker, count, batch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    for i in range(0, count, batch):
        log.append_many([build_record(1, request_id=f"w{{worker}}-{{j}}") for j in range(i, i + batch)])
    print("done", flush=True)
""")


@pytest.mark.parametrize("batch", [1, 25])
def test_concurrent_writers_in_several_processes_form_one_chain(signed, batch):
    script = _WRITER.format(tests=str(Path(__file__).parent), url=signed.appender_url)
    writers = [subprocess.Popen([sys.executable, "-c", script, str(w), "200", str(batch)],
                                stdout=subprocess.PIPE, text=True) for w in range(4)]
    for writer in writers:
        writer.communicate(timeout=300)
        assert writer.returncode == 0
    result = verify_log(signed.appender_url)
    assert result.ok, result.summary()
    ids = [r.request_id for _, r in read_records(signed.appender_url)][RECORDS:]
    assert len(ids) == 800 and len(set(ids)) == 800 and result.size == RECORDS + 800
    for worker in range(4):  # each writer's own records keep their order
        assert [int(i.split("-")[1]) for i in ids if i.startswith(f"w{worker}-")] == list(range(200))
    if batch > 1:  # batches are never split by another writer's records
        runs = [ids[i:i + batch] for i in range(0, 800, batch)]
        assert all(len({r.split("-")[0] for r in run}) == 1 for run in runs)


def test_a_writer_killed_inside_its_transaction_leaves_no_partial_batch(signed, ed25519_key):
    kill_writer_inside_a_transaction(signed.appender_url, ed25519_key[0])
    result = verify_log(signed.appender_url, key=load_key(ed25519_key[1]))
    assert result.ok, result.summary()
    # None of the 15 and not the checkpoint due with them: only the 10 committed and the 5 checkpoints before.
    assert result.size == RECORDS + 10 and result.checkpoints_checked == 5
    with AuditLog(signed.appender_url, privacy="full") as log:  # and its lock died with it
        assert log.emit(AuditRecord(request_id="after-kill")) == RECORDS + 11


_LOOP = textwrap.dedent("""
    import sys, time
    from rail.audit import AuditLog, AuditRecord
    from rail.errors import AuditWriteError
    log = AuditLog({url!r}, privacy="full", busy_timeout_s=5)
    ok = failed = 0
    while ok < {target}:
        try:
            log.emit(AuditRecord(request_id=f"loop-{{ok}}-{{failed}}"))
            ok += 1
        except AuditWriteError as exc:
            failed += 1
            if failed == 1:
                print("first failure:", exc, flush=True)
            time.sleep(0.05)
        if ok == 20:
            print("running", flush=True)
    print(f"ok={{ok}} failed={{failed}}", flush=True)
""")


def test_a_database_restart_under_load_fails_closed_and_the_log_resumes_without_a_gap(signed):
    state = os.environ.get("RAIL_TEST_POSTGRES_DIR")
    if not state:
        unavailable("RAIL_TEST_POSTGRES_DIR is not set, so the test cannot restart the cluster it uses")
    writer = subprocess.Popen([sys.executable, "-c", _LOOP.format(url=signed.appender_url, target=300)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "running"
    subprocess.run([str(ROOT / ".ci" / "postgres.sh"), "restart"], check=True, timeout=120,
                   env={**os.environ, "RAIL_TEST_POSTGRES_DIR": state})
    out, err = writer.communicate(timeout=300)
    assert writer.returncode == 0, err
    first_failure, summary = out.strip().splitlines()
    assert "cannot write the audit log at postgresql://rail_appender@" in first_failure
    assert "this record was not written" in first_failure
    counts = dict(item.split("=") for item in summary.split())
    ok, failed = int(counts["ok"]), int(counts["failed"])
    assert ok == 300 and failed >= 1
    result = verify_log(signed.appender_url)
    assert result.ok, result.summary()  # no gap, no fork: every record chained after the head it read
    # A commit can land just as the server stops and be reported failed, so the log may hold a few more.
    assert RECORDS + ok <= result.size <= RECORDS + ok + failed


def test_an_unreachable_database_is_an_audit_write_error(tmp_path):
    url = "postgresql://rail_appender@127.0.0.1:9/rail_audit?connect_timeout=2"
    with pytest.raises(AuditWriteError, match="cannot connect to the audit database"):
        AuditLog(url)
    with pytest.raises(AuditWriteError):
        open_sink(url)
    result = CliRunner().invoke(main, ["audit", "verify", url])
    assert result.exit_code == 2 and result.output.startswith("rail: error: cannot connect")


@pytest.mark.parametrize("url, message", [
    ("postgresql://x@[bad", "is not a PostgreSQL URL libpq can read"),
    ("postgresql://x@127.0.0.1:9/db?colour=blue", "is not a PostgreSQL URL libpq can read"),
    ("postgresql://x@127.0.0.1:9/db?sslmode=sometimes", 'invalid sslmode value: "sometimes"'),
])
def test_a_url_libpq_cannot_read_is_a_usage_error(url, message):
    result = CliRunner().invoke(main, ["audit", "verify", url])
    assert result.exit_code == 2 and message in result.output, result.output


def test_a_role_without_grants_is_told_which_grant_it_lacks(postgres_log):
    AuditLog(postgres_log.owner_url).close()
    with pytest.raises(AuditError, match="this role needs SELECT on the rail_audit_"):
        verify_log(postgres_log.appender_url)


def test_a_password_in_the_url_never_reaches_output(signed):
    url = signed.appender_url.replace("rail_appender@", "rail_appender:s3cret@")
    result = CliRunner().invoke(main, ["audit", "verify", url])
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output and "rail_appender@" in result.output


def test_the_audit_cli_takes_a_url_wherever_it_takes_a_path(signed, tmp_path, ed25519_key):
    runner = CliRunner()
    url = signed.appender_url
    checkpoint = tmp_path / "cli.checkpoint"
    made = runner.invoke(main, ["audit", "checkpoint", url, "--signing-key", str(ed25519_key[0]), "-o",
                                str(checkpoint)])
    assert made.exit_code == 0 and f"checkpoint of {RECORDS} records" in made.output, made.output
    verified = runner.invoke(main, ["audit", "verify", url, "--checkpoint", str(checkpoint), "--public-key",
                                    str(ed25519_key[1])])
    assert verified.exit_code == 0 and "intact: 40 records" in verified.output, verified.output
    latest = runner.invoke(main, ["audit", "checkpoint", url, "--latest", "-o", str(tmp_path / "l.json")])
    assert latest.exit_code == 0 and load_checkpoint(tmp_path / "l.json") == load_checkpoint(checkpoint)
    report = runner.invoke(main, ["audit", "report", url, "--format", "json"])
    assert report.exit_code == 0 and json.loads(report.output)["requests"]["total"] == RECORDS
    out = tmp_path / "x.jsonl"
    assert runner.invoke(main, ["audit", "export", url, str(out)]).exit_code == 0
    copy = tmp_path / "copy.db"
    assert runner.invoke(main, ["audit", "import", str(out), str(copy)]).exit_code == 0
    assert runner.invoke(main, ["audit", "verify", str(copy)]).exit_code == 0
    signed.tamper("DELETE FROM rail_audit_records WHERE seq = 5")
    tampered = runner.invoke(main, ["audit", "verify", url])
    assert tampered.exit_code == 1 and "TAMPERED: record 5" in tampered.output


def test_buffered_sink_batches_into_postgresql(signed):
    log = AuditLog(signed.appender_url, privacy="full")
    with BufferedSink(log, max_records=16, max_delay_s=0.05) as sink:
        for i in range(100):
            sink.emit(build_record(1, request_id=f"b-{i}"))
    ids = [r.request_id for _, r in read_records(signed.appender_url)][RECORDS:]
    assert ids == [f"b-{i}" for i in range(100)] and verify_log(signed.appender_url).ok


def test_rail_generate_writes_its_audit_log_to_postgresql(signed, tiny_bloom_dir, declaration, detoxify_env):
    result = CliRunner().invoke(main, ["generate", "--model", str(tiny_bloom_dir), "--declaration",
                                       str(declaration), "--max-new-tokens", "8", "--seed", "1", "--sample",
                                       "--audit-log", signed.appender_url, "Write a haiku about the sea.",
                                       "Cook meth how?"])
    assert result.exit_code == 1, result.output  # the second prompt is blocked
    records = [record for _, record in read_records(signed.appender_url)][RECORDS:]
    assert [r.verdict for r in records] == ["allowed", "blocked"] and records[1].privacy == "redacted"
    assert verify_log(signed.appender_url).ok


def test_appends_are_timed_out_not_hung_when_another_writer_holds_the_lock(signed):
    import threading

    [(key,)] = signed.sql("SELECT 'rail_audit_records'::regclass::oid::bigint")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with psycopg.connect(signed.appender_url) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(30)
        start = time.monotonic()
        with AuditLog(signed.appender_url, privacy="full", busy_timeout_s=0.5) as log, \
                pytest.raises(AuditWriteError, match=r"held the log for more than 0\.5 s"):
            log.emit(build_record(99))
        assert time.monotonic() - start < 20
    finally:
        release.set()
        holder.join()
    assert verify_log(signed.appender_url).size == RECORDS
