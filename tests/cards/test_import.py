"""Importing Hugging Face READMEs: the seeds round-trip, tables become rows, hostile input ends cleanly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from huggingface_hub import metadata_load

from rail.cards import import_card_file, import_card_text, load_card, render_card, split_front_matter
from rail.cli import main
from rail.errors import ConfigError
from tests.cards.conftest import CARDS, SEEDS

SEED_FILES = sorted(SEEDS.glob("*.txt"))
_TOC_ENTRY = re.compile(r"^\s*(?:\d+\.|-)\s+\[[^\]]*\]\(#[^)]*\)\s*$")
_LABEL = re.compile(r"^(?:\*\*[^*]{1,40}:\*\*|[A-Z][A-Za-z ]{0,30}:)\s+")


def _norm(text: str) -> str:
    text = re.sub(r"<[^>]+>", " ", text)
    text = re.sub(r"[*_`|#\\]", " ", text)
    return " ".join(text.split())


def _published_metadata(text: str) -> dict | None:
    """The seed's metadata, read independently of rail: a `---` block, or a Hub page's `metadata` block."""
    lines = text.splitlines()
    if "---" in lines:
        start = lines.index("---")
        end = lines.index("---", start + 1)
        return yaml.safe_load("\n".join(lines[start + 1 : end]))
    if "metadata" in lines:
        start = lines.index("metadata") + 1
        end = lines.index("", start)
        return yaml.safe_load("\n".join(lines[start:end]))
    return None


def _body_lines(text: str) -> list[str]:
    lines = text.splitlines()
    if "---" in lines:
        start = lines.index("---")
        return lines[lines.index("---", start + 1) + 1 :]
    if "metadata" in lines:
        start = lines.index("metadata") + 1
        return lines[lines.index("", start) :]
    return lines


@pytest.mark.parametrize("seed", SEED_FILES, ids=lambda p: p.stem)
def test_seed_import_then_render_keeps_metadata_and_section_content(seed: Path, tmp_path: Path):
    card_yaml = tmp_path / "card.yaml"
    result = CliRunner().invoke(main, ["card", "import", str(seed), "-o", str(card_yaml)])
    assert result.exit_code == 0, result.output
    card = load_card(card_yaml)
    readme = tmp_path / "README.md"
    readme.write_text(render_card(card, "md").text, encoding="utf-8")

    text = seed.read_text(encoding="utf-8")
    published = _published_metadata(text)
    if published is not None:
        assert metadata_load(readme) == published
        assert list(metadata_load(readme)) == list(published)
    else:
        assert "no front matter found" in result.output

    rendered = _norm(readme.read_text(encoding="utf-8"))
    lost = []
    for line in _body_lines(text):
        if _TOC_ENTRY.match(line) or not line.strip(" |-:"):
            continue  # the table of contents is regenerated; table rules carry no content
        content = _norm(_LABEL.sub("", re.sub(r"^\s*(?:[-*+]|\d+\.)\s+", "", line.strip())))
        if len(content) > 40 and content not in rendered:
            lost.append(line)
    assert lost == []


def test_bloom_card_sections_map_to_schema_sections():
    card = import_card_file(SEEDS / "bloom-560m-readme.txt").card
    assert card.title == "Model Card for Bloom-560m"
    assert card.data["card_version"] == "1.0" and card.data["card_date"] == "26.May.2022"
    assert card.get("model_details", "model_type") == "Transformer-based Language Model"
    assert card.get("uses", "direct_use")[0] == "Text generation"
    assert card.get("intended_users", "direct_users")[0] == "General Public"
    assert "recommendations" in card.data
    assert card.get("glossary", "terms", 0) == {
        "term": "Loss",
        "anchor": "loss",
        "definition": "A calculation of the difference between what the model has learned and what the data "
        "shows "
        '("groundtruth"). The lower the loss, the better. The training process aims to minimize the loss.',
    }
    assert card.get("authors", "names", 0) == "Margaret Mitchell" and len(card.get("authors", "names")) == 28


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Release Date Estimate", "Monday, 11.July.2022 (estimate)"),
        ("Release Date", "Monday, 11.July.2022"),
    ],
)
def test_release_date_keeps_its_estimate_qualifier(label: str, expected: str):
    text = f"---\nlicense: mit\n---\n# T\n\n## Model Details\n\n- **{label}:** Monday, 11.July.2022\n"
    card = import_card_text(text).card
    assert card.get("model_details", "release_date") == expected
    assert f"**Release date:** {expected}\n" in render_card(card, "md").text


def test_imported_bloom_release_date_matches_the_shipped_card():
    imported = import_card_file(SEEDS / "bloom-560m-readme.txt").card
    shipped = load_card(next(p for p in CARDS if p.stem == "bloom-560m"))
    assert imported.get("model_details", "release_date") == shipped.get("model_details", "release_date")
    assert imported.get("model_details", "release_date").endswith("(estimate)")


def test_markdown_tables_become_rows_with_their_headers():
    card = import_card_file(SEEDS / "bloom-560m-readme.txt").card
    programming = card.get("training_data", "extra", "Languages", "tables", 1)
    assert programming["columns"] == {
        "extension": "Extension",
        "language": "Language",
        "number_of_files": "Number of files",
    }
    assert programming["rows"][0] == {"extension": "java", "language": "Java", "number_of_files": "5,407,724"}
    assert len(programming["rows"]) == 25
    languages = card.get("training_data", "extra", "Languages", "tables", 0)
    assert list(languages["columns"].values()) == ["Niger Congo", "Percentage", "Indic", "Percentage"]
    assert languages["rows"][-1] == {
        "niger_congo": "Swahili",
        "percentage": "0.02",
        "indic": None,
        "percentage_4": None,
    }


def test_unknown_sections_are_kept_in_order_as_custom_sections():
    text = (
        "---\nlicense: mit\n---\n# Card\n\n## Model Details\n\nA model.\n\n## Deployment\n\nOn CPU.\n\n"
        "## Citation\n\n```bibtex\n@misc{x}\n```\n\n## Zebra\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    )
    card = import_card_text(text).card
    assert list(card.data) == ["metadata", "title", "model_details", "extra", "citation"]
    assert list(card.data["extra"]) == ["Deployment", "Zebra"]
    assert card.data["extra"]["Zebra"] == {"columns": {"a": "a", "b": "b"}, "rows": [{"a": "1", "b": "2"}]}
    assert card.get("citation", "bibtex") == "@misc{x}"


def test_language_no_in_front_matter_stays_a_string():
    card = import_card_text("---\nlicense: mit\nlanguage: no\n---\n# T\n").card
    assert card.metadata["language"] == "no"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("unclosed front matter", "---\nlicense: mit\n" + "a: b\n" * 50_000, "front matter is not closed"),
        ("dashes only", "---\n" + "-" * (1024 * 1024), "front matter is not closed"),
        ("bad yaml in front matter", "---\nlicense: [\n---\n# T\n", "front matter: not valid YAML"),
        ("front matter not a mapping", "---\n- a\n---\n# T\n", "must be a YAML mapping"),
    ],
)
def test_broken_front_matter_fails_cleanly(name: str, text: str, message: str):
    with pytest.raises(ConfigError, match=re.escape(message)):
        import_card_text(text, "README.md")


def test_one_megabyte_of_hostile_markdown_parses_line_by_line():
    # Patterns that make backtracking parsers explode: long runs of '#', '|', '-', '*' and unclosed fences.
    hostile = ("#" * 5000 + " x\n" + "|" * 20000 + "\n" + "- " * 20000 + "\n" + "*" * 20000 + "\n```\n") * 12
    assert len(hostile) > 1_000_000
    result = import_card_text("---\nlicense: mit\n---\n" + hostile, "hostile.md")
    assert result.card.metadata == {"license": "mit"}
    metadata, body, _ = split_front_matter("\n" * 1_000_000 + "---")
    assert metadata is None and len(body) == 1_000_001


def test_import_missing_file_exits_2(tmp_path: Path):
    result = CliRunner().invoke(
        main, ["card", "import", str(tmp_path / "none.md"), "-o", str(tmp_path / "c.yaml")]
    )
    assert result.exit_code == 2 and "file not found" in result.output
    assert not (tmp_path / "c.yaml").exists()
