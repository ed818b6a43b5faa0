"""Every real card in tests/cards/corpus/ survives import and Markdown rendering unchanged.

"Unchanged" is defined in tests/cards/fidelity.py: the same top-level Markdown blocks in the same order
(headings by level and text, everything else by its exact source), plus only rail's licence section; and
the same metadata, read the way huggingface_hub reads it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from rail.cli import main
from tests.cards.fidelity import CORPUS, blocks, measure, split_readme

READMES = sorted(CORPUS.glob("*.md"))
SOURCES = yaml.safe_load((CORPUS / "SOURCES.yaml").read_text(encoding="utf-8"))["cards"]


def test_every_corpus_card_is_attributed_to_its_source():
    assert len(READMES) >= 30
    assert sorted(entry["file"] for entry in SOURCES) == [p.name for p in READMES]
    for entry in SOURCES:
        assert entry["repository"].count("/") == 1 and entry["path"] and len(entry["commit"]) == 40


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.stem)
def test_import_then_render_gives_the_card_back(readme: Path, tmp_path: Path):
    result = measure(readme, tmp_path)
    assert result.imported, result.error
    assert result.headings and result.blocks
    assert result.metadata and result.card_data


def test_the_corpus_exercises_what_broke_before():
    texts = {p.stem: p.read_text(encoding="utf-8") for p in READMES}
    body_blocks = [b for t in texts.values() for b in blocks(split_readme(t)[1])]
    kinds = {kind for kind, _, _ in body_blocks}
    assert {"heading", "html_block", "table_open", "fence", "bullet_list_open", "code_block"} <= kinds
    assert any(src.startswith("````") for kind, _, src in body_blocks if kind == "fence")
    assert any("<details" in src.lower() for kind, _, src in body_blocks if kind == "html_block")
    for key in ("pinned:", "language_bcp47:", "train-eval-index:", "model-index:", "widget:", "language: no"):
        assert any(f"\n{key}" in t for t in texts.values()), key


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.stem)
def test_imported_card_validates_and_lints(readme: Path, tmp_path: Path):
    card = tmp_path / "card.yaml"
    runner = CliRunner()
    assert runner.invoke(main, ["card", "import", str(readme), "-o", str(card)]).exit_code == 0
    validated = runner.invoke(main, ["card", "validate", str(card)])
    assert validated.exit_code == 0, validated.output
    linted = runner.invoke(main, ["card", "lint", str(card), "--threshold", "0"])
    assert linted.exit_code == 0 and "completeness" in linted.output
