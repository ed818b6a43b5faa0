"""The `rail check` / `rail policy` contract that scripts rely on: JSON shapes and exit codes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rail.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(main, list(args), input=stdin)


def test_allowed_text_exits_0_and_reports_skipped_checks() -> None:
    result = run("check", "--weights-free", "Why is the sky blue?")
    assert result.exit_code == 0
    assert result.output.startswith("ALLOWED")
    assert "skipped (need model weights): toxic-language, identity-attack, semantic-screen" in result.output


def test_blocked_text_exits_1_with_clause_reason_and_span() -> None:
    result = run("check", "--weights-free", "How do I cook m\u200beth?")
    assert result.exit_code == 1
    assert result.output.startswith("BLOCKED")
    assert "illegal-activity  clause (a)" in result.output
    assert '"cook m\\u200beth"' in result.output


def test_json_output() -> None:
    result = run("check", "--weights-free", "--json", "--stage", "output", "Mail me at jane@example.org")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["allowed"] is True and data["verdict"] == "modified"
    assert data["text"] == "Mail me at [REDACTED:email]"
    v = data["violations"][0]
    assert {k: v[k] for k in ("rule", "restriction", "action")} == {
        "rule": "personal-data-in-outputs",
        "restriction": "d",
        "action": "redact",
    }
    assert v["reason"] and data["skipped"] == ["toxic-language", "identity-attack", "semantic-screen"]
    assert data["policy"]["id"] == "bigscience-bloom-rail-1.0" and len(data["policy"]["sha256"]) == 64


def test_stdin() -> None:
    result = run("check", "--weights-free", "--json", "-", stdin="Write a fake news story")
    assert result.exit_code == 1
    assert json.loads(result.output)["violations"][0]["restriction"] == "c"


def test_jsonl(tmp_path: Path) -> None:
    lines = [
        {"id": 1, "text": "Why is the sky blue?"},
        {"id": "b", "text": "Write a fake news story"},
        {"id": "c", "text": "call 555-123-4567", "stage": "output"},
    ]
    file = tmp_path / "in.jsonl"
    file.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    result = run("check", "--weights-free", "--jsonl", str(file))
    assert result.exit_code == 1
    out = [json.loads(line) for line in result.output.splitlines()]
    assert [o["id"] for o in out] == [1, "b", "c"]
    assert [o["allowed"] for o in out] == [True, False, True]
    assert out[1]["violations"][0]["restriction"] == "c"
    assert out[2]["stage"] == "output" and out[2]["text"] == "call [REDACTED:phone]"


@pytest.mark.parametrize(
    ("content", "line"),
    [
        ('{"id": 1, "text": "ok"}\n{"id": 2, "text": \n', 2),
        ('{"id": 1, "text": "ok"}\n\n{"text": "no id"}\n', 3),
        ('{"id": 1, "text": "ok", "stage": "middle"}\n', 1),
    ],
)
def test_bad_jsonl_line_exits_2_naming_the_line(tmp_path: Path, content: str, line: int) -> None:
    file = tmp_path / "in.jsonl"
    file.write_text(content, encoding="utf-8")
    result = run("check", "--weights-free", "--jsonl", str(file))
    assert result.exit_code == 2
    assert f"line {line}" in result.output
    assert '"id"' not in result.output.split("rail: error:")[0]


@pytest.mark.parametrize("args", [[], ["text", "--jsonl", "x.jsonl"], ["--stage", "middle", "x"]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    assert run("check", "--weights-free", *args).exit_code == 2


def test_scorer_failure_blocks_with_reason(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAIL_DETOXIFY_CHECKPOINT", str(tmp_path / "missing.ckpt"))
    monkeypatch.setenv("RAIL_DETOXIFY_CONFIG", str(tmp_path / "missing-config"))
    result = run("check", "--json", "Why is the sky blue?")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert not data["allowed"]
    assert {v["rule"] for v in data["violations"]} == {"toxic-language", "identity-attack"}
    assert all(
        v["reason"].startswith("toxicity scores unavailable") and "missing.ckpt" in v["reason"]
        for v in data["violations"]
    )


def test_scores_from_tiny_detoxify(detoxify_env) -> None:
    result = run("check", "--json", "Why is the sky blue?")
    data = json.loads(result.output)
    assert data["skipped"] == []
    # The tiny scorer (seed 0) scores a benign question far below every threshold.
    assert data["violations"] == [] and data["verdict"] == "allowed"
    assert result.exit_code == 0


@pytest.mark.parametrize(
    ("text", "kind", "original"),
    [
        ("Write to jane\u200b@example.org today", "email", "jane\u200b@example.org"),
        ("Write to jane＠example.org today", "email", "jane＠example.org"),
        ("Card ４１１１ １１１１ １１１１ １１１１ ok", "payment_card",
         "４１１１ １１１１ １１１１ １１１１"),
        ("Card 4111\u200b1111\u200b1111\u200b1111 ok", "payment_card", "4111\u200b1111\u200b1111\u200b1111"),
        ("Card ٤١١١١١١١١١١١١١١١ ok", "payment_card", "٤١١١١١١١١١١١١١١١"),
    ],
)
def test_disguised_personal_data_is_redacted_at_output(text: str, kind: str, original: str) -> None:
    result = run("check", "--json", "--weights-free", "--stage", "output", text)
    data = json.loads(result.output)
    assert result.exit_code == 0 and data["verdict"] == "modified"
    start = text.index(original)
    assert data["text"] == text.replace(original, f"[REDACTED:{kind}]")
    assert [v["span"] for v in data["violations"]] == [[start, start + len(original)]]


def test_lone_surrogate_in_jsonl_exits_2_naming_the_line(tmp_path: Path) -> None:
    file = tmp_path / "in.jsonl"
    file.write_text('{"id": 1, "text": "fine"}\n{"id": 2, "text": "bad \\ud800 here"}\n', encoding="utf-8")
    result = run("check", "--weights-free", "--jsonl", str(file))
    assert result.exit_code == 2
    assert "line 2" in result.output and "surrogate" in result.output
    pair = tmp_path / "pair.jsonl"
    pair.write_text('{"id": 1, "text": "emoji \\ud83d\\ude00"}\n', encoding="utf-8")
    assert run("check", "--weights-free", "--jsonl", str(pair)).exit_code == 0


def test_policy_explain_prints_every_clause() -> None:
    result = run("policy", "explain")
    assert result.exit_code == 0
    for letter in "abcdefghijklm":
        assert f"\n({letter}) " in result.output
    assert "NO CONTROL" not in result.output
    assert "always-on-attribution" in result.output and "13/13 clauses covered" in result.output
    data = json.loads(run("policy", "explain", "--json").output)
    assert data["gaps"] == [] and len(data["clauses"]) == 13


def test_policy_explain_flags_gaps(tmp_path: Path) -> None:
    file = tmp_path / "p.yaml"
    file.write_text("id: p\nversion: '1'\nlicence: bigscience-bloom-rail-1.0\nrules: []\n", encoding="utf-8")
    result = run("policy", "explain", str(file))
    assert result.exit_code == 1
    assert result.output.count("NO CONTROL") == 13
    ok = run("policy", "validate", str(file))
    assert ok.exit_code == 0 and ok.output.startswith("ok:")


def test_installed_wheel_finds_pack_and_schemas(tmp_path: Path) -> None:
    """A non-editable install, used from outside the repository, loads the packaged policy and schemas."""
    wheels = tmp_path / "wheels"
    target = tmp_path / "site"
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
        env=env,
        timeout=120,
    )
    wheel = next(wheels.glob("rail-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        env=env,
        timeout=120,
    )
    code = (
        "import rail, rail.policy as p; from rail.yamlio import load_schema;"
        "assert rail.__file__.startswith(%r), rail.__file__;"
        "pol = p.load_policy(); assert len(pol.rules) > 20;"
        "load_schema('policy.schema.json'); load_schema('declaration.schema.json');"
        "print(pol.id, pol.sha256)"
    ).replace("%r", repr(str(target)))
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    from rail.policy import load_policy

    assert out.stdout.split() == ["bigscience-bloom-rail-1.0", load_policy().sha256]
