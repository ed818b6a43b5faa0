"""Visible disclosure, provenance records (signed and verified) and the statistical watermark."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from rail.attribution import (
    DIGITAL_SOURCE_TYPE,
    DISCLOSURES,
    Disclosure,
    Provenance,
    WatermarkSettings,
    detect_watermark,
    sha256_text,
)
from rail.errors import ConfigError
from rail.generation import GenerationParams, TextGenerator, load_model


@pytest.mark.parametrize("language", ["en", "fr", "es", "pt", "zh", "ar", "hi"])
def test_disclosure_in_the_output_language(language: str) -> None:
    disclosure = Disclosure(position="suffix")
    text = disclosure.apply("Bonjour.", language, "bloomz-560m")
    notice = DISCLOSURES[language].replace("{model}", "bloomz-560m")
    assert text == "Bonjour.\n\n" + notice
    assert len(set(DISCLOSURES.values())) == len(DISCLOSURES)  # each language has its own wording


def test_disclosure_position_wording_and_fallback() -> None:
    custom = Disclosure(
        position="prefix", wording={"fr": "Généré par une IA ({model}).", "de": "KI-Text."}, fallback="fr"
    )
    assert custom.apply("Salut.", "fr", "m") == "Généré par une IA (m).\n\nSalut."
    assert custom.apply("Hallo.", "de", "m") == "KI-Text.\n\nHallo."
    assert custom.apply("???", None, "m").startswith("Généré par une IA")  # unknown language → fallback
    assert Disclosure(mode="none").apply("text", "en", "m") == "text"
    assert Disclosure().apply("", "en", "m") == DISCLOSURES["en"].replace("{model}", "m")


@pytest.mark.parametrize("bad", [{"mode": "hidden"}, {"position": "middle"}])
def test_bad_disclosure_settings(bad: dict) -> None:
    with pytest.raises(ConfigError):
        Disclosure(**bad)


def _provenance(text: str = "final text") -> Provenance:
    return Provenance(
        model="bigscience/bloomz-560m",
        model_revision="abc123",
        licence="bigscience-bloom-rail-1.0",
        policy_id="bigscience-bloom-rail-1.0",
        policy_sha256="f" * 64,
        deployment="helpdesk",
        time="2025-01-01T00:00:00Z",
        output_sha256=sha256_text(text),
        params=GenerationParams().to_dict(),
    )


def test_provenance_json_round_trip_names_the_source_type() -> None:
    record = _provenance()
    data = json.loads(json.dumps(record.to_dict()))
    assert data["digital_source_type"] == DIGITAL_SOURCE_TYPE
    assert data["output_sha256"] == sha256_text("final text")
    assert Provenance.from_dict(data) == record
    with pytest.raises(ConfigError, match="unknown provenance field"):
        Provenance.from_dict({**data, "extra": 1})


@pytest.mark.parametrize("alg", ["ed25519", "hmac-sha256"])
def test_signed_provenance_verifies_and_detects_tampering(tmp_path: Path, alg: str) -> None:
    from rail.signing import generate_key

    private, public = generate_key(tmp_path / "key", alg=alg)
    verifier = public or private
    signed = _provenance().sign(private)
    assert signed.signature and signed.signature["alg"] == alg
    assert signed.verify(verifier)
    assert signed.verify(verifier, text="final text")
    assert not signed.verify(verifier, text="final text, edited")
    assert not replace(signed, deployment="other").verify(verifier)
    assert not _provenance().verify(verifier)  # unsigned


@pytest.fixture(scope="module")
def generator(tiny_bloom_dir: Path) -> TextGenerator:
    return load_model(str(tiny_bloom_dir))


def test_watermarked_text_is_detected_and_plain_text_is_not(generator: TextGenerator) -> None:
    # A random tiny model has a flat next-token distribution, so a strong bias makes the mark reliable.
    settings = WatermarkSettings(bias=8.0)
    params = GenerationParams(max_new_tokens=200, min_new_tokens=200, do_sample=True, seed=3)
    marked = generator.generate(["The model writes"], params, watermarking_config=settings.to_transformers())[
        0
    ]
    plain = generator.generate(["The model writes"], params)[0]
    hit = detect_watermark(marked.text, generator.tokenizer, generator.model.config, settings)
    miss = detect_watermark(plain.text, generator.tokenizer, generator.model.config, settings)
    assert hit.detected and hit.z_score >= 4 and hit.p_value < 1e-4
    assert not miss.detected and miss.z_score < 4
    other_key = detect_watermark(
        marked.text, generator.tokenizer, generator.model.config, replace(settings, hashing_key=42)
    )
    assert not other_key.detected


def test_repeated_text_cannot_fake_a_watermark(generator: TextGenerator) -> None:
    verdict = detect_watermark("the the the the " * 50, generator.tokenizer, generator.model.config)
    assert not verdict.detected
    assert verdict.threshold == 4.0


@pytest.mark.parametrize(
    "bad", [{"greenlist_ratio": 1.5}, {"bias": 0}, {"seeding_scheme": "x"}, {"context_width": 0}]
)
def test_bad_watermark_settings(bad: dict) -> None:
    with pytest.raises(ConfigError):
        WatermarkSettings(**bad)
