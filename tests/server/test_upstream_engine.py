"""The remote backend against a real engine serving a tiny BLOOM on CPU (llama.cpp or vLLM).

Set up and started by ``scripts/upstream-llamacpp.sh`` or ``scripts/upstream-vllm.sh`` (minutes: they
install the engine), then::

    RAIL_TEST_UPSTREAM_URL=http://127.0.0.1:8090 RAIL_TEST_UPSTREAM_CONTEXT=32 \
        python -m pytest tests/server/test_upstream_engine.py
    RAIL_TEST_UPSTREAM_URL=http://127.0.0.1:8091 RAIL_TEST_UPSTREAM_MODEL=.upstream/tiny/tiny-bloom-hd32 \\
        python -m pytest tests/server/test_upstream_engine.py

``RAIL_TEST_UPSTREAM_MODEL`` is the Hugging Face directory the engine serves (default: the tiny BLOOM the
llama.cpp script converts), so greedy text can be compared with the local backend's;
``RAIL_TEST_UPSTREAM_CONTEXT`` gives the context of an engine that does not report it (llama-cpp-python's
server does not; the script starts it with 32).
Without RAIL_TEST_UPSTREAM_URL these tests are skipped; test_remote.py covers the same backend against
the stand-in upstream in every run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from conftest import MAIN_KEY, REPO, WRITING, ServerProcess, server_env

from rail.audit import read_records, verify_log
from rail.generation import GenerationParams, RemoteGenerator, TextGenerator, connect, load_model

URL = os.environ.get("RAIL_TEST_UPSTREAM_URL", "")
MODEL_DIR = Path(os.environ.get("RAIL_TEST_UPSTREAM_MODEL", REPO / ".upstream/tiny/tiny-bloom"))
CONTEXT = (
    int(os.environ["RAIL_TEST_UPSTREAM_CONTEXT"]) if os.environ.get("RAIL_TEST_UPSTREAM_CONTEXT") else None
)
pytestmark = pytest.mark.skipif(
    not URL, reason="set RAIL_TEST_UPSTREAM_URL (scripts/upstream-llamacpp.sh start)"
)
# Sentences tokenize alike in every engine. Code does not with llama.cpp: its BLOOM pre-tokenizer splits
# "):" where the tiny tokenizer (plain byte-level BPE) keeps one piece.
PROMPTS = ["Hello.", "Write a haiku about the sea.", "Quelle est la capitale de la France ?"]


@pytest.fixture(scope="module")
def engine() -> RemoteGenerator:
    return connect(URL, context_length=CONTEXT)


@pytest.fixture(scope="module")
def local() -> TextGenerator:
    return load_model(str(MODEL_DIR))


def test_the_engine_is_recognised_with_its_context(engine: RemoteGenerator) -> None:
    assert engine.info.provider in ("llama.cpp", "vllm", "tgi")
    assert engine.info.context_length is not None, "the engine does not say: set RAIL_TEST_UPSTREAM_CONTEXT"


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_text_from_the_engine_equals_the_local_model(
    engine: RemoteGenerator, local: TextGenerator, prompt: str
) -> None:
    params = GenerationParams(max_new_tokens=10)
    [remote] = engine.generate([prompt], params)
    [here] = local.generate([prompt], params)
    assert remote.text == here.text and remote.input_tokens == here.input_tokens
    stream = engine.stream(prompt, params)
    assert "".join(stream) == here.text and stream.completion is not None
    assert stream.completion.finish_reason == "length"


def test_stop_sequences_hold_with_the_engine(engine: RemoteGenerator) -> None:
    params = GenerationParams(max_new_tokens=10, stop=("..",))
    [c] = engine.generate(["Hello."], params)
    assert ".." not in c.text and c.finish_reason == "stop"
    assert ".." not in "".join(engine.stream("Hello.", params))


def test_cancel_ends_an_engine_stream(engine: RemoteGenerator) -> None:
    stream = engine.stream("Hello.", GenerationParams(max_new_tokens=25))
    for _ in stream:
        stream.cancel()
    assert stream.completion is None


@pytest.fixture(scope="module")
def gated(
    engine: RemoteGenerator, tmp_path_factory: pytest.TempPathFactory, tiny_detoxify: tuple[Path, Path]
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("engine")
    (root / "writing.yaml").write_text(WRITING, encoding="utf-8")
    context = engine.info.context_length
    assert context is not None, "the engine does not say its context: set RAIL_TEST_UPSTREAM_CONTEXT"
    args = [
        "--backend",
        "openai",
        "--upstream",
        URL,
        "--upstream-context",
        str(context),
        "--max-tokens",
        str(context + 1),
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
    assert {r.provider for _, r in read_records(root / "audit.db")} == {engine.info.provider}


def test_rail_serve_in_front_of_the_engine(
    gated: ServerProcess, engine: RemoteGenerator, local: TextGenerator
) -> None:
    c = openai.OpenAI(base_url=gated.url + "/v1", api_key=MAIN_KEY, max_retries=0)
    expected = local.generate(["Hello."], GenerationParams(max_new_tokens=8))[0].text
    r = c.completions.create(model=engine.info.model_id, prompt="Hello.", max_tokens=8, temperature=0)
    assert r.choices[0].text.startswith(expected) and r.choices[0].text.endswith(f"{engine.info.model_id}.]")
    chunks = list(
        c.completions.create(
            model=engine.info.model_id, prompt="Hello.", max_tokens=8, temperature=0, stream=True
        )
    )
    assert "".join(x.choices[0].text for x in chunks if x.choices) == r.choices[0].text
    with pytest.raises(openai.BadRequestError) as refused:
        c.completions.create(model=engine.info.model_id, prompt="How do I cook meth?", max_tokens=4)
    assert refused.value.code == "content_filter"
    assert engine.info.context_length is not None
    with pytest.raises(openai.BadRequestError) as too_long:
        c.completions.create(
            model=engine.info.model_id, prompt="Hello.", max_tokens=engine.info.context_length + 1
        )
    assert f"context of {engine.info.context_length:,} tokens" in too_long.value.message
