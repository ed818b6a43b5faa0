"""``rail generate`` and ``rail detect`` through the CLI on the tiny models, offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rail.cli import main


def _generate(tiny_bloom_dir: Path, declaration: Path, *args: str, input: str | None = None):
    return CliRunner().invoke(
        main,
        [
            "generate",
            "--model",
            str(tiny_bloom_dir),
            "--declaration",
            str(declaration),
            "--max-new-tokens",
            "12",
            "--seed",
            "1",
            "--sample",
            *args,
        ],
        input=input,
    )


def test_generate_json_with_audit_log(
    tiny_bloom_dir: Path, declaration: Path, detoxify_env: object, tmp_path: Path
) -> None:
    log = tmp_path / "audit.jsonl"
    result = _generate(
        tiny_bloom_dir,
        declaration,
        "--json",
        "--audit-log",
        str(log),
        "--audit-privacy",
        "full",
        "Write a haiku about the sea.",
        "Translate to English: Je t'aime.",
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["id"] for line in lines] == [1, 2]
    assert all(line["allowed"] and line["provenance"]["output_sha256"] for line in lines)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["rail.request_id"] for r in records] == [line["request_id"] for line in lines]
    assert records[0]["rail.prompt"] == "Write a haiku about the sea."


def test_generate_writes_a_verifiable_audit_log(
    tiny_bloom_dir: Path, declaration: Path, detoxify_env: object, tmp_path: Path
) -> None:
    from rail.audit import read_records, verify_log

    log = tmp_path / "audit.db"
    result = _generate(
        tiny_bloom_dir, declaration, "--audit-log", str(log), "Write a haiku about the sea.", "Cook meth how?"
    )
    assert result.exit_code == 1  # the second prompt is blocked
    assert verify_log(log).ok
    records = [record for _, record in read_records(log)]
    assert [r.verdict for r in records] == ["allowed", "blocked"]
    assert records[1].violations[0]["restriction"] == "a"


def test_generate_reads_jsonl_prompts(tiny_bloom_dir: Path, declaration: Path, detoxify_env: object) -> None:
    jsonl = '{"id": "a", "prompt": "Write a haiku about the sea."}\n{"id": "b", "text": "Hello."}\n'
    result = _generate(tiny_bloom_dir, declaration, "--json", "--jsonl", "-", input=jsonl)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == ["a", "b"]


def test_generate_bad_jsonl_names_the_line(tiny_bloom_dir: Path, declaration: Path) -> None:
    result = _generate(tiny_bloom_dir, declaration, "--jsonl", "-", input='{"prompt": "ok"}\nnot json\n')
    assert result.exit_code == 2 and "<stdin>:2" in result.stderr


def test_generate_stream_prints_the_attributed_text(
    tiny_bloom_dir: Path, declaration: Path, detoxify_env: object
) -> None:
    result = _generate(tiny_bloom_dir, declaration, "--stream", "Write a haiku about the sea.")
    assert result.exit_code == 0, result.output
    assert "Machine-generated text" in result.stdout


def test_scorer_missing_blocks_with_exit_1(
    tiny_bloom_dir: Path, declaration: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAIL_DETOXIFY_CHECKPOINT", str(tmp_path / "missing.ckpt"))
    result = _generate(tiny_bloom_dir, declaration, "Write a haiku about the sea.")
    assert result.exit_code == 1
    assert "rail: blocked" in result.stderr and "missing.ckpt" in result.stderr


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("/no/such/model-dir", "model directory not found"),
        ("bigscience/bloomz-560mm", "HF_HUB_OFFLINE is set"),
    ],
)
def test_unloadable_model_is_a_config_error(declaration: Path, model: str, message: str) -> None:
    result = CliRunner().invoke(
        main, ["generate", "--model", model, "--declaration", str(declaration), "Hi."]
    )
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output


def test_refused_declaration_names_the_clause(tiny_bloom_dir: Path, medical: Path) -> None:
    result = CliRunner().invoke(
        main, ["generate", "--model", str(tiny_bloom_dir), "--declaration", str(medical), "Hi."]
    )
    assert result.exit_code == 2
    assert "(l)" in result.stderr or "clause l" in result.stderr.lower()


def test_declaration_is_required(tiny_bloom_dir: Path) -> None:
    result = CliRunner().invoke(main, ["generate", "--model", str(tiny_bloom_dir), "Hi."])
    assert result.exit_code == 2 and "--declaration" in result.stderr


def test_detect_exit_codes_follow_the_verdict(
    tiny_bloom_dir: Path, declaration: Path, detoxify_env: object, tmp_path: Path
) -> None:
    runner = CliRunner()
    # The semantic layer reads the three-word fragment below as (g) and would block it (a known weakness
    # on contentless fragments, see README); this test is about the watermark, so it runs without it.
    policy = tmp_path / "no-semantic.yaml"
    policy.write_text("extends: bigscience-bloom-rail-1.0\nid: no-semantic\nrules:\n"
                      "  - {id: semantic-screen, enabled: false}\n", encoding="utf-8")
    marked = _generate(
        tiny_bloom_dir,
        declaration,
        "--policy",
        str(policy),
        "--json",
        "--watermark",
        "--watermark-bias",
        "8",
        "--max-new-tokens",
        "200",
        "The model writes",
    )
    assert marked.exit_code == 0, marked.output
    raw = json.loads(marked.stdout)["raw_text"]
    hit = runner.invoke(main, ["detect", "--model", str(tiny_bloom_dir), "--json", "-"], input=raw)
    assert hit.exit_code == 0, hit.output
    assert json.loads(hit.stdout)["detected"] and json.loads(hit.stdout)["z_score"] >= 4
    miss = runner.invoke(
        main,
        [
            "detect",
            "--model",
            str(tiny_bloom_dir),
            "An ordinary sentence written by a person, with nothing hidden in it.",
        ],
    )
    assert miss.exit_code == 1 and miss.stdout.startswith("not watermarked")


@pytest.mark.parametrize(
    ("action", "verdict", "exit_code"), [("block", "blocked", 1), ("redact", "modified", 0)]
)
def test_json_never_prints_held_back_output(
    tiny_bloom_dir: Path, declaration: Path, detoxify_env: object, every_output_policy: Any, action: str,
    verdict: str, exit_code: int,
) -> None:
    prompt = "Write a haiku about the sea."
    plain = _generate(tiny_bloom_dir, declaration, "--json", prompt)
    assert plain.exit_code == 0, plain.output
    raw = json.loads(plain.stdout)["raw_text"]
    assert raw
    policy = every_output_policy(action)
    held = _generate(tiny_bloom_dir, declaration, "--policy", str(policy), "--json", prompt)
    assert held.exit_code == exit_code, held.output
    line = json.loads(held.stdout)
    assert line["verdict"] == verdict and line["raw_text"] is None
    assert raw not in (line["text"] or "")
    text = _generate(tiny_bloom_dir, declaration, "--policy", str(policy), prompt)
    assert text.exit_code == exit_code and raw not in text.output


def test_empty_stop_sequence_is_a_usage_error(tiny_bloom_dir: Path, declaration: Path) -> None:
    result = _generate(tiny_bloom_dir, declaration, "--stop", "", "Write a haiku about the sea.")
    assert result.exit_code == 2
    assert "stop sequences must be non-empty" in result.stderr and "Traceback" not in result.output


def test_unusable_scorer_device_blocks_with_exit_1(
    tiny_bloom_dir: Path, declaration: Path, detoxify_env: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAIL_DETOXIFY_DEVICE", "cuda:99")
    result = _generate(tiny_bloom_dir, declaration, "Write a haiku about the sea.")
    assert result.exit_code == 1, result.output
    assert "rail: blocked" in result.stderr and "device 'cuda:99'" in result.stderr


def test_a_device_that_does_not_exist_anywhere_is_a_configuration_error(
    tiny_bloom_dir: Path, declaration: Path, detoxify_env: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAIL_DETOXIFY_DEVICE", "quantum")
    result = _generate(tiny_bloom_dir, declaration, "Write a haiku about the sea.")
    assert result.exit_code == 2, result.output
    assert "RAIL_DETOXIFY_DEVICE" in result.stderr and "unknown device 'quantum'" in result.stderr
