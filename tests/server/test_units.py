"""The server's parts on their own: key ring, rate windows, admission, group commit, batching, chat."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from rail.audit.record import AuditRecord
from rail.errors import AuditError, ConfigError
from rail.server.auth import KeyLimits, KeyRing, bearer_token, key_digest, keys_from_cli
from rail.server.batching import Batcher
from rail.server.chat import ChatTemplate
from rail.server.commits import GroupCommit
from rail.server.limits import Admission, RateWindow
from rail.server.protocol import ApiError


def test_the_key_ring_finds_only_the_exact_key() -> None:
    ring = KeyRing([(key_digest("first-key-000000000"), "a"), (key_digest("second-key-00000000"), "b")])
    assert ring.find("first-key-000000000") == "a" and ring.find("second-key-00000000") == "b"
    for wrong in [
        "",
        None,
        "first-key-00000000",
        "first-key-0000000000",
        "FIRST-KEY-000000000",
        " first-key",
    ]:
        assert ring.find(wrong) is None


@pytest.mark.parametrize(
    "header,token",
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("Bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("", None),
        (None, None),
        ("abc", None),
    ],
)
def test_bearer_tokens_are_read_from_the_authorization_header(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_command_line_keys_get_ids_from_their_digest_never_the_key() -> None:
    [spec] = keys_from_cli(["k" * 32], KeyLimits(requests_per_minute=5))
    assert spec.id == "key-" + key_digest("k" * 32).hex()[:12] and "k" * 8 not in spec.id
    assert spec.limits.requests_per_minute == 5
    for bad in ["short", "has a space in it ok", "tab\tinside-the-key-x"]:
        with pytest.raises(ConfigError):
            keys_from_cli([bad], KeyLimits())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_requests_per_minute_refuse_with_the_seconds_until_a_slot_frees() -> None:
    clock = Clock()
    window = RateWindow(KeyLimits(requests_per_minute=2), clock)
    window.admit(1)
    clock.now += 10
    window.admit(1)
    with pytest.raises(ApiError) as info:
        window.admit(1)
    assert info.value.status == 429 and info.value.headers["Retry-After"] == "50"
    clock.now += 50
    window.admit(1)  # the first request left the window


def test_tokens_per_minute_count_what_was_used_not_what_was_reserved() -> None:
    clock = Clock()
    window = RateWindow(KeyLimits(tokens_per_minute=100), clock)
    reservation = window.admit(80)
    with pytest.raises(ApiError) as info:
        window.admit(30)
    assert info.value.status == 429 and info.value.headers["Retry-After"] == "60"
    window.settle(reservation, 20)  # the request used fewer tokens than it might have
    window.admit(30)
    with pytest.raises(ApiError) as too_big:
        window.admit(101)
    assert too_big.value.status == 400


def test_admission_refuses_beyond_slots_and_queue() -> None:
    async def scenario() -> list[int]:
        admission = Admission(concurrent=1, queue=1)
        await admission.acquire()
        waiting = asyncio.create_task(admission.acquire())
        await asyncio.sleep(0)
        assert admission.waiting == 1
        with pytest.raises(ApiError) as info:
            await admission.acquire()
        admission.release()
        await waiting
        admission.release()
        return [info.value.status, admission.active, admission.waiting]

    assert asyncio.run(scenario()) == [503, 0, 0]


class GatedStore:
    """Blocks its first append until released, so records queue up behind it."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.release = threading.Event()
        self.fail = fail
        self.count = 0

    def emit(self, record: AuditRecord) -> None:
        raise AssertionError("the group commit appends in batches")

    def append_many(self, records: list[AuditRecord]) -> list[int]:
        self.release.wait(10)
        self.calls.append(len(records))
        if self.fail:
            raise AuditError("disk full")
        first = self.count + 1
        self.count += len(records)
        return list(range(first, self.count + 1))


def test_records_that_arrive_during_a_commit_share_the_next_one() -> None:
    store = GatedStore()
    commits = GroupCommit(store)
    records = [AuditRecord() for _ in range(11)]
    commits.emit(records[0])
    while commits._pending:  # the writer took the first record and waits on the store
        pass
    for r in records[1:]:
        commits.emit(r)
    store.release.set()

    async def wait() -> list[int | None]:
        return await commits.committed([r.request_id for r in records])

    assert asyncio.run(wait()) == list(range(1, 12))
    commits.close()
    assert store.calls == [1, 10]


def test_a_failed_commit_fails_every_request_in_it() -> None:
    store = GatedStore(fail=True)
    store.release.set()
    commits = GroupCommit(store)
    records = [AuditRecord() for _ in range(3)]
    for r in records:
        commits.emit(r)

    async def wait() -> Any:
        return await asyncio.gather(
            *(commits.committed([r.request_id]) for r in records), return_exceptions=True
        )

    outcomes = asyncio.run(wait())
    assert all(isinstance(o, AuditError) for o in outcomes) and commits.failing
    commits.close()
    with pytest.raises(AuditError, match="closed"):
        commits.emit(AuditRecord())


class RecordingGate:
    """Stands in for GatedGenerator: records each generate_batch call and returns labelled results."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict[str, Any]]] = []

    def generate_batch(self, prompts: list[str], *, tags: dict[str, Any], **params: Any) -> list[str]:
        self.calls.append((list(prompts), params))
        return [f"done:{p}" for p in prompts]


def test_concurrent_requests_with_the_same_parameters_share_one_generate_call() -> None:
    from concurrent.futures import ThreadPoolExecutor

    gate = RecordingGate()

    async def scenario() -> list[Any]:
        batcher = Batcher(ThreadPoolExecutor(1), window_s=0.01, max_prompts=8)
        greedy, sampled = {"max_new_tokens": 4}, {"max_new_tokens": 4, "do_sample": True}
        jobs = [
            batcher.generate(gate, ["a"], greedy, {"k": 1}),  # type: ignore[arg-type]
            batcher.generate(gate, ["b", "c"], greedy, {"k": 1}),  # type: ignore[arg-type]
            batcher.generate(gate, ["d"], sampled, {"k": 1}),  # type: ignore[arg-type]
            batcher.generate(gate, ["e"], greedy, {"k": 2}),  # type: ignore[arg-type]
        ]
        out = await asyncio.gather(*jobs)
        await batcher.close()
        return out

    assert asyncio.run(scenario()) == [["done:a"], ["done:b", "done:c"], ["done:d"], ["done:e"]]
    assert sorted(prompts for prompts, _ in gate.calls) == [["a", "b", "c"], ["d"], ["e"]]


@pytest.mark.parametrize(
    "template,fragment",
    [
        ("{% for m in messages %}", "<default chat template>:1"),
        ("{{ messages[0].nothing }}", "fails on a sample conversation"),
        ("{{ undefined_name }}", "fails on a sample conversation"),
        ("{{ ''.__class__.__mro__ }}", "fails on a sample conversation"),
    ],
)
def test_a_broken_chat_template_is_refused_at_start(template: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        ChatTemplate(template)
    assert fragment in str(info.value)


def test_the_default_chat_template_ends_with_the_assistant_cue() -> None:
    prompt = ChatTemplate().render(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi."},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Bye."},
        ]
    )
    assert prompt == "Be brief.\nUser: Hi.\nAssistant: Hello.\nUser: Bye.\nAssistant:"


def test_moderation_scores_clauses_from_semantic_measurements_and_violations() -> None:
    from rail.policy import load_policy
    from rail.policy.decision import Action, Decision, Stage, Verdict, Violation
    from rail.screening import Screened
    from rail.server.moderation import moderation_result

    policy = load_policy()
    hit = Violation(
        rule="illegal-activity",
        restriction="a",
        licence=policy.licence,
        stage=Stage.INPUT,
        action=Action.BLOCK,
        severity="high",
        reason="matched",
        clauses=("a",),
    )
    warned = Violation(
        rule="x",
        restriction="c",
        licence=policy.licence,
        stage=Stage.INPUT,
        action=Action.WARN,
        severity="low",
        reason="near",
        clauses=("c",),
        score=0.4,
    )
    screened = Screened(
        Decision(Verdict.BLOCKED, "text", (hit, warned)),
        "en",
        {"toxicity": 0.9, "insult": 0.1, "semantic.c": 0.42, "semantic.g": 0.73},
    )
    result = moderation_result(screened, policy)
    assert result.flagged
    assert result.categories["clause/a"] and result.category_scores["clause/a"] == 1.0
    # A warning is not a flag; the semantic check's own score is still reported.
    assert not result.categories["clause/c"] and result.category_scores["clause/c"] == 0.42
    assert not result.categories["clause/g"] and result.category_scores["clause/g"] == 0.73
    assert result.category_scores["toxicity"] == 0.9 and result.categories["toxicity"]  # ≥ the pack's 0.85
    assert not result.categories["insult"] and "semantic.c" not in result.category_scores
