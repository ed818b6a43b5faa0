"""Damaged storage: a page overwritten with zeros or a file cut short gets a clean verdict, no traceback."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from rail.audit import AuditLog, verify_log
from rail.cli import main

PAGE = 4096
RECORDS = 600


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, make_record, ed25519_key) -> Path:
    path = tmp_path_factory.mktemp("damage") / "audit.db"
    with AuditLog(path, privacy="full", signing_key=ed25519_key[0], checkpoint_every=100) as log:
        for start in range(1, RECORDS + 1, 50):
            log.append_many([make_record(i) for i in range(start, start + 50)])
    assert not Path(f"{path}-wal").exists()  # closed cleanly: everything is in the main file
    return path


def _page_holding(path: Path, needle: bytes) -> int:
    data = path.read_bytes()
    return data.index(needle) // PAGE + 1


def _zero_page(path: Path, page: int) -> None:
    with path.open("r+b") as handle:
        handle.seek((page - 1) * PAGE)
        handle.write(b"\0" * PAGE)


DAMAGE = {
    # name: (damage(path), every record still readable) — each leaves a file a person could be handed after a
    # disk fault or an edit; a lost index page leaves the records readable, but verify still reports it.
    "first page zeroed (header and table directory)": (lambda p: _zero_page(p, 1), False),
    "metadata page zeroed": (lambda p: _zero_page(p, 2), False),
    "metadata index page zeroed": (lambda p: _zero_page(p, 3), True),
    "records root page zeroed": (lambda p: _zero_page(p, 4), False),
    "time index root page zeroed": (lambda p: _zero_page(p, 5), True),
    "a records page in the middle zeroed": (
        lambda p: _zero_page(p, _page_holding(p, b'"rail.request_id":"req-300"')), False),
    "last page zeroed": (lambda p: _zero_page(p, p.stat().st_size // PAGE), False),
    "file cut short by 4 KiB": (lambda p: os.truncate(p, p.stat().st_size - PAGE), False),
    "file cut to half": (lambda p: os.truncate(p, p.stat().st_size // 2 // PAGE * PAGE), False),
}


@pytest.fixture(params=list(DAMAGE))
def damaged(request, pristine, tmp_path) -> tuple[Path, bool]:
    path = tmp_path / "damaged.db"
    shutil.copy(pristine, path)
    damage, readable = DAMAGE[request.param]
    damage(path)
    return path, readable


def _run(*args: str) -> Result:
    result = CliRunner().invoke(main, ["audit", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def test_verify_reports_damage_as_a_corrupt_log_exit_1(damaged):
    damaged, _ = damaged
    result = _run("verify", str(damaged))
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"{damaged}: TAMPERED: ") and "corrupt" in result.output
    verdict = json.loads(_run("verify", str(damaged), "--json").output)
    assert verdict["verdict"] == "tampered" and verdict["problems"][0]["kind"] == "corrupt"
    assert not verify_log(damaged).ok


def test_a_log_cut_short_is_named_as_one(pristine, tmp_path):
    path = tmp_path / "cut.db"
    shutil.copy(pristine, path)
    DAMAGE["file cut short by 4 KiB"][0](path)
    result = _run("verify", str(path))
    assert result.exit_code == 1 and "not a rail audit log" not in result.output
    assert "damaged rail audit log: the file is cut short" in result.output
    assert "the last 4,096 bytes are missing" in result.output


def test_report_renders_with_the_integrity_verdict_on_top(damaged, tmp_path, request):
    damaged, readable = damaged
    # HTML (charts and all) for a log nothing can be read from and for one cut off mid-way; Markdown for all.
    wide = any(name in request.node.name for name in ("first page", "in the middle"))
    for fmt in ("md", "html") if wide else ("md",):
        out = tmp_path / f"report.{fmt}"
        result = _run("report", str(damaged), "--format", fmt, "-o", str(out))
        assert result.exit_code == 0, result.output
        text = out.read_text(encoding="utf-8")
        top = text[: text.index("Requests over time" if fmt == "html" else "## Decisions")]
        assert "TAMPERED" in top and "corrupt" in top
    figures = json.loads(_run("report", str(damaged), "--format", "json").output)
    assert (figures["requests"]["total"] == RECORDS) is readable


def test_other_commands_answer_cleanly(damaged, tmp_path, ed25519_key):
    damaged, readable = damaged
    export = _run("export", str(damaged), str(tmp_path / "out.jsonl"))
    if readable:  # the export carries every record; the damage was confined to an index
        assert export.exit_code == 0 and f"exported {RECORDS} records" in export.output
    else:
        assert export.exit_code == 2 and "rail: error:" in export.output and "damaged" in export.output
        assert not (tmp_path / "out.jsonl").exists() and not list(tmp_path.glob(".out.jsonl*"))
    signed = _run("checkpoint", str(damaged), "--signing-key", str(ed25519_key[0]), "-o", str(tmp_path / "c"))
    assert signed.exit_code == 1 and "refusing to sign" in signed.output
    latest = _run("checkpoint", str(damaged), "--latest", "-o", str(tmp_path / "c"))
    assert latest.exit_code in (0, 2) and (latest.exit_code == 0 or "rail: error:" in latest.output)
