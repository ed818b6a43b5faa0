"""``rail audit``: exit 0 intact, 1 tampered, 2 usage errors; keys, checkpoints, export/import, reports."""

from __future__ import annotations

import json
import sqlite3
import stat

import pytest
from click.testing import CliRunner

from rail.audit import AuditLog
from rail.cli import main


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def log_and_key(tmp_path, runner, make_record):
    key = tmp_path / "audit.key"
    result = runner.invoke(main, ["audit", "keygen", str(key)])
    assert result.exit_code == 0, result.output
    path = tmp_path / "audit.db"
    with AuditLog(path, privacy="full", signing_key=key) as log:
        log.append_many([make_record(i) for i in range(1, 21)])
    return path, key


def test_keygen_writes_a_private_key_only_its_owner_can_read(tmp_path, runner):
    key = tmp_path / "k"
    assert runner.invoke(main, ["audit", "keygen", str(key)]).exit_code == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (tmp_path / "k.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    again = runner.invoke(main, ["audit", "keygen", str(key)])
    assert again.exit_code == 2 and "refusing to overwrite" in again.output


def test_checkpoint_then_verify_with_the_public_key_only(tmp_path, runner, log_and_key):
    path, key = log_and_key
    checkpoint = tmp_path / "elsewhere.checkpoint"
    made = runner.invoke(main, ["audit", "checkpoint", str(path), "--signing-key", str(key), "-o",
                                str(checkpoint)])
    assert made.exit_code == 0, made.output
    args = ["audit", "verify", str(path), "--checkpoint", str(checkpoint), "--public-key", f"{key}.pub"]
    ok = runner.invoke(main, args)
    assert ok.exit_code == 0 and "intact: 20 records" in ok.output

    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM records WHERE seq > 15")
    conn.execute("DELETE FROM checkpoints")
    conn.commit()
    conn.close()
    bad = runner.invoke(main, [*args, "--json"])
    assert bad.exit_code == 1
    verdict = json.loads(bad.output)
    assert verdict["verdict"] == "tampered" and verdict["problems"][0]["kind"] == "truncated"
    assert verdict["problems"][0]["seq"] == 16


def test_verify_names_the_first_bad_record(runner, log_and_key):
    path, _ = log_and_key
    conn = sqlite3.connect(path)
    conn.execute("UPDATE records SET data = replace(data, 'prompt 9', 'prompt X') WHERE seq = 9")
    conn.commit()
    conn.close()
    result = runner.invoke(main, ["audit", "verify", str(path)])
    assert result.exit_code == 1
    assert "TAMPERED: record 9 (request req-9): modified" in result.output


@pytest.mark.parametrize("args, message", [
    (["audit", "verify", "{tmp}/missing.db"], "does not exist"),
    (["audit", "verify", "{tmp}/notalog.db"], "not a rail audit log"),
    (["audit", "verify", "{log}", "--public-key", "{tmp}/missing.pub"], "does not exist"),
    (["audit", "verify", "{log}", "--public-key", "{tmp}/notalog.db"], "not a rail checkpoint key"),
    (["audit", "verify", "{log}", "--hmac-key", "{key}.pub"], "not an HMAC key"),
    (["audit", "verify", "{log}", "--checkpoint", "{tmp}/notalog.db"], "cannot read checkpoint"),
    (["audit", "report", "{log}", "--since", "last tuesday"], "ISO 8601"),
    (["audit", "report", "{log}", "--since", "2025-03-05", "--until", "2025-03-01"], "is after"),
    (["audit", "checkpoint", "{log}", "-o", "{tmp}/c.json"], "exactly one of"),
    (["audit", "import", "{tmp}/notalog.db", "{tmp}/new.db"], "not a rail audit export"),
    (["audit", "import", "{tmp}/notalog.db", "{log}"], "already exists"),
])
def test_usage_errors_exit_2_with_a_message(tmp_path, runner, log_and_key, args, message):
    path, key = log_and_key
    (tmp_path / "notalog.db").write_text("hello", encoding="utf-8")
    args = [a.format(tmp=tmp_path, log=path, key=key) for a in args]
    result = runner.invoke(main, args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_export_import_through_the_cli(tmp_path, runner, log_and_key):
    path, _ = log_and_key
    out, copy = tmp_path / "out.jsonl", tmp_path / "copy.db"
    assert runner.invoke(main, ["audit", "export", str(path), str(out)]).exit_code == 0
    assert runner.invoke(main, ["audit", "import", str(out), str(copy)]).exit_code == 0
    assert runner.invoke(main, ["audit", "verify", str(copy)]).exit_code == 0


@pytest.mark.parametrize("fmt, marker", [("html", "<!DOCTYPE html>"), ("md", "**Integrity: INTACT**"),
                                         ("json", '"verdict": "intact"')])
def test_report_formats(tmp_path, runner, log_and_key, fmt, marker):
    path, _ = log_and_key
    out = tmp_path / f"report.{fmt}"
    result = runner.invoke(main, ["audit", "report", str(path), "--format", fmt, "-o", str(out),
                                  "--since", "2025-03-01", "--until", "2025-03-31"])
    assert result.exit_code == 0, result.output
    assert marker in out.read_text(encoding="utf-8")


def test_read_only_commands_do_not_turn_an_empty_file_into_a_log(tmp_path, runner):
    empty = tmp_path / "empty.db"
    empty.touch()
    for args in (["checkpoint", str(empty), "--latest", "-o", str(tmp_path / "c.json")],
                 ["verify", str(empty)], ["export", str(empty), str(tmp_path / "out.jsonl")],
                 ["report", str(empty)]):
        result = runner.invoke(main, ["audit", *args])
        assert result.exit_code == 2 and "not a rail audit log" in result.output, (args, result.output)
    assert empty.stat().st_size == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


def test_checkpoint_refuses_to_sign_a_tampered_log(tmp_path, runner, log_and_key):
    path, key = log_and_key
    conn = sqlite3.connect(path)
    conn.execute("UPDATE records SET data = replace(data, 'prompt 9', 'prompt X') WHERE seq = 9")
    conn.commit()
    conn.close()
    out = tmp_path / "c.json"
    args = ["audit", "checkpoint", str(path), "--signing-key", str(key), "-o", str(out)]
    result = runner.invoke(main, args)
    assert result.exit_code == 1
    assert "record 9 (request req-9): modified" in result.output and "refusing to sign" in result.output
    assert not out.exists()
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM checkpoints").fetchone() == (0,)


@pytest.mark.parametrize("args, message", [
    (["audit", "verify", "{tmp}"], "is a directory, not a file"),
    (["audit", "import", "{out}", "{tmp}/nowhere/new.db"], "nowhere does not exist"),
    (["audit", "checkpoint", "{tmp}/missing.db", "--latest", "-o", "{tmp}/c.json"], "does not exist"),
])
def test_more_usage_errors_exit_2(tmp_path, runner, log_and_key, args, message):
    path, _ = log_and_key
    out = tmp_path / "out.jsonl"
    assert runner.invoke(main, ["audit", "export", str(path), str(out)]).exit_code == 0
    result = runner.invoke(main, [a.format(tmp=tmp_path, out=out) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_verify_with_the_wrong_public_key_prints_one_summary(tmp_path, runner, make_record, other_key):
    key = tmp_path / "writer.key"
    assert runner.invoke(main, ["audit", "keygen", str(key)]).exit_code == 0
    path = tmp_path / "many.db"
    with AuditLog(path, privacy="full", signing_key=key, checkpoint_every=1) as log:
        for i in range(1, 31):
            log.emit(make_record(i))
    result = runner.invoke(main, ["audit", "verify", str(path), "--public-key", str(other_key[1])])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) <= 2, result.output  # the verdict and at most one note, not a line per checkpoint
    assert "30 of 30 checkpoints were signed with another key" in lines[0]
    assert "stored checkpoint of size 1 signed" in lines[0] and "wrong key" in lines[0]
    verdict = json.loads(runner.invoke(main, ["audit", "verify", str(path), "--public-key",
                                              str(other_key[1]), "--json"]).output)
    assert [p["kind"] for p in verdict["problems"]] == ["bad-signature"]
    right = runner.invoke(main, ["audit", "verify", str(path), "--public-key", f"{key}.pub"])
    assert right.exit_code == 0 and "intact: 30 records" in right.output
