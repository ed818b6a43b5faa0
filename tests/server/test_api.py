"""``rail serve`` on the tiny BLOOM, driven with the official openai client and with raw HTTP."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from conftest import CLI_KEY, MAIN_KEY, OTHER_KEY, RPM_KEY, TPM_KEY, ServerProcess

from rail.attribution import sha256_text
from rail.audit import read_records, verify_log

BLOCKED = "How do I cook meth?"  # clause (a) in the packaged policy


def client(server: ServerProcess, key: str = MAIN_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=60)


def records(server_dir: Path) -> dict[str, dict[str, Any]]:
    """The audit log's records by request id."""
    return {r["rail.request_id"]: r for _, r in _all(server_dir)}


def _all(server_dir: Path) -> list[tuple[int, dict[str, Any]]]:
    return [(seq, record.to_dict()) for seq, record in read_records(server_dir / "audit.db")]


def post(server: ServerProcess, path: str, body: Any, key: str = MAIN_KEY, **kw: Any) -> httpx.Response:
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", **kw.pop("headers", {})}
    return httpx.post(server.url + path, content=content, headers=headers, timeout=60, **kw)


def test_completion_carries_disclosure_provenance_and_its_audit_record(
    server: ServerProcess, server_dir: Path
) -> None:
    r = client(server).completions.create(
        model="tiny-bloom",
        prompt="Write a haiku about the sea.",
        max_tokens=12,
        temperature=0,
        user="end-user-7",
    )
    text = r.choices[0].text
    assert text.endswith("[Machine-generated text: written by the AI model tiny-bloom.]")
    assert r.choices[0].finish_reason in ("stop", "length")
    rail = r.rail  # type: ignore[attr-defined]
    assert rail["verdict"] == "allowed" and rail["deployment"] == "drafting-service"
    result = rail["results"][0]
    assert result["disclosure"] == {"mode": "visible", "position": "suffix", "applied": True}
    assert result["provenance"]["output_sha256"] == sha256_text(text)
    seq, request_id = result["audit"]["seq"], result["audit"]["request_id"]
    assert r.id == f"cmpl-{request_id}" and r.usage is not None and r.usage.completion_tokens == 12
    stored = dict(_all(server_dir))[seq]
    assert stored["rail.request_id"] == request_id
    assert stored["rail.extra"]["api_key_id"] == "main"
    assert stored["rail.extra"]["declaration"]["name"] == "drafting-service"
    assert (
        stored["rail.extra"]["endpoint"] == "/v1/completions" and stored["rail.extra"]["user"] == "end-user-7"
    )
    assert MAIN_KEY not in json.dumps(stored)  # the key itself is never recorded


def test_each_prompt_of_a_list_gets_its_own_choice_and_record(
    server: ServerProcess, server_dir: Path
) -> None:
    prompts = [
        "Write a haiku about the sea.",
        "Translate to English: Je t'aime.",
        "What is the capital of France?",
    ]
    r = client(server).completions.create(model="tiny-bloom", prompt=prompts, max_tokens=6, temperature=0)
    assert [c.index for c in r.choices] == [0, 1, 2]
    results = r.rail["results"]  # type: ignore[attr-defined]
    seqs = [x["audit"]["seq"] for x in results]
    assert len(set(seqs)) == 3
    stored = records(server_dir)
    assert {stored[x["audit"]["request_id"]]["rail.prompt"] for x in results} == set(prompts)


def test_concurrent_requests_are_answered_and_each_recorded_once(
    server: ServerProcess, server_dir: Path
) -> None:
    answers: list[Any] = []
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            answers.append(
                client(server).completions.create(
                    model="tiny-bloom", prompt=f"Write note {i} about the sea.", max_tokens=4, temperature=0
                )
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ids = [a.rail["results"][0]["audit"]["request_id"] for a in answers]
    stored = records(server_dir)
    assert len(ids) == 8 and all(i in stored for i in ids)
    assert len({a.rail["results"][0]["audit"]["seq"] for a in answers}) == 8


def _create(server: ServerProcess, route: str, prompt: str) -> Any:
    c = client(server)
    if route == "completions":
        return c.completions.create(model="tiny-bloom", prompt=prompt, max_tokens=8)
    if route == "completions-stream":
        return list(c.completions.create(model="tiny-bloom", prompt=prompt, max_tokens=8, stream=True))
    if route == "chat":
        return c.chat.completions.create(
            model="tiny-bloom", messages=[{"role": "user", "content": prompt}], max_tokens=8
        )
    return list(
        c.chat.completions.create(
            model="tiny-bloom", messages=[{"role": "user", "content": prompt}], max_tokens=8, stream=True
        )
    )


@pytest.mark.parametrize("route", ["completions", "completions-stream", "chat", "chat-stream"])
def test_a_refused_prompt_is_400_content_filter_on_every_route(
    server: ServerProcess, server_dir: Path, route: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        _create(server, route, BLOCKED)
    error = info.value
    assert error.status_code == 400 and error.code == "content_filter"
    assert "clause (a)" in error.message and "BigScience BLOOM RAIL License v1.0" in error.message
    assert isinstance(error.body, dict)
    result = error.body["rail"]["results"][0]
    assert result["verdict"] == "blocked" and result["provenance"] is None
    assert any(v["restriction"] == "a" and v["stage"] == "input" for v in result["violations"])
    stored = records(server_dir)[result["audit"]["request_id"]]
    assert stored["rail.verdict"] == "blocked" and stored["gen_ai.usage.output_tokens"] is None


def test_streamed_text_is_the_checked_output_with_its_provenance(server: ServerProcess) -> None:
    stream = client(server).completions.create(
        model="tiny-bloom",
        prompt="Write a haiku about the sea.",
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason][-1]
    assert final.choices[0].finish_reason in ("stop", "length")
    assert final.rail["results"][0]["provenance"]["output_sha256"] == sha256_text(text)  # type: ignore[attr-defined]
    assert text.endswith("tiny-bloom.]")
    usage = [c.usage for c in chunks if c.usage is not None]
    assert usage and usage[-1].completion_tokens == 24 and chunks[-1].choices == []


def test_raw_stream_is_server_sent_events_ending_in_done(server: ServerProcess) -> None:
    body = {"prompt": "Write a haiku about the sea.", "max_tokens": 8, "temperature": 0, "stream": True}
    with httpx.stream(
        "POST",
        server.url + "/v1/completions",
        json=body,
        headers={"Authorization": f"Bearer {MAIN_KEY}"},
        timeout=60,
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[-2][6:])["choices"][0]["finish_reason"] in ("stop", "length")


def test_chat_uses_the_bloomz_template_and_answers_as_the_assistant(
    server: ServerProcess, server_dir: Path
) -> None:
    r = client(server).chat.completions.create(
        model="tiny-bloom",
        max_tokens=6,
        temperature=0,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello."}],
    )
    message = r.choices[0].message
    assert message.role == "assistant" and message.content is not None
    assert message.content.endswith("tiny-bloom.]")
    request_id = r.rail["results"][0]["audit"]["request_id"]  # type: ignore[attr-defined]
    stored = records(server_dir)[request_id]
    assert stored["rail.prompt"] == "Be brief.\nUser: Hello.\nAssistant:"
    assert "\nUser:" in stored["gen_ai.request.stop_sequences"]


def test_chat_stream_starts_with_the_assistant_role(server: ServerProcess) -> None:
    chunks = list(
        client(server).chat.completions.create(
            model="tiny-bloom",
            messages=[{"role": "user", "content": "Hello."}],
            max_tokens=8,
            temperature=0,
            stream=True,
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.endswith("tiny-bloom.]")
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_moderation_names_the_clause_and_scores_detoxify_labels(
    server: ServerProcess, server_dir: Path
) -> None:
    r = client(server).moderations.create(input=[BLOCKED, "What is the capital of France?"])
    flagged, clean = r.results
    assert flagged.flagged
    categories = flagged.model_dump()["categories"]
    scores = flagged.model_dump()["category_scores"]
    assert categories["clause/a"] is True and scores["clause/a"] == 1.0
    assert {f"clause/{c}" for c in "abcdefghijklm"} <= set(categories)
    assert 0.0 <= scores["toxicity"] <= 1.0 and "threat" in scores  # the policy scores prompts with detoxify
    assert not clean.flagged and not any(clean.model_dump()["categories"].values())
    stored = records(server_dir)
    audited = [stored[x["audit"]["request_id"]] for x in r.rail["results"]]  # type: ignore[attr-defined]
    assert [a["gen_ai.operation.name"] for a in audited] == ["moderation", "moderation"]
    assert [a["rail.verdict"] for a in audited] == ["blocked", "allowed"]


def test_each_key_uses_its_own_declaration(server: ServerProcess, server_dir: Path) -> None:
    r = client(server, OTHER_KEY).completions.create(
        model="tiny-bloom", prompt="Translate to English: Je t'aime.", max_tokens=6, temperature=0
    )
    rail = r.rail  # type: ignore[attr-defined]
    assert rail["deployment"] == "public-translator"
    assert rail["results"][0]["disclosure"]["position"] == "prefix"
    assert r.choices[0].text.startswith("[")  # the notice comes first for this tenant
    stored = records(server_dir)[rail["results"][0]["audit"]["request_id"]]
    assert stored["rail.extra"]["api_key_id"] == "other" and stored["rail.deployment"] == "public-translator"


def test_an_api_key_from_the_command_line_works_with_its_declaration(server: ServerProcess) -> None:
    r = client(server, CLI_KEY).completions.create(
        model="tiny-bloom", prompt="Hello.", max_tokens=3, temperature=0
    )
    assert r.rail["deployment"] == "drafting-service"  # type: ignore[attr-defined]


def test_models_lists_the_served_model(server: ServerProcess) -> None:
    models = client(server).models.list().data
    assert [m.id for m in models] == ["tiny-bloom"]
    assert models[0].model_dump()["rail"]["context_length"] == 2048


def test_a_model_the_server_does_not_serve_is_404(server: ServerProcess) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client(server).completions.create(model="gpt-4", prompt="Hello.", max_tokens=3)
    assert info.value.code == "model_not_found"


def test_metrics_count_verdicts_clauses_tokens_and_audit_commits(server: ServerProcess) -> None:
    with pytest.raises(openai.BadRequestError):
        client(server).completions.create(model="tiny-bloom", prompt=BLOCKED, max_tokens=3)
    client(server).completions.create(model="tiny-bloom", prompt="Hello.", max_tokens=3, temperature=0)
    text = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {MAIN_KEY}"}).text
    assert 'rail_requests_total{endpoint="/v1/completions",verdict="blocked"}' in text
    assert 'rail_violations_total{action="block",clause="a",stage="input"}' in text
    assert 'rail_stage_seconds_count{stage="generate"}' in text
    assert "rail_audit_commit_seconds_count" in text and "rail_queue_depth" in text
    assert 'rail_tokens_total{kind="completion"}' in text


def test_ready_says_ready_with_a_key(server: ServerProcess) -> None:
    r = httpx.get(server.url + "/ready", headers={"Authorization": f"Bearer {MAIN_KEY}"})
    assert r.status_code == 200 and r.json()["status"] == "ready"


ROUTES = [
    ("GET", "/v1/models"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/moderations"),
    ("GET", "/metrics"),
    ("GET", "/ready"),
    ("GET", "/docs"),
    ("GET", "/openapi.json"),
    ("GET", "/v1/does-not-exist"),
    ("POST", "/health"),
]
BAD_AUTH = [
    None,
    "Bearer wrong-key-0000000000000",
    f"Basic {MAIN_KEY}",
    "Bearer",
    f"Bearer {MAIN_KEY}x",
    f"bearer {MAIN_KEY[:-1]}",
]


@pytest.mark.parametrize("method,path", ROUTES)
@pytest.mark.parametrize("authorization", BAD_AUTH)
def test_every_route_but_health_needs_a_valid_key(
    server: ServerProcess, method: str, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    r = httpx.request(method, server.url + path, headers=headers, content=b'{"prompt": "Hello."}')
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json() == {
        "error": {
            "message": "missing or invalid API key (send it as 'Authorization: Bearer KEY')",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }


def test_health_is_open_and_says_nothing_else(server: ServerProcess) -> None:
    r = httpx.get(server.url + "/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_unknown_paths_with_a_key_are_404_in_openai_shape(server: ServerProcess) -> None:
    r = httpx.get(server.url + "/v1/files", headers={"Authorization": f"Bearer {MAIN_KEY}"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = httpx.get(server.url + "/v1/completions", headers={"Authorization": f"Bearer {MAIN_KEY}"})
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


BAD_REQUESTS = [
    ("/v1/completions", b"{not json", None, "could not parse the JSON"),
    ("/v1/completions", b"[1, 2]", None, "must be a JSON object"),
    ("/v1/completions", b"", None, "empty"),
    ("/v1/completions", b'{"prompt": "a", "max_tokens": NaN}', None, "could not parse"),
    ("/v1/completions", '{"prompt": "caf\xe9"}'.encode("latin-1"), None, "not UTF-8"),
    ("/v1/completions", {"max_tokens": 4}, "prompt", "Missing required parameter: 'prompt'"),
    ("/v1/completions", {"prompt": "a", "max_tokens": "16"}, "max_tokens", "integer"),
    ("/v1/completions", {"prompt": "a", "max_tokens": True}, "max_tokens", "integer"),
    ("/v1/completions", {"prompt": "a", "max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
    ("/v1/completions", {"prompt": "a", "temperature": "hot"}, "temperature", "number"),
    ("/v1/completions", {"prompt": "a", "temperature": 3}, "temperature", "less than or equal to 2"),
    ("/v1/completions", {"prompt": [1, 2, 3]}, "prompt", "token ids are not accepted"),
    ("/v1/completions", {"prompt": "a", "stop": 5}, "stop", "a string or a list of strings"),
    ("/v1/completions", {"prompt": "a", "stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
    ("/v1/completions", {"prompt": "a", "stop": [""]}, "stop", "must not be empty"),
    ("/v1/completions", {"prompt": "a", "stream": "yes"}, "stream", "boolean"),
    (
        "/v1/completions",
        {"prompt": "a", "frobnicate": 1},
        "frobnicate",
        "Unrecognized request argument supplied",
    ),
    ("/v1/completions", {"prompt": "a", "n": 2}, "n", "one choice per prompt"),
    ("/v1/completions", {"prompt": "a", "logprobs": 5}, "logprobs", "not supported"),
    (
        "/v1/completions",
        {"prompt": "a", "max_tokens": 513},
        "max_tokens",
        "exceeds this server's limit of 512",
    ),
    ("/v1/completions", {"prompt": ["a", "b"], "stream": True}, "prompt", "one prompt"),
    ("/v1/completions", {"prompt": []}, "prompt", "must not be an empty list"),
    ("/v1/completions", {"prompt": ["a"] * 17}, "prompt", "at most 16"),
    ("/v1/completions", {"prompt": "x" * 4001}, "prompt", "at most 4,000"),
    ("/v1/chat/completions", {"messages": []}, "messages", "at least 1"),
    (
        "/v1/chat/completions",
        {"messages": [{"role": "tool", "content": "x"}]},
        "messages[0].role",
        "'system'",
    ),
    (
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
        "messages[0].content",
        "a string or a list of",
    ),
    (
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]},
        "tools",
        "tool calls are not supported",
    ),
    ("/v1/moderations", {"input": 7}, "input", "a string or a list of strings"),
    ("/v1/moderations", {"input": "a", "model": "x", "extra": 1}, "extra", "Unrecognized request argument"),
]


@pytest.mark.parametrize("path,body,param,fragment", BAD_REQUESTS)
def test_bad_requests_are_400_naming_the_parameter(
    server: ServerProcess, path: str, body: Any, param: str | None, fragment: str
) -> None:
    r = post(server, path, body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert fragment in error["message"]


def test_neutral_values_of_unimplemented_openai_parameters_are_accepted(server: ServerProcess) -> None:
    body = {
        "prompt": "Hello.",
        "max_tokens": 3,
        "temperature": 0,
        "n": 1,
        "presence_penalty": 0,
        "frequency_penalty": 0.0,
        "logprobs": None,
        "echo": False,
        "best_of": 1,
        "logit_bias": {},
    }
    assert post(server, "/v1/completions", body).status_code == 200


def test_a_body_over_the_limit_is_413_whether_declared_or_streamed(server: ServerProcess) -> None:
    big = json.dumps({"prompt": "x" * 70_000}).encode()
    assert post(server, "/v1/completions", big).status_code == 413

    def chunks() -> Any:
        for _ in range(20):
            yield b" " * 4096  # no Content-Length: sent chunked
        yield json.dumps({"prompt": "x"}).encode()

    r = httpx.post(
        server.url + "/v1/completions",
        content=chunks(),
        headers={"Authorization": f"Bearer {MAIN_KEY}"},
        timeout=30,
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_a_slow_client_trickling_its_body_is_served(server: ServerProcess) -> None:
    def slowly() -> Any:
        body = json.dumps({"prompt": "Hello.", "max_tokens": 3, "temperature": 0}).encode()
        for i in range(0, len(body), 8):
            time.sleep(0.05)
            yield body[i : i + 8]

    r = httpx.post(
        server.url + "/v1/completions",
        content=slowly(),
        headers={"Authorization": f"Bearer {MAIN_KEY}"},
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["rail"]["verdict"] == "allowed"


def test_a_client_that_promises_more_body_and_leaves_does_not_hurt_the_server(server: ServerProcess) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + MAIN_KEY.encode()
            + b'\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"prompt": '
        )
    r = client(server).completions.create(model="tiny-bloom", prompt="Hello.", max_tokens=3, temperature=0)
    assert r.rail["verdict"] == "allowed"  # type: ignore[attr-defined]


def test_requests_per_minute_are_limited_per_key_with_retry_after(server: ServerProcess) -> None:
    limited = client(server, RPM_KEY)
    for _ in range(2):
        limited.completions.create(model="tiny-bloom", prompt="Hello.", max_tokens=2, temperature=0)
    with pytest.raises(openai.RateLimitError) as info:
        limited.completions.create(model="tiny-bloom", prompt="Hello.", max_tokens=2, temperature=0)
    assert info.value.code == "rate_limit_exceeded"
    assert 1 <= int(info.value.response.headers["retry-after"]) <= 60
    client(server).completions.create(
        model="tiny-bloom", prompt="Hello.", max_tokens=2, temperature=0
    )  # other keys unaffected


def test_tokens_per_minute_are_limited_per_key(server: ServerProcess) -> None:
    limited = client(server, TPM_KEY)
    with pytest.raises(openai.BadRequestError) as info:
        limited.completions.create(
            model="tiny-bloom", prompt="Hello.", max_tokens=61
        )  # can never fit in 60 tokens a minute
    assert info.value.code == "tokens_per_minute_exceeded"
    limited.completions.create(model="tiny-bloom", prompt="Hello.", max_tokens=40, temperature=0)
    with pytest.raises(openai.RateLimitError):
        limited.completions.create(model="tiny-bloom", prompt="Hello.", max_tokens=40, temperature=0)


def test_a_client_that_leaves_mid_stream_stops_the_generation_and_is_recorded(
    server: ServerProcess, server_dir: Path
) -> None:
    # Sampled with this seed, the tiny BLOOM writes words and sentence ends early and keeps going: the
    # first piece is released long before the 511th token.
    body = {
        "prompt": "Write a haiku about the sea.",
        "max_tokens": 511,
        "temperature": 1.0,
        "seed": 1,
        "stream": True,
    }
    before = set(records(server_dir))
    with httpx.stream(
        "POST",
        server.url + "/v1/completions",
        json=body,
        headers={"Authorization": f"Bearer {MAIN_KEY}"},
        timeout=60,
    ) as r:
        first = next(line for line in r.iter_lines() if line.startswith("data: "))
    assert json.loads(first[6:])["choices"][0]["finish_reason"] is None  # left before the end

    def cut_short() -> list[dict[str, Any]]:
        return [
            r
            for i, r in records(server_dir).items()
            if i not in before and r["gen_ai.request.max_tokens"] == 511
        ]

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not cut_short():
        time.sleep(0.1)
    [record] = cut_short()
    assert record["rail.extra"]["cancelled"] is True
    assert record["gen_ai.usage.output_tokens"] is None  # the stream ended without a completion


def test_the_audit_log_verifies_after_all_of_this(server: ServerProcess, server_dir: Path) -> None:
    assert verify_log(server_dir / "audit.db").ok
