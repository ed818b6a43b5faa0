"""Importing Hugging Face READMEs: nothing lost or moved, Hub metadata kept, errors at the README's lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from huggingface_hub import metadata_load

from rail.cards import (
    dump_card,
    import_card_file,
    import_card_text,
    load_card,
    render_card,
    split_front_matter,
)
from rail.cli import main
from rail.errors import ConfigError
from tests.cards.conftest import CARDS, SEEDS
from tests.cards.fidelity import CORPUS, blocks, split_readme, without_licence_section

SEED_FILES = sorted(SEEDS.glob("*.txt"))
BLOOM = CORPUS / "bigscience__bloom.md"
_TOC_ENTRY = re.compile(r"^\s*(?:\d+\.|-)\s+\[[^\]]*\]\(#[^)]*\)\s*$")


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


def _round_trip(text: str, tmp_path: Path) -> str:
    """Import README ``text`` with the CLI, render it as Markdown with the CLI, and return the README."""
    readme, card, out = tmp_path / "README.md", tmp_path / "card.yaml", tmp_path / "out.md"
    readme.write_text(text, encoding="utf-8")
    runner = CliRunner()
    imported = runner.invoke(main, ["card", "import", str(readme), "-o", str(card)])
    assert imported.exit_code == 0, imported.output
    rendered = runner.invoke(main, ["card", "render", str(card), "-o", str(out)])
    assert rendered.exit_code == 0, rendered.output
    return out.read_text(encoding="utf-8")


def _same_body(original: str, rendered: str) -> bool:
    return blocks(split_readme(original)[1]) == without_licence_section(blocks(split_readme(rendered)[1]))


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
            continue
        content = _norm(re.sub(r"^\s*(?:[-*+]|\d+\.)\s+", "", line.strip()))
        if len(content) > 40 and content not in rendered:
            lost.append(line)
    assert lost == []


def test_bloom_sections_keep_their_headings_and_hold_the_fields_they_name():
    card = import_card_file(BLOOM).card
    by_heading = {s["heading"].strip(): s.get("field") for s in card.body if "heading" in s}
    assert by_heading["Model Details"] == "model_details"
    assert by_heading["Uses"] == "uses"
    assert by_heading["Direct Use"] == "uses.direct_use"
    assert by_heading["Environmental Impact"] == "environmental_impact"  # nested under "# Training"
    assert by_heading["Basics"] is None  # a custom heading: kept, holds no field
    assert card.get("model_details", "model_type") == "Transformer-based Language Model"
    assert "Text generation" in card.get("uses", "direct_use")
    assert card.title == "bloom"  # no title heading: the model-index name


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Release Date Estimate", "Monday, 11.July.2022 (estimate)"),
        ("Release Date", "Monday, 11.July.2022"),
    ],
)
def test_release_date_keeps_its_estimate_qualifier(label: str, expected: str):
    line = f"- **{label}:** Monday, 11.July.2022"
    card = import_card_text(f"---\nlicense: mit\n---\n# T\n\n## Model Details\n\n{line}\n").card
    assert card.get("model_details", "release_date") == expected
    assert f"\n{line}\n" in render_card(card, "md").text  # the README's own line, unchanged


def test_imported_bloom_release_date_matches_the_shipped_card():
    imported = import_card_file(BLOOM).card
    shipped = load_card(next(p for p in CARDS if p.stem == "bloom-560m"))
    assert imported.get("model_details", "release_date") == shipped.get("model_details", "release_date")
    assert imported.get("model_details", "release_date").endswith("(estimate)")


def test_tables_stay_markdown_exactly_where_they_were(tmp_path: Path):
    table = "| Language | Share |\n|:--|--:|\n| Yoruba | 0.006 |\n| A\\|B | 2e-05 |"
    text = f"---\nlicense: mit\n---\n# T\n\n## Training Data\n\nBefore.\n\n{table}\n\nAfter.\n"
    card = import_card_text(text).card
    assert card.body[1]["markdown"] == f"Before.\n\n{table}\n\nAfter."
    assert table in _round_trip(text, tmp_path)


def test_custom_and_known_sections_stay_in_place_in_order(tmp_path: Path):
    text = (
        "---\nlicense: mit\n---\n# Card\n\n## Model Details\n\nA model.\n\n## Deployment\n\nOn CPU.\n\n"
        "## Citation\n\n```bibtex\n@misc{x}\n```\n\n## Zebra\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    )
    card = import_card_text(text).card
    assert [(s.get("heading"), s.get("field")) for s in card.body] == [
        ("Card", None),
        ("Model Details", "model_details"),
        ("Deployment", None),
        ("Citation", "citation"),
        ("Zebra", None),
    ]
    assert list(card.data) == ["metadata", "title", "body"]
    assert _same_body(text, _round_trip(text, tmp_path))


SHAPES = {
    "a list": "- one\n- two\n\n  continued",
    "a table": "| a | b |\n| - | - |\n| 1 | 2 |",
    "an HTML line": '<p align="center"><img src="https://example.org/x.png" width="300"/></p>',
    "a four-backtick fence": "````markdown\n```python\nprint(1)\n```\n````",
    "an indented code block": "    pip install rail",
    "a block quote": "> quoted\n> text",
    "an HTML table": "<table>\n<tr><td>acc</td><td>0.9</td></tr>\n</table>",
    "a <details> block with code": "<details>\n<summary>Code</summary>\n\n```py\nx = 1\n```\n\n</details>",
}


@pytest.mark.parametrize("content", list(SHAPES.values()), ids=list(SHAPES))
def test_a_section_may_start_with_any_block(content: str, tmp_path: Path):
    text = f"---\nlicense: mit\n---\n# T\n\n## Uses\n\n{content}\n\n## Evaluation\n\n{content}\n"
    card = import_card_text(text, "README.md").card
    assert [s.get("markdown") for s in card.body[1:]] == [content, content]
    assert _same_body(text, _round_trip(text, tmp_path))


def test_duplicate_headings_are_both_kept(tmp_path: Path):
    text = "---\nlicense: mit\n---\n## Results\n\nFirst run.\n\n## Notes\n\nx\n\n## Results\n\nSecond run.\n"
    card = import_card_text(text).card
    assert [s["markdown"] for s in card.body if s.get("heading") == "Results"] == [
        "First run.",
        "Second run.",
    ]
    out = _round_trip(text, tmp_path)
    assert out.index("First run.") < out.index("Notes") < out.index("Second run.")


def test_a_card_without_headings_stays_as_written(tmp_path: Path):
    text = "---\nlicense: mit\n---\nThis model classifies tweets.\n\n- fast\n- small\n\n<b>HTML</b> here.\n"
    card = import_card_text(text, "tweets/README.md").card
    assert card.body == (
        {"markdown": "This model classifies tweets.\n\n- fast\n- small\n\n<b>HTML</b> here."},
    )
    assert "Introduction" not in dump_card(card.data)
    assert _same_body(text, _round_trip(text, tmp_path))


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("---\nlicense: mit\n---\n# Table of Contents\n\n- x\n\n# My Model\n\ntext\n", "My Model"),
        (
            "---\nlicense: mit\n---\n<h1 align='center'>Fancy <b>Model</b></h1>\n\n# Uses\n\nx\n",
            "Fancy Model",
        ),
        ("---\nlicense: mit\nmodel_name: named\n---\n# Uses\n\nx\n", "named"),
    ],
    ids=["skips the table of contents", "the HTML title", "the metadata name"],
)
def test_title_comes_from_the_readme_not_its_file_name(text: str, title: str):
    assert import_card_text(text, "somewhere/README.md").card.title == title


def test_language_no_in_front_matter_stays_a_string():
    card = import_card_text("---\nlicense: mit\nlanguage: no\n---\n# T\n").card
    assert card.metadata["language"] == "no"


HUB_METADATA = {
    "pinned": "pinned: true\n",
    "language_bcp47": "language_bcp47:\n- fr-CA\n",
    "train-eval-index": "train-eval-index:\n- config: default\n  task: text-classification\n",
    "widget example": "widget:\n- text: Hi\n  example: greeting\n",
    "thumbnail null": "thumbnail: null\n",
    "thumbnail empty": "thumbnail:\n",
    "multilingual": "language:\n- en\n- multilingual\n",
    "model-index without dataset": "model-index:\n- name: m\n  results:\n  - task:\n      type: ner\n"
    "    metrics:\n    - type: f1\n      value: 0.9\n",
    "tags as text": "tags: autonlp\n",
    "a key rail does not know": "parameters:\n  max_new_tokens: 64\n",
    "dataset list with a gap": "datasets:\n- null\n",
}


@pytest.mark.parametrize("yaml_text", list(HUB_METADATA.values()), ids=list(HUB_METADATA))
def test_metadata_the_hub_accepts_is_kept(yaml_text: str, tmp_path: Path):
    text = f"---\nlicense: mit\n{yaml_text}---\n# T\n\nBody.\n"
    result = import_card_text(text, "README.md")
    expected = yaml.safe_load(f"license: mit\n{yaml_text}")
    assert dict(result.card.metadata) == expected
    readme = tmp_path / "README.md"
    readme.write_text(_round_trip(text, tmp_path), encoding="utf-8")
    assert metadata_load(readme) == expected


@pytest.mark.parametrize(
    ("yaml_text", "line", "where", "hint"),
    [
        (
            "widget:\n- text: Hi\n  example: greeting\n",
            5,
            "metadata.widget[0].example",
            "did you mean 'example_title'?",
        ),
        ("parameters:\n  max_new_tokens: 64\n", 3, "metadata.parameters", None),
    ],
)
def test_unknown_metadata_keys_are_kept_with_a_warning_at_the_readme_line(
    yaml_text, line, where, hint, tmp_path
):
    readme = tmp_path / "README.md"
    readme.write_text(f"---\nlicense: mit\n{yaml_text}---\n# T\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["card", "import", str(readme), "-o", str(tmp_path / "c.yaml")])
    assert result.exit_code == 0
    warning = next(w for w in result.output.splitlines() if where in w)
    assert warning.startswith(f"rail: warning: line {line}, {where}: ") and "kept as written" in warning
    assert hint is None or hint in warning


@pytest.mark.parametrize(
    ("front", "line", "message"),
    [
        ("license: mit\ntags:\n  a: b\n", 3, "metadata.tags"),
        ("license: mit\nlanguage: 5\n", 3, "metadata.language"),
        ("license: [mit]\n", 2, "metadata.license"),
        ("license: mit\npinned: maybe\n", 3, "metadata.pinned"),
    ],
)
def test_metadata_the_hub_would_reject_names_the_readme_line(front: str, line: int, message: str, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"---\n{front}---\n# T\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        import_card_file(readme)
    assert info.value.source == str(readme) and info.value.line == line
    assert message in str(info.value)
    assert "`|` block" not in str(info.value)  # no hint about rail's intermediate YAML
    result = CliRunner().invoke(main, ["card", "import", str(readme), "-o", str(tmp_path / "c.yaml")])
    assert result.exit_code == 2 and f"{readme}:{line}" in result.output and "Traceback" not in result.output


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


def test_one_megabyte_of_hostile_markdown_imports_and_round_trips():
    # Patterns that make backtracking parsers explode: long runs of '#', '|', '-', '*' and unclosed fences.
    hostile = ("#" * 5000 + " x\n" + "|" * 20000 + "\n" + "- " * 20000 + "\n" + "*" * 20000 + "\n```\n") * 12
    assert len(hostile) > 1_000_000
    text = "---\nlicense: mit\n---\n" + hostile
    result = import_card_text(text, "hostile.md")
    assert result.card.metadata == {"license": "mit"}
    assert _same_body(text, render_card(result.card, "md").text)
    front = split_front_matter("\n" * 1_000_000 + "---")
    assert front.metadata is None and front.body.count("\n") == 1_000_000


def test_import_missing_file_exits_2(tmp_path: Path):
    result = CliRunner().invoke(
        main, ["card", "import", str(tmp_path / "none.md"), "-o", str(tmp_path / "c.yaml")]
    )
    assert result.exit_code == 2 and "file not found" in result.output
    assert not (tmp_path / "c.yaml").exists()


def test_imported_card_yaml_keeps_markdown_readable(tmp_path: Path):
    text = "---\nlicense: mit\n---\n# T\n\n**Developed by:** BigScience  \n**Model type:** LLM\n"
    card_yaml = dump_card(import_card_text(text).card.data)
    assert "markdown: |-\n    **Developed by:** BigScience  \n    **Model type:** LLM\n" in card_yaml


@pytest.mark.parametrize(
    ("extra", "message", "hint"),
    [
        ("summary: Also here.\n", "`summary` beside `body`", "move the text into a section of `body`"),
        (
            "body:\n- heading: Uses\n  level: 2\n  field: usess\n",
            "unknown field 'usess'",
            "did you mean 'uses'?",
        ),
        ("body:\n- field: uses\n  markdown: x\n", "'heading' is a dependency of 'field'", None),
    ],
)
def test_an_edited_imported_card_is_checked(extra: str, message: str, hint: str | None, write):
    text = "metadata:\n  license: mit\ntitle: T\n" + (
        extra if extra.startswith("body") else "body:\n- markdown: x\n" + extra
    )
    path = write("card.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_card(path)
    assert message in str(info.value) and (hint is None or hint in str(info.value))
    assert info.value.line is not None
