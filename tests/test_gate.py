"""The gate end to end on the tiny models: checks, scores, attribution, audit records, batches and streams."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rail.attribution import sha256_text
from rail.audit.record import AuditRecord
from rail.errors import DeploymentRefused
from rail.gate import GatedGenerator
from rail.generation import GenerationParams, TextGenerator, load_model
from rail.policy.decision import Action, Verdict
from rail.scoring import ScorerSettings

FAIL_OPEN = """\
id: test-fail-open
version: "1"
extends: bigscience-bloom-rail-1.0
fail_open: true
"""
# Toxicity thresholds at both stages, set here so the scorer tests do not depend on the packaged pack.
SCORED = """\
id: test-scored
version: "1"
extends: bigscience-bloom-rail-1.0
rules:
  - id: test-toxicity-both-stages
    description: Toxicity thresholds on prompts and outputs.
    restrictions: [{clause: f}]
    stages: [input, output]
    check: {kind: toxicity, params: {thresholds: {toxicity: 0.99}}}
    action: block
    severity: high
    coverage: [screened-in-prompts, screened-in-outputs]
"""
PARAMS = GenerationParams(max_new_tokens=16, do_sample=True, seed=5)


def _settings(checkpoint: Path, config_dir: Path) -> ScorerSettings:
    """Scorer settings that use one local detoxify checkpoint for every model choice."""
    models = ("original", "unbiased", "multilingual")
    return ScorerSettings(
        checkpoints=dict.fromkeys(models, str(checkpoint)), configs=dict.fromkeys(models, str(config_dir))
    )


class ListSink:
    """Keeps emitted records in memory."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    def emit(self, record: AuditRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def generator(tiny_bloom_dir: Path) -> TextGenerator:
    return load_model(str(tiny_bloom_dir))




@pytest.fixture
def scorer(tiny_detoxify: tuple[Path, Path]) -> ScorerSettings:
    return _settings(*tiny_detoxify)


@pytest.fixture
def scored_policy(tmp_path: Path) -> Path:
    policy = tmp_path / "scored.yaml"
    policy.write_text(SCORED, encoding="utf-8")
    return policy


def test_allowed_request_is_attributed_scored_and_recorded(
    generator: TextGenerator, declaration: Path, scorer: ScorerSettings, scored_policy: Path
) -> None:
    sink = ListSink()
    gate = GatedGenerator(
        model=generator, declaration=declaration, policy=scored_policy, scorer=scorer, sink=sink,
        params=PARAMS,
    )
    result = gate.generate("Quelle est la capitale de la France ?")
    assert result.decision is Verdict.ALLOWED, result.violations
    assert result.final_text is not None and result.raw_text is not None
    assert result.final_text.startswith(result.raw_text)
    assert "tiny-bloom" in result.final_text[len(result.raw_text) :]  # the disclosure names the model
    assert result.provenance is not None
    assert result.provenance.output_sha256 == sha256_text(result.final_text)
    assert result.provenance.deployment == "writing-assistant"
    assert result.provenance.licence == "bigscience-bloom-rail-1.0"
    assert sink.records == [result.record]
    record = result.record
    assert record.verdict == result.decision.value and record.output_tokens == 16
    assert record.policy_id == gate.policy.id and record.policy_sha256 == gate.policy.sha256
    assert set(record.durations_ms) >= {"total", "input_checks", "generate", "output_checks", "attribution"}
    for stage in ("prompt", "output"):
        assert set(result.scores[stage]) >= {"toxicity", "severe_toxicity", "insult", "threat"}
        assert record.scores[stage] == result.scores[stage]


def test_batch_generates_passing_prompts_and_records_each(
    generator: TextGenerator, declaration: Path, scorer: ScorerSettings
) -> None:
    sink = ListSink()
    gate = GatedGenerator(model=generator, declaration=declaration, scorer=scorer, sink=sink, params=PARAMS)
    prompts = ["Write a haiku about the sea.", "Translate to English: Je t'aime."]
    # Greedy: a batch must equal one-by-one generation.
    results = gate.generate_batch(prompts, do_sample=False)
    assert isinstance(results, list) and [r.prompt for r in results] == prompts
    assert len(sink.records) == 2 and len({r.request_id for r in sink.records}) == 2
    singles = [gate.generate(p, do_sample=False) for p in prompts]
    assert [r.raw_text for r in results] == [r.raw_text for r in singles]


def test_declaration_under_a_restriction_refuses_to_start(
    generator: TextGenerator, medical: Path, scorer: ScorerSettings
) -> None:
    with pytest.raises(DeploymentRefused) as info:
        GatedGenerator(model=generator, declaration=medical, scorer=scorer)
    assert "l" in info.value.clauses


def test_declaration_is_checked_before_weights_load(medical: Path, scorer: ScorerSettings) -> None:
    with pytest.raises(DeploymentRefused):
        GatedGenerator(model="/no/such/model", declaration=medical, scorer=scorer)


def test_scorer_failure_blocks_with_the_reason(
    generator: TextGenerator, declaration: Path, tmp_path: Path, scored_policy: Path
) -> None:
    broken = ScorerSettings(model="unbiased", checkpoints={"unbiased": str(tmp_path / "missing.ckpt")})
    sink = ListSink()
    gate = GatedGenerator(
        model=generator, declaration=declaration, policy=scored_policy, scorer=broken, sink=sink,
        params=PARAMS,
    )
    result = gate.generate("Write a haiku about the sea.")
    assert result.decision is Verdict.BLOCKED and result.final_text is None and result.provenance is None
    assert "missing.ckpt" in (result.reason or "")
    assert sink.records[0].verdict == "blocked"


def test_fail_open_policy_allows_with_a_warning(
    generator: TextGenerator, declaration: Path, tmp_path: Path
) -> None:
    policy = tmp_path / "fail-open.yaml"
    policy.write_text(FAIL_OPEN, encoding="utf-8")
    broken = ScorerSettings(model="unbiased", checkpoints={"unbiased": str(tmp_path / "missing.ckpt")})
    gate = GatedGenerator(
        model=generator, declaration=declaration, policy=policy, scorer=broken, params=PARAMS
    )
    assert gate.policy.fail_open
    result = gate.generate("Write a haiku about the sea.")
    assert result.allowed and result.final_text
    assert any("missing.ckpt" in w for w in result.warnings)
    assert all(v.action is not Action.BLOCK for v in result.violations)


def test_stream_releases_checked_text_equal_to_the_final_text(
    generator: TextGenerator, declaration: Path, scorer: ScorerSettings
) -> None:
    sink = ListSink()
    gate = GatedGenerator(model=generator, declaration=declaration, scorer=scorer, sink=sink, params=PARAMS)
    stream = gate.generate_stream("Write a haiku about the sea.")
    chunks = list(stream)
    result = stream.result
    assert result is not None and result.allowed
    assert "".join(chunks) == result.final_text
    assert result.provenance is not None and result.provenance.output_sha256 == sha256_text("".join(chunks))
    assert result.raw_text == gate.generate("Write a haiku about the sea.").raw_text
    assert len(sink.records) == 2


def test_stream_fails_closed_when_the_scorer_is_missing(
    generator: TextGenerator, declaration: Path, tmp_path: Path, scored_policy: Path
) -> None:
    broken = ScorerSettings(model="unbiased", checkpoints={"unbiased": str(tmp_path / "missing.ckpt")})
    gate = GatedGenerator(
        model=generator, declaration=declaration, policy=scored_policy, scorer=broken, params=PARAMS
    )
    stream = gate.generate_stream("Write a haiku about the sea.")
    assert list(stream) == []
    assert stream.result is not None and stream.result.decision is Verdict.BLOCKED


def test_watermark_and_signature_go_into_provenance(
    generator: TextGenerator, declaration: Path, scorer: ScorerSettings, tmp_path: Path
) -> None:
    from rail.attribution import WatermarkSettings
    from rail.signing import generate_key

    private, public = generate_key(tmp_path / "key")
    gate = GatedGenerator(
        model=generator,
        declaration=declaration,
        scorer=scorer,
        params=PARAMS,
        watermark=WatermarkSettings(bias=6.0),
        signing_key=private,
        # Random weights write byte soup; what the semantic layer makes of it is not this test's subject.
        without=("semantic",),
    )
    result = gate.generate("Write a haiku about the sea.")
    assert (
        result.provenance is not None and result.provenance.watermark == WatermarkSettings(bias=6.0).to_dict()
    )
    assert result.provenance.verify(public, text=result.final_text)


@pytest.fixture(scope="module")
def threatening_scorer(tmp_path_factory: pytest.TempPathFactory) -> ScorerSettings:
    """A detoxify-format scorer that rates every text ≈ 0.998 on `threat` and low on everything else."""
    from rail.tiny import build_tiny_detoxify

    folder = tmp_path_factory.mktemp("threat")
    return _settings(*build_tiny_detoxify(folder, label_bias={"threat": 6.0}))


def test_a_prompt_over_a_toxicity_threshold_is_blocked_before_generation(
    generator: TextGenerator, declaration: Path, threatening_scorer: ScorerSettings
) -> None:
    sink = ListSink()
    gate = GatedGenerator(model=generator, declaration=declaration, scorer=threatening_scorer, sink=sink,
                          params=PARAMS)
    result = gate.generate("Write a haiku about the sea.")
    assert result.decision is Verdict.BLOCKED
    assert result.raw_text is None and result.final_text is None
    assert result.scores["prompt"]["threat"] > 0.6
    fired = [v for v in result.violations if v.rule == "toxic-language"]
    assert fired and fired[0].restriction == "f" and fired[0].stage.value == "input"
    assert "threat" in fired[0].reason
    assert sink.records[-1].verdict == "blocked"


def test_scores_under_every_threshold_pass(
    generator: TextGenerator, declaration: Path, scorer: ScorerSettings
) -> None:
    result = GatedGenerator(model=generator, declaration=declaration, scorer=scorer, params=PARAMS).generate(
        "Write a haiku about the sea."
    )
    assert not [v for v in result.violations if v.rule in ("toxic-language", "identity-attack")]
    assert result.scores["prompt"] and max(result.scores["prompt"].values()) < 0.5


@pytest.mark.parametrize(("action", "verdict"), [("block", Verdict.BLOCKED), ("redact", Verdict.MODIFIED)])
def test_held_back_output_stays_out_of_the_json_form(
    generator: TextGenerator, declaration: Path, scorer: ScorerSettings, every_output_policy: Any,
    action: str, verdict: Verdict,
) -> None:
    policy = every_output_policy(action)
    gate = GatedGenerator(
        model=generator, declaration=declaration, policy=policy, scorer=scorer, params=PARAMS
    )
    result = gate.generate("Write a haiku about the sea.")
    assert result.decision is verdict
    assert result.raw_text  # the library user who asks can still read the unchecked text
    assert result.raw_text not in (result.final_text or "")
    assert result.to_dict()["raw_text"] is None
    assert result.to_dict(include_raw=True)["raw_text"] == result.raw_text


def test_allowed_json_form_keeps_the_raw_text(
    generator: TextGenerator, declaration: Path, scorer: ScorerSettings
) -> None:
    result = GatedGenerator(model=generator, declaration=declaration, scorer=scorer, params=PARAMS).generate(
        "Write a haiku about the sea."
    )
    assert result.decision is Verdict.ALLOWED
    assert result.to_dict()["raw_text"] == result.raw_text and result.raw_text


@pytest.mark.parametrize("device", ["cuda:99"])
def test_unusable_scorer_device_blocks_with_the_reason(
    generator: TextGenerator, declaration: Path, tiny_detoxify: tuple[Path, Path], device: str,
    scored_policy: Path,
) -> None:
    settings = replace(_settings(*tiny_detoxify), device=device)
    gate = GatedGenerator(
        model=generator, declaration=declaration, policy=scored_policy, scorer=settings, params=PARAMS
    )
    result = gate.generate("Write a haiku about the sea.")
    assert result.decision is Verdict.BLOCKED and result.final_text is None
    assert f"device {device!r}" in (result.reason or "")



class _StalledStream:
    """A model stream that writes one sentence, then waits for more until it is cancelled."""

    def __init__(self) -> None:
        import threading

        self.cancelled = threading.Event()
        self.completion = None

    def __iter__(self) -> Any:
        yield "One sentence. "
        self.cancelled.wait(30)

    def cancel(self) -> None:
        self.cancelled.set()


def test_cancel_from_another_thread_stops_a_waiting_model_and_records_the_request(
    generator: TextGenerator, declaration: Path, scorer: ScorerSettings
) -> None:
    import threading

    class Stalling:
        info = generator.info
        prepare = generator.prepare
        generate = generator.generate

        def __init__(self) -> None:
            self.stream_made = _StalledStream()

        def stream(self, prompt: str, params: Any = None, **kw: Any) -> _StalledStream:
            return self.stream_made

    model = Stalling()
    sink = ListSink()
    gate = GatedGenerator(model=model, declaration=declaration, scorer=scorer, sink=sink)  # type: ignore[arg-type]
    stream = gate.generate_stream("Write a haiku about the sea.")
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(stream))
    reader.start()
    while not out:
        reader.join(0.01)
    stream.cancel()  # the reader is blocked inside the model, where close() could not reach it
    reader.join(10)
    assert not reader.is_alive() and model.stream_made.cancelled.is_set()
    assert out == ["One sentence."]
    assert stream.result is not None and sink.records == [stream.result.record]
    assert stream.result.record.extra["cancelled"] is True
