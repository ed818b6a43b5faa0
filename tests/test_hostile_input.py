"""Hostile and malformed input at the CLI: one clean message, exit code 2, never a traceback or a hang."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from rail.cli import main

DEEP_JSON = "[" * 100_000 + "]" * 100_000
RANDOM_BYTES = os.urandom(4096).replace(b"\n", b"") + b"\xff\xfe"  # \xff never occurs in UTF-8


def _run(*args: str, input: bytes | str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


def _refused(result: Result, *words: str) -> None:
    """The command refused the input: exit 2, one `rail: error:` message naming it, no traceback."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output, (word, result.output)


@pytest.mark.parametrize(
    "command", [["check", "--weights-free", "--jsonl"], ["generate", "-d", "x.yaml", "--jsonl"]]
)
def test_json_nested_100000_levels_is_refused_naming_the_line(tmp_path: Path, command: list[str]) -> None:
    data = tmp_path / "deep.jsonl"
    data.write_text('{"id": 1, "text": "fine"}\n' + DEEP_JSON + "\n", encoding="utf-8")
    declaration = tmp_path / "x.yaml"
    declaration.write_text("name: x\n", encoding="utf-8")
    args = [a.replace("x.yaml", str(declaration)) for a in command]
    _refused(_run(*args, str(data)), "deep.jsonl:2", "nested too deeply")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"id": 1, "text": NaN}', "invalid number"),
        (b'{"id": 1, "text": "x", "n": 1e400}', "invalid number"),
        (b'{"id": 1, "text": "caf\xe9"}', "not UTF-8 text"),
        (b'{"id": 1, "text": "nul \x00 inside"}', "NUL bytes"),
        (b'{"id": 1, "text": "\\ud800"}', "lone surrogate"),
    ],
)
def test_bad_json_lines_are_refused(tmp_path: Path, line: bytes, message: str) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_bytes(line + b"\n")
    _refused(_run("check", "--weights-free", "--jsonl", str(data)), "bad.jsonl:1", message)


def test_endless_jsonl_input_is_refused_quickly() -> None:
    _refused(_run("check", "--weights-free", "--jsonl", "/dev/zero"), "longer than")


def test_random_bytes_on_stdin_are_refused_by_check_and_detect(tiny_bloom_dir: Path) -> None:
    _refused(_run("check", "--weights-free", "-", input=RANDOM_BYTES), "<stdin>", "not UTF-8 text")
    _refused(_run("check", "--weights-free", "--json", "-", input=RANDOM_BYTES), "not UTF-8 text")
    _refused(_run("detect", "--model", str(tiny_bloom_dir), "-", input=RANDOM_BYTES), "not UTF-8 text")


def test_endless_stdin_is_refused_at_the_size_limit(tiny_bloom_dir: Path) -> None:
    with open("/dev/zero", "rb") as zeros:
        _refused(CliRunner().invoke(main, ["check", "--weights-free", "-"], input=zeros), "larger than")


@pytest.mark.parametrize("threshold", ["nan", "inf", "-inf"])
def test_detect_threshold_must_be_finite(tiny_bloom_dir: Path, threshold: str) -> None:
    result = _run("detect", "--model", str(tiny_bloom_dir), "--threshold", threshold, "some text")
    assert result.exit_code == 2 and "finite" in result.output


@pytest.mark.parametrize("command", [["policy", "validate"], ["card", "validate"]])
def test_an_endless_file_is_refused_at_the_size_limit(command: list[str]) -> None:
    _refused(_run(*command, "/dev/zero"), "/dev/zero", "larger than 4 MiB")


def test_extends_pointing_at_an_endless_file_is_refused(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text('extends: /dev/zero\nid: p\nversion: "1"\n', encoding="utf-8")
    _refused(_run("policy", "validate", str(policy)), "/dev/zero", "larger than 4 MiB")


def test_a_large_policy_without_aliases_names_its_size_not_aliases(tmp_path: Path) -> None:
    rules = "".join(f"  - id: r{i}\n    description: rule {i}\n" for i in range(60_000))
    policy = tmp_path / "big.yaml"
    policy.write_text('id: big\nversion: "1"\nlicence: bigscience-bloom-rail-1.0\nrules:\n' + rules)
    result = _run("policy", "validate", str(policy))
    _refused(result, "big.yaml:", "more than 100,000 values")
    assert "alias" not in result.output


def test_extends_deeper_than_16_levels_names_the_line(tmp_path: Path) -> None:
    previous = "bigscience-bloom-rail-1.0"
    for level in range(18):
        path = tmp_path / f"p{level}.yaml"
        path.write_text(f'id: p{level}\nversion: "1"\nextends: {previous}\n', encoding="utf-8")
        previous = path.name
    _refused(_run("policy", "validate", str(path)), ".yaml:3, at extends", "16 levels")


def test_an_empty_declaration_says_so_with_its_line(tiny_bloom_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    result = _run("generate", "--model", str(tiny_bloom_dir), "--declaration", str(empty), "Hello.")
    _refused(result, "empty.yaml:1", "the file is empty")
    assert "None" not in result.output


def test_max_new_tokens_beyond_the_context_is_a_usage_error(
    tiny_bloom_dir: Path, declaration: Path, detoxify_env: object
) -> None:
    result = _run("generate", "--model", str(tiny_bloom_dir), "--declaration", str(declaration),
                  "--max-new-tokens", "1000000000", "Hello.")
    _refused(result, "max_new_tokens 1,000,000,000", "context of 2,048 tokens")


def test_a_refused_deployment_is_recorded_in_the_audit_log(
    tiny_bloom_dir: Path, medical: Path, tmp_path: Path
) -> None:
    from rail.audit import read_records, verify_log

    log = tmp_path / "audit.db"
    result = _run("generate", "--model", str(tiny_bloom_dir), "--declaration", str(medical),
                  "--audit-log", str(log), "Hello.")
    _refused(result, "refused under (l)")
    records = [record for _seq, record in read_records(log)]
    assert len(records) == 1
    record = records[0]
    assert record.operation == "deployment_check" and record.verdict == "blocked"
    assert record.deployment == "writing-assistant"
    assert any("l" in v["clauses"] for v in record.violations)
    assert verify_log(log).ok


def test_every_clause_of_a_violation_is_printed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Without a scorer the identity-attack rule blocks; it cites (k) and (i), and both must show.
    monkeypatch.setenv("RAIL_DETOXIFY_CHECKPOINT", str(tmp_path / "missing.ckpt"))
    result = _run("check", "Hello there.")
    assert result.exit_code == 1
    assert "identity-attack  clauses (k), (i)" in result.output


def test_json_stdout_stays_json_when_a_checkpoint_download_is_announced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys
    import urllib.error

    import torch.hub

    def announce_then_fail(url: str, **kwargs: object) -> None:
        sys.stdout.write(f'Downloading: "{url}" to /cache\n')  # what torch.hub prints before fetching
        raise urllib.error.URLError("no network")

    for name in [k for k in os.environ if k.startswith("RAIL_DETOXIFY_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", announce_then_fail)
    result = CliRunner().invoke(main, ["check", "--json", "Hello there."])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["verdict"] == "blocked"
    assert "Downloading" in result.stderr
