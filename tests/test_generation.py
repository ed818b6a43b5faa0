"""Loading BLOOM from a local directory or the hub, generating batches and streams, and prompt hygiene."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rail.errors import ConfigError, ModelLoadError
from rail.generation import (
    GenerationParams,
    PromptHygiene,
    TextGenerator,
    apply_hygiene,
    has_clear_end,
    load_model,
    load_tokenizer,
)
from rail.language import detect

SAMPLED = GenerationParams(max_new_tokens=24, do_sample=True, seed=7)


@pytest.fixture(scope="module")
def generator(tiny_bloom_dir: Path) -> TextGenerator:
    return load_model(str(tiny_bloom_dir))


def test_load_records_what_was_loaded(generator: TextGenerator, tiny_bloom_dir: Path) -> None:
    info = generator.info
    assert info.model_id == str(tiny_bloom_dir)
    assert info.licence == "bigscience-bloom-rail-1.0"  # read from the README front matter
    assert info.architecture == "bloom"
    assert info.dtype == "float32" and info.device == "cpu"
    assert info.parameters == sum(p.numel() for p in generator.model.parameters())
    assert info.local and not info.bloomz
    assert generator.hygiene is PromptHygiene.OFF


def test_batch_is_left_padded_and_matches_single_generation(generator: TextGenerator) -> None:
    params = GenerationParams(max_new_tokens=12)
    prompts = ["Hello.", "Translate to English: Je t'aime. Translation:"]
    batch = generator.generate(prompts, params)
    singles = [generator.generate([p], params)[0] for p in prompts]
    assert [c.text for c in batch] == [c.text for c in singles]
    assert batch[0].input_tokens < batch[1].input_tokens
    assert all(c.output_tokens == 12 and c.finish_reason == "length" for c in batch)


def test_seeded_sampling_is_reproducible(generator: TextGenerator) -> None:
    first = generator.generate(["The model writes"], SAMPLED)[0].text
    assert generator.generate(["The model writes"], SAMPLED)[0].text == first
    assert generator.generate(["The model writes"], SAMPLED.replace(seed=8))[0].text != first


def test_stop_sequence_cuts_the_text(generator: TextGenerator) -> None:
    free = generator.generate(["The model writes"], SAMPLED)[0].text
    stop = free[len(free) // 2 : len(free) // 2 + 1]
    cut = generator.generate(["The model writes"], SAMPLED.replace(stop=(stop,)))[0]
    assert cut.finish_reason == "stop"
    assert stop not in cut.text
    assert free.startswith(cut.text)


def test_stream_yields_the_same_text_as_a_batch(generator: TextGenerator) -> None:
    stream = generator.stream("The model writes", SAMPLED)
    chunks = list(stream)
    assert stream.completion is not None
    assert (
        "".join(chunks) == stream.completion.text == generator.generate(["The model writes"], SAMPLED)[0].text
    )


def test_stream_never_shows_a_stop_sequence(generator: TextGenerator) -> None:
    free = generator.generate(["The model writes"], SAMPLED)[0].text
    stop = free[len(free) // 2 : len(free) // 2 + 2]
    stream = generator.stream("The model writes", SAMPLED.replace(stop=(stop,)))
    shown = "".join(stream)
    assert stop not in shown and stream.completion is not None
    assert shown == stream.completion.text and stream.completion.finish_reason == "stop"


@pytest.mark.parametrize(
    "prompt",
    [
        "Translate to English: Je t'aime.",
        "Translate to English: Je t'aime. Translation:",
        'What is "Je t\'aime." in English?',
        'Suggest at least five related search terms to "Mạng neural nhân tạo".',
        "Write a fairy tale about a troll. Story (in Spanish):",
        "一个传奇的开端,一个不灭的神话。你认为这句话的立场是赞扬、中立还是批评?",
        "法国的首都是哪里？",
        "答案：",
        "फ्रांस की राजधानी क्या है।",
        "ما هي عاصمة فرنسا؟",
        "Explain in a sentence in Telugu what is backpropagation in neural networks.  ",
    ],
)
def test_prompts_with_a_clear_end(prompt: str) -> None:
    assert has_clear_end(prompt)


@pytest.mark.parametrize(
    ("prompt", "terminated"),
    [
        ("Translate to English: Je t'aime", "Translate to English: Je t'aime."),
        ("法国的首都是哪里", "法国的首都是哪里。"),
        ("फ्रांस की राजधानी क्या है", "फ्रांस की राजधानी क्या है।"),
        ("ما هي عاصمة فرنسا  ", "ما هي عاصمة فرنسا."),
    ],
)
def test_unclear_prompts_are_terminated_in_their_script(prompt: str, terminated: str) -> None:
    assert not has_clear_end(prompt)
    note = apply_hygiene(prompt, "terminate")
    assert (note.action, note.sent, note.clear_end) == ("terminated", terminated, False)
    assert apply_hygiene(prompt, "warn").sent == prompt and apply_hygiene(prompt, "warn").action == "warned"
    assert apply_hygiene(prompt, "off").action == "none"


def test_hygiene_defaults_on_for_bloomz_only(tiny_bloom_dir: Path, tmp_path: Path) -> None:
    bloomz = tmp_path / "tiny-bloomz"
    shutil.copytree(tiny_bloom_dir, bloomz)
    generator = load_model(str(bloomz))
    assert generator.info.bloomz and generator.hygiene is PromptHygiene.TERMINATE
    completion = generator.generate(["Translate to English: Je t'aime"], GenerationParams(max_new_tokens=2))[
        0
    ]
    assert completion.hygiene.sent == "Translate to English: Je t'aime."
    assert load_model(str(bloomz), hygiene="off").hygiene is PromptHygiene.OFF
    with pytest.raises(ConfigError, match="prompt hygiene"):
        load_model(str(bloomz), hygiene="sometimes")


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("/no/such/model-dir", "model directory not found"),
        ("bigscience/bloomz-560mm", "not in the local Hugging Face cache and HF_HUB_OFFLINE is set"),
    ],
)
def test_weights_that_cannot_be_had_give_one_clear_error(model: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message) as info:
        load_model(model)
    assert "--model" in str(info.value)


def test_directory_without_config_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        load_model(str(tmp_path))


def test_eight_bit_without_bitsandbytes_says_how_to_install(tiny_bloom_dir: Path) -> None:
    pytest.importorskip("torch")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        with pytest.raises(ModelLoadError, match="bitsandbytes"):
            load_model(str(tiny_bloom_dir), load_in_8bit=True)
    else:
        pytest.skip("bitsandbytes is installed")


def test_tokenizer_only_load(tiny_bloom_dir: Path) -> None:
    tokenizer, config = load_tokenizer(str(tiny_bloom_dir))
    assert config.model_type == "bloom" and tokenizer.eos_token == "</s>"


@pytest.mark.parametrize(
    "bad",
    [
        {"max_new_tokens": 0},
        {"temperature": 0},
        {"top_p": 1.5},
        {"min_new_tokens": 100, "max_new_tokens": 10},
        {"stop": ("",)},
        {"stop": ("END", "")},
    ],
)
def test_bad_generation_parameters(bad: dict) -> None:
    with pytest.raises(ConfigError):
        GenerationParams(**bad)


def test_empty_stop_sequence_is_refused_on_override() -> None:
    with pytest.raises(ConfigError, match="stop sequences must be non-empty"):
        GenerationParams().replace(stop=("",))


def test_a_lone_stop_string_is_one_sequence() -> None:
    assert GenerationParams(stop="END").stop == ("END",)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Quelle est la capitale de la France ?", "fr"),
        ("The model writes a short answer.", "en"),
        ("法国的首都是哪里", "zh"),
        ("ما هي عاصمة فرنسا؟", "ar"),
        ("मॉडल एक छोटा उत्तर लिखता है।", "hi"),
        ("ok", None),
        ("", None),
        ("12 34 ##", None),
    ],
)
def test_language_detection(text: str, code: str | None) -> None:
    assert detect(text) == code
