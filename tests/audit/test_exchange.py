"""Export to JSON lines and import back: the chain survives; broken or clashing imports are refused."""

from __future__ import annotations

import json

import pytest

from rail.audit import AuditLog, export_jsonl, import_jsonl, load_key, read_records, verify_log
from rail.errors import AuditError


@pytest.fixture
def exported(tmp_path, make_record, ed25519_key):
    log_path = tmp_path / "audit.db"
    with AuditLog(log_path, privacy="full", signing_key=ed25519_key[0], checkpoint_every=5) as log:
        log.append_many([make_record(i, prompt=f"prompt {i} — é ✓") for i in range(1, 13)])
    out = tmp_path / "audit.jsonl"
    assert export_jsonl(log_path, out) == 12
    return log_path, out


def test_export_import_round_trip_keeps_records_chain_and_checkpoints(tmp_path, exported, ed25519_key):
    log_path, out = exported
    copy = tmp_path / "copy.db"
    assert import_jsonl(out, copy) == 12
    original, imported = verify_log(log_path), verify_log(copy, key=load_key(ed25519_key[1]))
    assert imported.ok and imported.signatures_checked
    assert (imported.log_id, imported.size, imported.head) == (original.log_id, original.size, original.head)
    assert imported.checkpoints_checked == original.checkpoints_checked == 1  # one batch crossed 5 and 10
    assert list(read_records(copy)) == list(read_records(log_path))


def test_import_refuses_a_tampered_export_unless_forced(tmp_path, exported):
    _, out = exported
    lines = out.read_text(encoding="utf-8").splitlines()
    item = json.loads(lines[3])  # record 3 was blocked; the forger makes it look allowed
    assert item["record"]["rail.verdict"] == "blocked"
    item["record"]["rail.verdict"] = "allowed"
    lines[3] = json.dumps(item)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    target = tmp_path / "refused.db"
    with pytest.raises(AuditError, match="chain breaks at record 3"):
        import_jsonl(out, target)
    assert not target.exists() and not list(tmp_path.glob(".refused.db*"))
    forced = tmp_path / "forced.db"
    assert import_jsonl(out, forced, force=True) == 12
    result = verify_log(forced)
    assert not result.ok and result.first_problem.seq == 3


def test_import_never_touches_an_existing_log(tmp_path, exported):
    log_path, out = exported
    before = log_path.read_bytes()
    with pytest.raises(AuditError, match="already exists"):
        import_jsonl(out, log_path)
    assert log_path.read_bytes() == before


@pytest.mark.parametrize("content, message", [
    ("", "not a rail audit export"),
    ('{"format": "something-else"}\n', "not a rail audit export"),
    ('{"format": "rail-audit-export/1", "log_id": "x"}\nnot json\n', ":2: not JSON"),
    ('{"format": "rail-audit-export/1", "log_id": "x"}\n{"seq": 1}\n', ":2: malformed record line"),
])
def test_malformed_exports_are_reported_with_their_line(tmp_path, content, message):
    source = tmp_path / "bad.jsonl"
    source.write_text(content, encoding="utf-8")
    with pytest.raises(AuditError, match=message):
        import_jsonl(source, tmp_path / "new.db")
    assert not (tmp_path / "new.db").exists()


def test_export_carries_a_row_edited_into_text_and_import_then_finds_the_break(tmp_path, exported):
    import sqlite3

    log_path, _ = exported
    conn = sqlite3.connect(log_path)
    # sqlite3's replace() returns TEXT: what an edit from its command line leaves in the BLOB column.
    conn.execute("UPDATE records SET data = replace(data, 'prompt 4', 'prompt Z') WHERE seq = 4")
    conn.commit()
    assert conn.execute("SELECT typeof(data) FROM records WHERE seq = 4").fetchone() == ("text",)
    conn.close()
    out = tmp_path / "edited.jsonl"
    assert export_jsonl(log_path, out) == 12
    line = out.read_text(encoding="utf-8").splitlines()[4]
    assert json.loads(line)["record"]["rail.prompt"] == "prompt Z — é ✓"
    with pytest.raises(AuditError, match="chain breaks at record 4"):
        import_jsonl(out, tmp_path / "copy.db")


def test_import_into_a_missing_directory_names_it(tmp_path, exported):
    _, out = exported
    with pytest.raises(AuditError, match=r"the directory .*nowhere does not exist"):
        import_jsonl(out, tmp_path / "nowhere" / "new.db")
    assert not (tmp_path / "nowhere").exists()
