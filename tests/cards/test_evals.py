"""Merging evaluation results into a card's model-index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from huggingface_hub import metadata_load

from rail.cards import load_card, merge_results, render_card
from rail.cli import main
from rail.errors import ConfigError

CARD = """\
metadata:
  license: bigscience-bloom-rail-1.0
  model-index:
    - name: bloomz-560m
      results:
        - task: {type: text-generation}
          dataset: {type: xnli, name: XNLI, config: fr, split: validation}
          metrics:
            - {type: accuracy, value: 0.40, name: Accuracy}
            - {type: f1, value: 0.30}
title: bloomz-560m
"""

RESULTS = {
    "format": "rail-eval-results/1",
    "results": [
        {
            "task": {"type": "text-generation"},
            "dataset": {"type": "xnli", "name": "XNLI", "config": "fr", "split": "validation"},
            "metrics": [
                {"type": "accuracy", "value": 0.45, "name": "Accuracy"},
                {"type": "exact_match", "value": 0.2},
            ],
            "source": {"name": "lm-eval", "url": "https://example.org/run/1"},
        },
        {
            "task": {"type": "text-generation"},
            "dataset": {"type": "xwinograd", "name": "XWinograd", "config": "en", "split": "test"},
            "metrics": [{"type": "accuracy", "value": 0.52}],
        },
    ],
}


def test_merge_replaces_same_metric_and_adds_new_ones(write):
    card = load_card(write("card.yaml", CARD))
    merged = merge_results(card, RESULTS)
    entry = merged.metadata["model-index"][0]
    assert entry["name"] == "bloomz-560m"
    xnli, xwino = entry["results"]
    assert [(m["type"], m["value"]) for m in xnli["metrics"]] == [
        ("accuracy", 0.45),
        ("f1", 0.30),
        ("exact_match", 0.2),
    ]
    assert xnli["source"]["url"] == "https://example.org/run/1"
    assert xwino["dataset"]["name"] == "XWinograd"
    assert card.metadata["model-index"][0]["results"][0]["metrics"][0]["value"] == 0.40


def test_merge_into_a_card_without_model_index_uses_the_title(write):
    card = load_card(write("card.yaml", "metadata:\n  license: mit\ntitle: tiny\n"))
    merged = merge_results(card, {"results": RESULTS["results"][1:]})
    assert merged.metadata["model-index"][0]["name"] == "tiny"


def test_cli_merge_writes_a_valid_card_whose_readme_carries_the_results(write, tmp_path: Path):
    card = write("card.yaml", CARD)
    results = write("results.json", json.dumps(RESULTS))
    out = tmp_path / "merged.yaml"
    result = CliRunner().invoke(main, ["card", "merge-eval", str(card), str(results), "-o", str(out)])
    assert result.exit_code == 0, result.output
    merged = load_card(out)
    readme = tmp_path / "README.md"
    readme.write_text(render_card(merged, "md").text, encoding="utf-8")
    assert metadata_load(readme)["model-index"] == merged.metadata["model-index"]


@pytest.mark.parametrize(
    ("results", "message"),
    [
        ('{"results": []}', "results"),
        (
            '{"results": [{"task": {"type": "t"}, "dataset": {"type": "d", "name": "D"}, "metrics": '
            '[{"type": "acc"}]}]}',
            "missing required key 'value'",
        ),
        ('{"results": [{"task": {"type": "t"}, "datset": {}, "metrics": []}]}', "did you mean 'dataset'?"),
        ('{"results": [', "not valid JSON"),
    ],
)
def test_invalid_results_exit_2_and_leave_the_card_alone(results: str, message: str, write):
    card = write("card.yaml", CARD)
    path = write("results.json", results)
    with pytest.raises(ConfigError, match=message):
        from rail.cards import load_results

        load_results(path)
    outcome = CliRunner().invoke(main, ["card", "merge-eval", str(card), str(path), "-o", str(card)])
    assert outcome.exit_code == 2
    assert card.read_text() == CARD


def test_deeply_nested_results_exit_2_naming_the_file(write, tmp_path: Path):
    card = write("card.yaml", CARD)
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    outcome = CliRunner().invoke(main, ["card", "merge-eval", str(card), str(path), "-o", str(card)])
    assert outcome.exit_code == 2
    assert str(path) in outcome.output and "nested too deeply" in outcome.output
    assert "Traceback" not in outcome.output and "RecursionError" not in outcome.output
    assert card.read_text() == CARD


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_non_finite_metric_values_are_refused_naming_the_metric(value: str, write):
    card = write("card.yaml", CARD)
    results = json.dumps(RESULTS, indent=2).replace('"value": 0.52', f'"value": {value}')
    path = write("results.json", results)
    outcome = CliRunner().invoke(main, ["card", "merge-eval", str(card), str(path), "-o", str(card)])
    assert outcome.exit_code == 2, outcome.output
    line = next(i for i, text in enumerate(results.splitlines(), 1) if f'"value": {value}' in text)
    assert f"{path}:{line}, at results[1].metrics[0].value: metric 'accuracy'" in outcome.output
    assert "not a finite number" in outcome.output
    assert card.read_text() == CARD
