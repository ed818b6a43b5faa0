"""Starting, failing and stopping ``rail serve``: refusals at start, audit failures, SIGTERM, kill -9."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from click.testing import CliRunner
from conftest import MAIN_KEY, WRITING, FlakyStore, ServerProcess, in_process, server_env, sha
from standin import StandIn

from rail.audit import read_records
from rail.cli import main
from rail.generation import load_model

MEDICAL = WRITING.replace("domains: [general]", "domains: [medical]").replace(
    "drafting-service", "triage-bot"
)


def serve(args: list[str]) -> Any:
    return CliRunner().invoke(main, ["serve", *args])


def test_a_key_whose_declaration_the_licence_forbids_stops_the_start_naming_key_and_clause(
    tmp_path: Path,
) -> None:
    (tmp_path / "writing.yaml").write_text(WRITING, encoding="utf-8")
    (tmp_path / "medical.yaml").write_text(MEDICAL, encoding="utf-8")
    (tmp_path / "keys.yaml").write_text(
        f"keys:\n  - id: ok\n    sha256: {sha('a' * 20)}\n    declaration: writing.yaml\n"
        f"  - id: clinic\n    sha256: {sha('b' * 20)}\n    declaration: medical.yaml\n",
        encoding="utf-8",
    )
    log = tmp_path / "audit.db"
    result = serve(
        [
            "--model",
            str(tmp_path / "no-weights-needed"),
            "--config",
            str(tmp_path / "keys.yaml"),
            "--audit-log",
            str(log),
        ]
    )
    assert result.exit_code == 2, result.output
    assert "API key 'clinic'" in result.output and "keys.yaml:5" in result.output and "(l)" in result.output
    assert "Traceback" not in result.output
    [(_, record)] = list(read_records(log))  # the refusal is on record; no weights were loaded
    assert record.operation == "deployment_check" and record.verdict == "blocked"
    assert record.deployment == "triage-bot"


@pytest.mark.parametrize(
    "keys,fragment",
    [
        ("keys:\n  - id: a\n    sha256: nothex\n", "keys.yaml:3"),
        ("keys:\n  - id: a\n    sha256: " + "a" * 64 + "\n    limts: {}\n", "did you mean 'limits'"),
        (
            "keys:\n  - id: a\n    sha256: " + "a" * 64 + "\n  - id: a\n    sha256: " + "b" * 64 + "\n",
            "duplicate key id 'a' (first on line 2)",
        ),
        (
            "keys:\n  - id: a\n    sha256: " + "a" * 64 + "\n  - id: b\n    sha256: " + "a" * 64 + "\n",
            "same sha256 as key 'a'",
        ),
        ("keys: []\n", "keys.yaml"),
        (
            "keys:\n  - id: a\n    sha256: " + "a" * 64 + "\n    limits: {requests_per_minute: 0}\n",
            "keys.yaml:4",
        ),
        ("keys:\n  - id: a\n    sha256: " + "a" * 64 + "\n    declaration: missing.yaml\n", "file not found"),
        ("keys: [\n", "not valid YAML"),
    ],
)
def test_a_bad_keys_file_is_exit_2_naming_file_and_line(tmp_path: Path, keys: str, fragment: str) -> None:
    (tmp_path / "writing.yaml").write_text(WRITING, encoding="utf-8")
    (tmp_path / "keys.yaml").write_text(keys, encoding="utf-8")
    result = serve(
        [
            "--config",
            str(tmp_path / "keys.yaml"),
            "--declaration",
            str(tmp_path / "writing.yaml"),
            "--audit-log",
            str(tmp_path / "a.db"),
        ]
    )
    assert result.exit_code == 2 and fragment in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args,fragment",
    [
        ([], "needs at least one key"),
        (["--api-key", "short"], "at least 16 printable characters"),
        (["--api-key", MAIN_KEY, "--api-key", MAIN_KEY], "the same API key is given twice"),
        (["--api-key", MAIN_KEY], "no deployment declaration"),
        (["--api-key", MAIN_KEY, "--declaration", "DECL", "--backend", "openai"], "needs --upstream"),
        (["--api-key", MAIN_KEY, "--declaration", "DECL", "--chat-template", "BROKEN"], "broken.j2:2"),
        (["--api-key", MAIN_KEY, "--declaration", "DECL", "--max-queue", "-1"], "--max-queue"),
    ],
)
def test_bad_start_up_options_are_exit_2_with_one_message(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    (tmp_path / "writing.yaml").write_text(WRITING, encoding="utf-8")
    (tmp_path / "broken.j2").write_text("User: {{ messages[0].content }}\n{% for m in messages %}\n", "utf-8")
    args = [
        a.replace("DECL", str(tmp_path / "writing.yaml")).replace("BROKEN", str(tmp_path / "broken.j2"))
        for a in args
    ]
    result = serve([*args, "--audit-log", str(tmp_path / "a.db")])
    assert result.exit_code == 2 and fragment in result.output, result.output
    assert "Traceback" not in result.output


# -- the audit log failing while the server runs ------------------------------------------------------------


@pytest.fixture(scope="module")
def flaky(tiny_bloom_dir: Path, tiny_detoxify: tuple[Path, Path]) -> Iterator[tuple[str, FlakyStore]]:
    """An in-process server of the tiny BLOOM whose audit store can be made to fail."""
    store = FlakyStore()
    with in_process(load_model(str(tiny_bloom_dir)), tiny_detoxify, store) as url:
        yield url, store


def test_no_request_is_answered_when_its_audit_record_cannot_be_written(
    flaky: tuple[str, FlakyStore],
) -> None:
    url, store = flaky
    headers = {"Authorization": f"Bearer {MAIN_KEY}"}
    body = {"prompt": "Hello.", "max_tokens": 3, "temperature": 0}
    assert httpx.post(url + "/v1/completions", json=body, headers=headers, timeout=30).status_code == 200
    store.fail = True
    try:
        for path, payload in [
            ("/v1/completions", body),
            ("/v1/moderations", {"input": "Hello."}),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi."}]}),
            ("/v1/completions", {**body, "stream": True}),
        ]:
            r = httpx.post(url + path, json=payload, headers=headers, timeout=30)
            assert r.status_code == 503, (path, r.text)
            assert r.json()["error"]["code"] == "audit_unavailable" and "Hello" not in r.text
        ready = httpx.get(url + "/ready", headers=headers)
        assert ready.status_code == 503 and "audit" in ready.json()["error"]["message"]
        metrics = httpx.get(url + "/metrics", headers=headers).text
        assert "rail_audit_failures_total 3.0" in metrics  # the stream was refused before it started
    finally:
        store.fail = False
    assert httpx.post(url + "/v1/completions", json=body, headers=headers, timeout=30).status_code == 200
    assert httpx.get(url + "/ready", headers=headers).status_code == 200


# -- SIGTERM drain and kill -9 ---------------------------------------------------------------------


def test_sigterm_finishes_the_stream_in_flight_refuses_new_work_and_exits_0(
    tmp_path: Path, tiny_detoxify: tuple[Path, Path]
) -> None:
    (tmp_path / "writing.yaml").write_text(WRITING, encoding="utf-8")
    with StandIn() as upstream:
        server = ServerProcess(
            [
                "--backend",
                "openai",
                "--upstream",
                upstream.url,
                "--declaration",
                str(tmp_path / "writing.yaml"),
                "--api-key",
                MAIN_KEY,
                "--audit-log",
                str(tmp_path / "audit.db"),
                "--log-level",
                "warning",
            ],
            server_env(tiny_detoxify),
            tmp_path / "server.log",
        ).start()
        try:
            body = {"prompt": "Describe the harbour at dawn. [drip]", "max_tokens": 20, "stream": True}
            with httpx.stream(
                "POST",
                server.url + "/v1/completions",
                json=body,
                headers={"Authorization": f"Bearer {MAIN_KEY}"},
                timeout=30,
            ) as r:
                lines = r.iter_lines()
                assert next(line for line in lines if line.startswith("data: "))
                assert server.proc is not None
                server.proc.send_signal(15)
                time.sleep(0.5)
                with pytest.raises(httpx.ConnectError):
                    httpx.get(server.url + "/health", timeout=2)
                rest = [line for line in lines if line]
            assert rest[-1] == "data: [DONE]"
            final = json.loads(rest[-2][6:])
            assert final["choices"][0]["finish_reason"] == "length"
            assert server.proc.wait(timeout=60) == 0
        finally:
            server.kill()
    [(_, record)] = list(read_records(tmp_path / "audit.db"))
    assert not record.extra.get("cancelled") and record.output_tokens == 20  # one per text event
    verified = subprocess.run(
        [sys.executable, "-m", "rail.cli", "audit", "verify", str(tmp_path / "audit.db")],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_kill_9_under_load_leaves_a_log_that_verifies_and_a_restart_continues_it(
    tmp_path: Path, tiny_bloom_dir: Path, tiny_detoxify: tuple[Path, Path]
) -> None:
    (tmp_path / "writing.yaml").write_text(WRITING, encoding="utf-8")
    log = tmp_path / "audit.db"
    args = [
        "--model",
        str(tiny_bloom_dir),
        "--declaration",
        str(tmp_path / "writing.yaml"),
        "--api-key",
        MAIN_KEY,
        "--audit-log",
        str(log),
        "--log-level",
        "warning",
    ]
    server = ServerProcess(args, server_env(tiny_detoxify), tmp_path / "server.log").start()
    answered: list[tuple[str, int]] = []
    stop = threading.Event()

    def load() -> None:
        c = openai.OpenAI(base_url=server.url + "/v1", api_key=MAIN_KEY, max_retries=0, timeout=10)
        while not stop.is_set():
            try:
                r = c.completions.create(
                    model=tiny_bloom_dir.name, prompt="Hello there.", max_tokens=4, temperature=0
                )
            except (openai.APIConnectionError, openai.APIStatusError):
                return
            audit = r.rail["results"][0]["audit"]  # type: ignore[attr-defined]
            answered.append((audit["request_id"], audit["seq"]))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(answered) < 24 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill()  # SIGKILL: no drain, no flush
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(answered) >= 24
    verified = subprocess.run(
        [sys.executable, "-m", "rail.cli", "audit", "verify", str(log)], capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    stored = {r.request_id: seq for seq, r in read_records(log)}
    assert all(stored.get(request_id) == seq for request_id, seq in answered)  # nothing answered unaudited
    count = len(stored)

    again = ServerProcess(args, server_env(tiny_detoxify), tmp_path / "server2.log").start()
    try:
        r = openai.OpenAI(base_url=again.url + "/v1", api_key=MAIN_KEY, max_retries=0).completions.create(
            model=tiny_bloom_dir.name, prompt="Hello.", max_tokens=2, temperature=0
        )
        assert r.rail["results"][0]["audit"]["seq"] == count + 1  # type: ignore[attr-defined]
    finally:
        assert again.terminate() == 0
    verified = subprocess.run(
        [sys.executable, "-m", "rail.cli", "audit", "verify", str(log)], capture_output=True, text=True
    )
    assert verified.returncode == 0 and f"{count + 1} records" in verified.stdout
