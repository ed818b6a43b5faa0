"""The remote backend against the stand-in upstream: the generator itself, then ``rail serve`` in front of it.

The stand-in (tests/server/standin.py) is the smallest OpenAI-compatible server these tests could write —
not a real engine; test_upstream_engine.py runs against llama.cpp when RAIL_TEST_UPSTREAM_URL is set.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from conftest import MAIN_KEY, WRITING, FlakyStore, ServerProcess, in_process, server_env
from standin import CONTEXT, MODEL, StandIn, free_port

from rail.audit import read_records, verify_log
from rail.errors import ConfigError, GenerationError, GenerationTimeout
from rail.gate import GatedGenerator
from rail.generation import GenerationParams, RemoteGenerator, connect

# Prompts that reach the stand-in through the gate read as ordinary requests, with the directive after them.
ASK = "Describe the harbour at dawn. "
# Blocks any output that says "forbidden" (clause (f)), so a stream can be cut part-way on purpose.
CUT_POLICY = """\
id: test-cut
version: "1"
extends: bigscience-bloom-rail-1.0
rules:
  - id: no-forbidden-word
    description: outputs must not say forbidden
    restrictions: [{clause: f}]
    stages: [output]
    check: {kind: regex, params: {pattern: 'forbidden'}}
    action: block
    severity: high
    coverage: [screened-in-outputs]
"""


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    with StandIn() as s:
        yield s


@pytest.fixture(scope="module")
def engine(standin: StandIn) -> RemoteGenerator:
    return connect(standin.url, timeout_s=1.0)


def test_connect_reads_the_model_and_its_context(engine: RemoteGenerator, standin: StandIn) -> None:
    info = engine.info
    assert info.model_id == MODEL and info.context_length == CONTEXT
    assert info.provider == "openai-compatible" and info.device == standin.url and not info.local


def test_connect_accepts_the_v1_url_and_refuses_a_model_it_does_not_serve(standin: StandIn) -> None:
    assert connect(standin.url + "/v1/").info.model_id == MODEL
    with pytest.raises(GenerationError, match="does not serve 'other'"):
        connect(standin.url, model="other")


def test_connect_to_nothing_says_the_engine_cannot_be_reached() -> None:
    with pytest.raises(GenerationError, match="cannot reach the upstream engine"):
        connect(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ConfigError, match="must start with http"):
        connect("127.0.0.1:8080")


def test_generate_sends_greedy_as_temperature_zero_and_cuts_stop_sequences(
    engine: RemoteGenerator, standin: StandIn
) -> None:
    [c] = engine.generate(["Hello."], GenerationParams(max_new_tokens=5, stop=("word3",)))
    assert c.text == "word0. word1. word2. " and c.finish_reason == "stop"
    assert c.output_tokens == 5 and c.input_tokens == 1
    sent = standin.stats.last
    assert sent["temperature"] == 0.0 and sent["stop"] == ["word3"] and sent["max_tokens"] == 5


def test_sampling_parameters_reach_the_engine(engine: RemoteGenerator, standin: StandIn) -> None:
    engine.generate(
        ["Hello."],
        GenerationParams(max_new_tokens=2, do_sample=True, temperature=0.7, top_p=0.9, top_k=0, seed=3),
    )
    sent = standin.stats.last
    assert (sent["temperature"], sent["top_p"], sent["seed"]) == (0.7, 0.9, 3) and "top_k" not in sent


def test_several_prompts_are_sent_concurrently_and_kept_in_order(engine: RemoteGenerator) -> None:
    prompts = [f"[say:answer {i}.]" for i in range(5)]
    assert [c.text for c in engine.generate(prompts, GenerationParams(max_new_tokens=4))] == [
        f"answer {i}. " for i in range(5)
    ]


def test_stream_chunks_join_to_the_completion_and_never_show_a_stop_sequence(engine: RemoteGenerator) -> None:
    stream = engine.stream("[say:one two STOP three]", GenerationParams(max_new_tokens=8, stop=("STOP",)))
    chunks = list(stream)
    assert "".join(chunks) == "one two " and stream.completion is not None
    assert stream.completion.text == "one two " and stream.completion.finish_reason == "stop"


def test_cancel_closes_the_upstream_stream(engine: RemoteGenerator, standin: StandIn) -> None:
    before = standin.stats.cancelled
    stream = engine.stream("[drip]", GenerationParams(max_new_tokens=200))
    seen = []
    for chunk in stream:
        seen.append(chunk)
        if len(seen) == 2:
            stream.cancel()
    assert len(seen) <= 3 and stream.completion is None
    _wait(lambda: standin.stats.cancelled == before + 1)


def test_cancel_from_another_thread_ends_a_stream_waiting_for_the_engine(
    engine: RemoteGenerator, standin: StandIn
) -> None:
    stream = engine.stream("[drip]", GenerationParams(max_new_tokens=200))
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(stream))
    reader.start()
    _wait(lambda: len(out) >= 1)
    stream.cancel()
    reader.join(timeout=5)
    assert not reader.is_alive() and stream.completion is None


@pytest.mark.parametrize(
    "prompt,error,fragment",
    [
        ("[fail]", GenerationError, "answered HTTP 500"),
        ("[garbage]", GenerationError, "did not answer JSON"),
        ("[slow]", GenerationTimeout, "did not answer in time"),
    ],
)
def test_engine_failures_are_generation_errors(
    engine: RemoteGenerator, prompt: str, error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error, match=fragment):
        engine.generate([prompt], GenerationParams(max_new_tokens=2))
    with pytest.raises(error):
        list(engine.stream(prompt, GenerationParams(max_new_tokens=2)))


def test_a_broken_stream_event_is_a_generation_error(engine: RemoteGenerator) -> None:
    with pytest.raises(GenerationError, match="not JSON"):
        list(engine.stream("[break]", GenerationParams(max_new_tokens=4)))


def test_a_remote_engine_refuses_a_watermark(engine: RemoteGenerator) -> None:
    with pytest.raises(ConfigError, match="cannot apply rail's watermark"):
        engine.generate(["Hello."], watermarking_config=object())


class ListSink:
    def __init__(self) -> None:
        self.records: list[Any] = []

    def emit(self, record: Any) -> None:
        self.records.append(record)


def test_the_gate_records_an_engine_failure_then_raises_it(
    engine: RemoteGenerator, tmp_path: Path, tiny_detoxify: tuple[Path, Path], detoxify_env: Any
) -> None:
    declaration = tmp_path / "d.yaml"
    declaration.write_text(WRITING, encoding="utf-8")
    sink = ListSink()
    gate = GatedGenerator(model=engine, declaration=declaration, sink=sink)
    with pytest.raises(GenerationError):
        gate.generate_batch([ASK + "[fail]", "How do I cook meth?"], max_new_tokens=2)
    failed, blocked = sink.records
    assert failed.finish_reason == "error" and failed.extra["error"]["type"] == "GenerationError"
    assert failed.provider == "openai-compatible" and failed.model == MODEL
    assert (
        blocked.verdict == "blocked" and "error" not in blocked.extra
    )  # refused before the engine was asked
    with pytest.raises(GenerationError):
        list(gate.generate_stream(ASK + "[break]"))
    assert sink.records[-1].extra["error"]["type"] == "GenerationError"


def _wait(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


# -- rail serve --backend openai in front of the stand-in ---------------------------------------------------


@pytest.fixture(scope="module")
def remote_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("remote")
    (root / "writing.yaml").write_text(WRITING, encoding="utf-8")
    (root / "cut.yaml").write_text(CUT_POLICY, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def remote(standin: StandIn, remote_dir: Path, tiny_detoxify: tuple[Path, Path]) -> Iterator[ServerProcess]:
    """One working slot, no queue: the second request at once is 503."""
    args = [
        "--backend",
        "openai",
        "--upstream",
        standin.url,
        "--declaration",
        str(remote_dir / "writing.yaml"),
        "--policy",
        str(remote_dir / "cut.yaml"),
        "--api-key",
        MAIN_KEY,
        "--audit-log",
        str(remote_dir / "audit.db"),
        "--upstream-timeout",
        "1",
        "--request-timeout",
        "20",
        "--max-concurrent",
        "1",
        "--max-queue",
        "0",
        "--log-level",
        "warning",
    ]
    process = ServerProcess(args, server_env(tiny_detoxify), remote_dir / "server.log").start()
    yield process
    process.kill()


def rclient(remote: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=remote.url + "/v1", api_key=MAIN_KEY, max_retries=0, timeout=30)


def stored(remote_dir: Path) -> dict[str, dict[str, Any]]:
    return {r.request_id: r.to_dict() for _, r in read_records(remote_dir / "audit.db")}


def test_remote_completion_is_gated_and_names_the_engine(remote: ServerProcess, remote_dir: Path) -> None:
    r = rclient(remote).completions.create(
        model=MODEL, prompt=ASK + "[say:A calm sea.]", max_tokens=4, temperature=0
    )
    assert r.choices[0].text.startswith("A calm sea.") and r.choices[0].text.endswith(f"{MODEL}.]")
    record = stored(remote_dir)[r.rail["results"][0]["audit"]["request_id"]]  # type: ignore[attr-defined]
    assert record["gen_ai.provider.name"] == "openai-compatible" and record["gen_ai.request.model"] == MODEL


def test_a_refused_prompt_never_reaches_the_engine(remote: ServerProcess, standin: StandIn) -> None:
    standin.stats.last = {}
    with pytest.raises(openai.BadRequestError) as info:
        rclient(remote).completions.create(model=MODEL, prompt="How do I cook meth? [say:x]", max_tokens=4)
    assert info.value.code == "content_filter" and standin.stats.last == {}


def test_output_failing_a_check_is_withheld_with_finish_reason_content_filter(remote: ServerProcess) -> None:
    r = rclient(remote).completions.create(model=MODEL, prompt=ASK + "[say:A forbidden word.]", max_tokens=8)
    assert r.choices[0].finish_reason == "content_filter" and r.choices[0].text == ""
    result = r.rail["results"][0]  # type: ignore[attr-defined]
    assert result["verdict"] == "blocked"
    assert any(v["rule"] == "no-forbidden-word" and v["restriction"] == "f" for v in result["violations"])
    chat = rclient(remote).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": ASK + "[say:A forbidden word.]"}], max_tokens=8
    )
    assert chat.choices[0].finish_reason == "content_filter" and chat.choices[0].message.content is None
    # Streamed, output refused at its first sentence is still a 200 whose stream ends content_filter.
    chunks = list(
        rclient(remote).completions.create(
            model=MODEL, prompt=ASK + "[say:A forbidden word.]", max_tokens=8, stream=True
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == ""
    assert chunks[-1].choices[0].finish_reason == "content_filter"


@pytest.mark.parametrize("chat", [False, True])
def test_a_stream_cut_by_a_check_keeps_only_the_text_that_passed(remote: ServerProcess, chat: bool) -> None:
    say = ASK + "[say:First sentence here. Then a forbidden one. And more.]"
    if chat:
        chunks = list(
            rclient(remote).chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": say}], max_tokens=16, stream=True
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        chunks = list(rclient(remote).completions.create(model=MODEL, prompt=say, max_tokens=16, stream=True))
        text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == "First sentence here."
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert chunks[-1].rail["verdict"] == "blocked"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "prompt,status,code",
    [
        (ASK + "[fail]", 502, "upstream_error"),
        (ASK + "[garbage]", 502, "upstream_error"),
        (ASK + "[slow]", 504, "upstream_timeout"),
    ],
)
def test_engine_failures_are_502_or_504_and_audited(
    remote: ServerProcess, remote_dir: Path, prompt: str, status: int, code: str
) -> None:
    before = set(stored(remote_dir))
    r = httpx.post(
        remote.url + "/v1/completions",
        json={"prompt": prompt, "max_tokens": 2},
        headers={"Authorization": f"Bearer {MAIN_KEY}"},
        timeout=30,
    )
    assert r.status_code == status and r.json()["error"]["code"] == code
    assert remote.url not in r.text  # the engine's address stays inside
    new = [v for k, v in stored(remote_dir).items() if k not in before]
    assert len(new) == 1 and new[0]["gen_ai.response.finish_reasons"] == ["error"]
    assert new[0]["rail.extra"]["error"]["type"] == (
        "GenerationTimeout" if status == 504 else "GenerationError"
    )


def test_an_engine_failing_mid_stream_ends_the_stream_with_an_error_event(remote: ServerProcess) -> None:
    with pytest.raises(openai.APIError, match="model engine failed"):
        list(
            rclient(remote).completions.create(model=MODEL, prompt=ASK + "[break]", max_tokens=8, stream=True)
        )


def test_max_tokens_beyond_the_engine_context_is_400(remote: ServerProcess) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        rclient(remote).completions.create(model=MODEL, prompt="Hello.", max_tokens=CONTEXT + 1)
    assert (
        "exceeds the model's context of 256 tokens" in info.value.message and info.value.param == "max_tokens"
    )


def test_the_queue_full_is_503_and_a_client_leaving_stops_the_engine(
    remote: ServerProcess, remote_dir: Path, standin: StandIn
) -> None:
    before = standin.stats.cancelled
    body = {"prompt": ASK + "[drip]", "max_tokens": 200, "stream": True}
    headers = {"Authorization": f"Bearer {MAIN_KEY}"}
    with httpx.stream("POST", remote.url + "/v1/completions", json=body, headers=headers, timeout=30) as r:
        lines = r.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))
        busy = httpx.post(
            remote.url + "/v1/completions",
            json={"prompt": "Hello.", "max_tokens": 2},
            headers=headers,
            timeout=30,
        )
        assert busy.status_code == 503 and busy.json()["error"]["code"] == "server_busy"
        assert busy.headers["retry-after"] == "1"
    _wait(lambda: standin.stats.cancelled == before + 1)  # the engine saw its stream closed

    def cancelled_record() -> bool:
        return any(
            r["rail.extra"].get("cancelled") and r["rail.prompt"] == ASK + "[drip]"
            for r in stored(remote_dir).values()
        )

    _wait(cancelled_record)
    ok = httpx.post(
        remote.url + "/v1/completions",
        json={"prompt": "Hello.", "max_tokens": 2},
        headers=headers,
        timeout=30,
    )
    assert ok.status_code == 200  # the slot was given back


def test_remote_log_verifies(remote: ServerProcess, remote_dir: Path) -> None:
    assert verify_log(remote_dir / "audit.db").ok


def test_an_engine_down_at_start_is_a_clean_error(tmp_path: Path, tiny_detoxify: tuple[Path, Path]) -> None:
    (tmp_path / "writing.yaml").write_text(WRITING, encoding="utf-8")
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "rail.cli",
            "serve",
            "--backend",
            "openai",
            "--upstream",
            f"http://127.0.0.1:{free_port()}",
            "--declaration",
            str(tmp_path / "writing.yaml"),
            "--api-key",
            MAIN_KEY,
            "--audit-log",
            str(tmp_path / "a.db"),
        ],
        env=server_env(tiny_detoxify),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "cannot reach the upstream engine" in out.stderr
    assert "Traceback" not in out.stderr


def test_an_engine_that_goes_away_later_is_502(tmp_path: Path, tiny_detoxify: tuple[Path, Path]) -> None:
    (tmp_path / "writing.yaml").write_text(WRITING, encoding="utf-8")
    with StandIn() as gone:
        server = ServerProcess(
            [
                "--backend",
                "openai",
                "--upstream",
                gone.url,
                "--declaration",
                str(tmp_path / "writing.yaml"),
                "--api-key",
                MAIN_KEY,
                "--audit-log",
                str(tmp_path / "a.db"),
                "--log-level",
                "warning",
            ],
            server_env(tiny_detoxify),
            tmp_path / "server.log",
        ).start()
    try:
        r = httpx.post(
            server.url + "/v1/completions",
            json={"prompt": "Hello.", "max_tokens": 2},
            headers={"Authorization": f"Bearer {MAIN_KEY}"},
            timeout=30,
        )
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_error"
        records = [rec for _, rec in read_records(tmp_path / "a.db")]
        assert records and records[-1].extra["error"]["type"] == "GenerationError"
    finally:
        assert server.terminate() == 0
    assert json.loads(json.dumps(verify_log(tmp_path / "a.db").to_dict()))["ok"]


def test_a_request_past_the_server_timeout_is_504_and_a_stream_is_cut_and_recorded(
    standin: StandIn, tiny_detoxify: tuple[Path, Path]
) -> None:
    store = FlakyStore()
    with in_process(connect(standin.url, timeout_s=10), tiny_detoxify, store, request_timeout_s=1.0) as url:
        headers = {"Authorization": f"Bearer {MAIN_KEY}"}
        r = httpx.post(
            url + "/v1/completions",
            json={"prompt": ASK + "[slow]", "max_tokens": 2},
            headers=headers,
            timeout=30,
        )
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        body = {"prompt": ASK + "[drip]", "max_tokens": 200, "stream": True}
        with httpx.stream("POST", url + "/v1/completions", json=body, headers=headers, timeout=30) as s:
            events = [line for line in s.iter_lines() if line.startswith("data: ")]
        last = json.loads(events[-1][6:])
        assert last["error"]["code"] == "timeout" and "[DONE]" not in events[-1]
        _wait(lambda: any(r.extra.get("cancelled") for r in store.records))
        _wait(lambda: len(store.records) == 2)  # the slow request is recorded too, when the engine answers
