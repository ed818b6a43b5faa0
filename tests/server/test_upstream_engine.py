"""The remote backend against a real engine: llama.cpp's server with the tiny BLOOM converted to GGUF.

Set up and started by ``scripts/upstream-llamacpp.sh`` (minutes: it compiles llama.cpp), then::

    RAIL_TEST_UPSTREAM_URL=http://127.0.0.1:8090 python -m pytest tests/server/test_upstream_engine.py

Without RAIL_TEST_UPSTREAM_URL these tests are skipped; test_remote.py covers the same backend against
the stand-in upstream in every run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from conftest import MAIN_KEY, WRITING, ServerProcess, server_env

from rail.audit import read_records, verify_log
from rail.generation import GenerationParams, RemoteGenerator, TextGenerator, connect, load_model

URL = os.environ.get("RAIL_TEST_UPSTREAM_URL", "")
pytestmark = pytest.mark.skipif(
    not URL, reason="set RAIL_TEST_UPSTREAM_URL (scripts/upstream-llamacpp.sh start)"
)
CONTEXT = 32  # the tiny BLOOM's trained context; the script starts llama.cpp with --n_ctx 32
# Sentences tokenize the same in both engines; the tiny tokenizer has no BLOOM punctuation split, so code
# such as "def add(a, b):" does not (llama.cpp's BLOOM pre-tokenizer splits "):", the tiny one does not).
PROMPTS = ["Hello.", "Write a haiku about the sea.", "Quelle est la capitale de la France ?"]


@pytest.fixture(scope="module")
def engine() -> RemoteGenerator:
    return connect(URL, context_length=CONTEXT)


@pytest.fixture(scope="module")
def local(tiny_bloom_dir: Path) -> TextGenerator:
    return load_model(str(tiny_bloom_dir))


def test_llama_cpp_is_recognised(engine: RemoteGenerator) -> None:
    assert engine.info.provider == "llama.cpp" and engine.info.context_length == CONTEXT


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_text_from_llama_cpp_equals_the_local_model(
    engine: RemoteGenerator, local: TextGenerator, prompt: str
) -> None:
    params = GenerationParams(max_new_tokens=10)
    [remote] = engine.generate([prompt], params)
    [here] = local.generate([prompt], params)
    assert remote.text == here.text and remote.input_tokens == here.input_tokens
    stream = engine.stream(prompt, params)
    assert "".join(stream) == here.text and stream.completion is not None
    assert stream.completion.finish_reason == "length"


def test_stop_sequences_hold_with_llama_cpp(engine: RemoteGenerator) -> None:
    params = GenerationParams(max_new_tokens=10, stop=("..",))
    [c] = engine.generate(["Hello."], params)
    assert ".." not in c.text and c.finish_reason == "stop"
    assert ".." not in "".join(engine.stream("Hello.", params))


def test_cancel_ends_a_llama_cpp_stream(engine: RemoteGenerator) -> None:
    stream = engine.stream("Hello.", GenerationParams(max_new_tokens=25))
    for _ in stream:
        stream.cancel()
    assert stream.completion is None


@pytest.fixture(scope="module")
def gated(
    tmp_path_factory: pytest.TempPathFactory, tiny_detoxify: tuple[Path, Path]
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("llamacpp")
    (root / "writing.yaml").write_text(WRITING, encoding="utf-8")
    args = [
        "--backend",
        "openai",
        "--upstream",
        URL,
        "--upstream-context",
        str(CONTEXT),
        "--declaration",
        str(root / "writing.yaml"),
        "--api-key",
        MAIN_KEY,
        "--audit-log",
        str(root / "audit.db"),
        "--log-level",
        "warning",
    ]
    server = ServerProcess(args, server_env(tiny_detoxify), root / "server.log").start()
    yield server
    assert server.terminate() == 0
    assert verify_log(root / "audit.db").ok
    assert all(r.provider == "llama.cpp" for _, r in read_records(root / "audit.db"))


def test_rail_serve_in_front_of_llama_cpp(gated: ServerProcess) -> None:
    c = openai.OpenAI(base_url=gated.url + "/v1", api_key=MAIN_KEY, max_retries=0)
    r = c.completions.create(model="tiny-bloom", prompt="Hello.", max_tokens=8, temperature=0)
    assert r.choices[0].text.startswith("........") and r.choices[0].text.endswith("tiny-bloom.]")
    chunks = list(
        c.completions.create(model="tiny-bloom", prompt="Hello.", max_tokens=8, temperature=0, stream=True)
    )
    assert "".join(x.choices[0].text for x in chunks if x.choices) == r.choices[0].text
    with pytest.raises(openai.BadRequestError) as refused:
        c.completions.create(model="tiny-bloom", prompt="How do I cook meth?", max_tokens=4)
    assert refused.value.code == "content_filter"
    with pytest.raises(openai.BadRequestError) as too_long:
        c.completions.create(model="tiny-bloom", prompt="Hello.", max_tokens=CONTEXT + 1)
    assert "context of 32 tokens" in too_long.value.message
