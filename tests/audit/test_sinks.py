"""Sinks: JSON lines, batching, opening by target, and what each does when the disk fills up."""

from __future__ import annotations

import json

import pytest
from conftest import fill_disk

from rail.audit import (
    AuditLog,
    AuditSink,
    BufferedSink,
    JsonlSink,
    canonical_json,
    open_sink,
    read_records,
    verify_log,
)
from rail.errors import AuditError, AuditWriteError, RailError


def test_jsonl_sink_appends_one_canonical_line_per_record(tmp_path, make_record):
    path = tmp_path / "audit.jsonl"
    records = [make_record(i) for i in range(1, 4)]
    with JsonlSink(path, privacy="full", fsync=True) as sink:
        assert isinstance(sink, AuditSink)
        for record in records:
            sink.emit(record)
    lines = path.read_bytes().splitlines()
    assert lines == [canonical_json(r.to_dict()) for r in records]
    assert path.stat().st_mode & 0o777 == 0o600
    with JsonlSink(path, privacy="full") as sink:
        sink.emit(records[0])
    assert len(path.read_bytes().splitlines()) == 4


def test_buffered_sink_commits_everything_in_order(tmp_path, make_record):
    path = tmp_path / "buffered.db"
    log = AuditLog(path, privacy="full")
    with BufferedSink(log, max_records=7, max_delay_s=0.05) as sink:
        for i in range(1, 51):
            sink.emit(make_record(i))
    assert [r.request_id for _, r in read_records(path)] == [f"req-{i}" for i in range(1, 51)]
    assert verify_log(path).ok


@pytest.mark.parametrize("name, kind", [("audit.jsonl", JsonlSink), ("audit.db", AuditLog),
                                        ("audit", AuditLog)])
def test_open_sink_picks_the_sink_by_target(tmp_path, make_record, name, kind):
    sink = open_sink(tmp_path / name, privacy="full")
    assert type(sink) is kind
    sink.emit(make_record(1))
    sink.close()


def test_open_sink_refuses_checkpoints_for_plain_json_lines(tmp_path, ed25519_key):
    with pytest.raises(AuditError, match="no chain to sign"):
        open_sink(tmp_path / "a.jsonl", signing_key=ed25519_key[0])
    assert not (tmp_path / "a.jsonl").exists()


def test_jsonl_sink_on_a_device_that_is_always_full(make_record):
    # /dev/full answers every write with ENOSPC: the OS-level error a full disk gives.
    with JsonlSink("/dev/full", privacy="full") as sink, \
            pytest.raises(AuditWriteError, match=r"disk holding audit file /dev/full is full"):
        sink.emit(make_record(1))


def test_jsonl_sink_on_a_full_disk_keeps_only_whole_records(small_disk, make_record):
    path = small_disk / "audit.jsonl"
    sink = JsonlSink(path, privacy="full")
    for i in range(1, 4):
        sink.emit(make_record(i))
    before = path.read_bytes()
    fill_disk(small_disk)
    # Longer than the free room left in the file's last page: the write is cut short mid-line.
    with pytest.raises(AuditWriteError, match=f"disk holding audit file {path} is full") as caught:
        sink.emit(make_record(4, prompt="x" * 6000))
    assert isinstance(caught.value, RailError)
    assert path.read_bytes() == before  # the fragment was taken back; earlier lines untouched
    ids = [json.loads(line)["rail.request_id"] for line in before.splitlines()]
    assert ids == ["req-1", "req-2", "req-3"]
    sink.close()


def test_sqlite_log_on_a_full_disk_names_the_cause_and_loses_nothing(small_disk, make_record):
    path = small_disk / "audit.db"
    log = AuditLog(path, privacy="full")
    log.append_many([make_record(i) for i in range(1, 6)])
    filler = fill_disk(small_disk)
    committed = 5
    with pytest.raises(AuditWriteError) as caught:
        for i in range(6, 10_000):  # SQLite reuses free room in its WAL before it needs a new page
            log.emit(make_record(i))
            committed += 1
    message = str(caught.value)
    assert f"disk holding audit log {path} is full" in message and "no transaction" not in message
    result = verify_log(path)
    assert result.ok, result.summary()
    assert result.size == committed
    filler.unlink()  # room again: the same log carries on where it stopped
    assert log.emit(make_record(10_001)) == committed + 1
    log.close()
    assert verify_log(path).ok and verify_log(path).size == committed + 1


def test_buffered_sink_fails_closed_while_the_log_cannot_write_and_recovers(small_disk, make_record):
    log = AuditLog(small_disk / "audit.db", privacy="full")
    sink = BufferedSink(log, max_records=4, max_delay_s=0.05)
    filler = fill_disk(small_disk)
    emitted = 0
    with pytest.raises(AuditWriteError):
        for i in range(1, 10_000):
            sink.emit(make_record(i, prompt="y" * 2000))
            emitted += 1
            sink.flush()
    with pytest.raises(AuditWriteError, match="cannot take records now"):
        sink.emit(make_record(0))
    filler.unlink()
    sink.close()  # the queued record whose flush failed is written now: nothing accepted is dropped
    ids = [record.request_id for _, record in read_records(small_disk / "audit.db")]
    assert ids == [f"req-{i}" for i in range(1, emitted + 1)] and verify_log(small_disk / "audit.db").ok


def test_the_gate_fails_closed_when_its_audit_sink_cannot_write(tiny_bloom_dir, declaration, tiny_detoxify):
    from rail.gate import GatedGenerator
    from rail.generation import GenerationParams
    from rail.scoring import ScorerSettings

    checkpoint, config_dir = tiny_detoxify
    models = ("original", "unbiased", "multilingual")
    scorer = ScorerSettings(checkpoints=dict.fromkeys(models, str(checkpoint)),
                            configs=dict.fromkeys(models, str(config_dir)))
    with JsonlSink("/dev/full", privacy="full") as sink:
        gate = GatedGenerator(model=str(tiny_bloom_dir), declaration=declaration, scorer=scorer, sink=sink,
                              params=GenerationParams(max_new_tokens=4, seed=1))
        with pytest.raises(AuditWriteError, match="is full"):
            gate.generate("Write a haiku about the sea.")  # no result without its record


def test_rail_generate_prints_nothing_unaudited_on_a_full_disk(small_disk, tiny_bloom_dir, declaration,
                                                                detoxify_env):
    from click.testing import CliRunner

    from rail.cli import main

    log = small_disk / "audit.jsonl"
    log.touch()
    fill_disk(small_disk)
    result = CliRunner().invoke(main, ["generate", "--model", str(tiny_bloom_dir), "--declaration",
                                       str(declaration), "--max-new-tokens", "4", "--audit-log", str(log),
                                       "Write a haiku about the sea."])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"rail: error: the disk holding audit file {log} is full")
    assert log.read_bytes() == b""
