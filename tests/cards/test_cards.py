"""The shipped cards validate and render; malformed cards fail with clear errors and exit 2."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from huggingface_hub import ModelCard, metadata_load

from rail.cards import (
    card_licence,
    dump_card,
    lint_card,
    load_card,
    load_card_text,
    render_card,
)
from rail.cards.tree import format_value
from rail.cli import main
from rail.errors import ConfigError
from rail.licences import get_licence
from tests.cards.conftest import CARDS

MINIMAL = """\
metadata:
  license: bigscience-bloom-rail-1.0
  language: [en]
title: Tiny card
summary: A tiny card.
"""


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_the_four_bloom_cards_ship():
    assert {p.stem for p in CARDS} >= {"bloom-560m", "bloomz-560m", "bloomz", "bloom-760m-intermediate"}


@pytest.mark.parametrize("path", CARDS, ids=lambda p: p.stem)
def test_card_validates_with_the_bloom_licence(path: Path):
    card = load_card(path)
    assert card.licence_id == "bigscience-bloom-rail-1.0"
    assert run("card", "validate", str(path)).exit_code == 0


@pytest.mark.parametrize("path", CARDS, ids=lambda p: p.stem)
def test_markdown_front_matter_reads_back_identically_with_huggingface_hub(path: Path, tmp_path: Path):
    card = load_card(path)
    out = tmp_path / "README.md"
    assert run("card", "render", str(path), "--format", "md", "-o", str(out)).exit_code == 0
    parsed = metadata_load(out)
    assert parsed == card.metadata
    assert list(parsed) == list(card.metadata)
    assert ModelCard.load(out).data.to_dict() == dict(card.metadata)


@pytest.mark.parametrize("path", CARDS, ids=lambda p: p.stem)
@pytest.mark.parametrize("fmt", ["md", "html", "eu-gpai"])
def test_every_render_carries_the_exact_restrictions_and_notice(path: Path, fmt: str, tmp_path: Path):
    out = tmp_path / f"card.{fmt}"
    assert run("card", "render", str(path), "--format", fmt, "-o", str(out)).exit_code == 0
    text = out.read_text(encoding="utf-8")
    licence = get_licence("bigscience-bloom-rail-1.0")
    escape = (lambda s: html.escape(s, quote=False)) if fmt == "html" else (lambda s: s)
    for letter, clause in licence.restrictions.items():
        assert escape(clause) in text, letter
    assert escape(licence.notice) in text


@pytest.mark.parametrize("path", CARDS, ids=lambda p: p.stem)
def test_html_is_self_contained(path: Path):
    page = render_card(load_card(path), "html").text
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert not re.search(r"<(img|script|link|iframe)\b", page)
    assert not re.search(r"""(src|srcset)\s*=\s*["']https?:""", page)


def test_html_keeps_card_html_but_not_scripts_or_javascript_links(write):
    hostile = '<script>alert(1)</script> [x](javascript:alert(1)) <b onclick="steal()">bold</b>'
    card = load_card(write("c.yaml", MINIMAL.replace("A tiny card.", hostile)))
    page = render_card(card, "html").text
    assert "<script" not in page and 'href="javascript' not in page and "onclick" not in page
    assert "<b>bold</b>" in page  # the card's own harmless HTML renders instead of showing as escaped text


def test_markdown_keeps_section_order_of_the_yaml(write):
    text = MINIMAL + "citation:\n  text: Cite me.\nuses:\n  direct_use: [Chat]\n"
    md = render_card(load_card(write("c.yaml", text)), "md").text
    assert md.index("## Model Summary") < md.index("## Citation") < md.index("## Uses")


def test_custom_sections_are_rendered_not_rejected(write):
    text = (
        MINIMAL + "extra:\n  Deployment Notes:\n    text: Runs on CPU.\n    items: [fast]\n"
        "uses:\n  extra:\n    Community: Share your generations.\n"
    )
    card = load_card(write("c.yaml", text))
    md = render_card(card, "md").text
    assert "## Deployment Notes" in md and "Runs on CPU." in md and "- fast" in md
    assert "### Community" in md
    assert "Deployment Notes" in render_card(card, "html").text


def test_language_no_stays_norwegian_through_load_and_render(write, tmp_path: Path):
    card = load_card(write("c.yaml", MINIMAL.replace("language: [en]", "language: no")))
    assert card.metadata["language"] == "no"
    out = tmp_path / "README.md"
    out.write_text(render_card(card, "md").text, encoding="utf-8")
    assert metadata_load(out)["language"] == "no"


def test_table_rows_render_as_a_table(write):
    text = MINIMAL + (
        "training_data:\n  languages:\n    tables:\n      - columns: {language: Language, share: Share}\n"
        "        rows:\n          - {language: Yoruba, share: 0.006}\n"
        "          - {language: 'A|B', share: 2.0e-05}\n"
    )
    md = render_card(load_card(write("c.yaml", text)), "md").text
    assert "| Language | Share |" in md
    assert "| Yoruba | 0.006 |" in md
    assert "| A\\|B | 0.00002 |" in md


@pytest.mark.parametrize("path", CARDS, ids=lambda p: p.stem)
def test_numbers_in_shipped_cards_render_as_written(path: Path):
    # A plain YAML float drops trailing zeros ("0.10" → 0.1), so the card must write such values as text.
    def floats(node: yaml.Node):
        if isinstance(node, yaml.ScalarNode):
            if node.tag == "tag:yaml.org,2002:float":
                yield node.value
            return
        for child in node.value:
            for part in child if isinstance(child, tuple) else (child,):
                yield from floats(part)

    written = list(floats(yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)))
    assert [format_value(float(v)) for v in written] == written


def test_bloom_language_shares_keep_the_seed_form():
    md = render_card(load_card(next(p for p in CARDS if p.stem == "bloom-560m")), "md").text
    for row in ("| Indic | Malayalam | 0.10 |", "| Indic | Tamil | 0.20 |", "| Indic | Hindi | 0.70 |"):
        assert row in md


BAD = [
    (
        "mis-indented block",
        "metadata:\n  license: mit\ntitle: T\nsummary: |\ncitation:\n  text: x\n",
        "summary: empty text",
        "indent the block",
    ),
    ("unknown key", MINIMAL + "citaton:\n  text: x\n", "unknown key 'citaton'", "did you mean 'citation'?"),
    ("wrong type", MINIMAL + "uses:\n  direct_use: 5\n", "uses.direct_use", "expected"),
    ("duplicate key", MINIMAL + "title: Again\n", "duplicate key 'title'", "remove one"),
    (
        "missing licence",
        "metadata:\n  language: [en]\ntitle: T\n",
        "missing required key 'license'",
        "add it",
    ),
    ("not a mapping", "- a\n- b\n", "must be a YAML mapping", "README.md"),
    ("bad yaml", "metadata: [\n", "not valid YAML", "indentation"),
]


@pytest.mark.parametrize(("name", "text", "message", "hint"), BAD, ids=[b[0] for b in BAD])
def test_malformed_cards_fail_with_file_line_and_fix(name, text, message, hint, write):
    path = write("bad.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_card(path)
    assert message in str(info.value) and hint in str(info.value)
    assert str(path) in str(info.value)
    result = CliRunner().invoke(main, ["card", "validate", str(path)])
    assert result.exit_code == 2
    assert "rail: error:" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "text",
    ["a: &a [*a]\n", MINIMAL + "extra:\n  Loop: &loop {again: *loop}\n"],
    ids=["bare", "inside a card"],
)
def test_recursive_alias_is_a_clean_error(text: str, write):
    path = write("loop.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_card(path)
    assert str(path) in str(info.value)
    result = CliRunner().invoke(main, ["card", "validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "rail: error:" in result.output and "Traceback" not in result.output


def test_widget_quirk_is_kept_with_a_warning_naming_the_line(write):
    path = write(
        "card.yaml", "metadata:\n  license: mit\n  widget:\n    - text: Hi\n      example : t\ntitle: T\n"
    )
    card = load_card(path)
    assert card.metadata["widget"][0]["example"] == "t"
    (warning,) = card.warnings
    assert (warning.line, warning.path, warning.hint) == (
        5,
        "metadata.widget[0].example",
        "did you mean 'example_title'?",
    )
    result = CliRunner().invoke(main, ["card", "validate", str(path)])
    assert result.exit_code == 0
    assert f"rail: warning: {path}:5, at metadata.widget[0].example: key 'example'" in result.output


def test_missing_card_file_exits_2(tmp_path: Path):
    result = CliRunner().invoke(
        main, ["card", "render", str(tmp_path / "nope.yaml"), "-o", str(tmp_path / "o.md")]
    )
    assert result.exit_code == 2 and "file not found" in result.output
    assert not (tmp_path / "o.md").exists()


def test_unknown_rail_licence_is_refused_rather_than_rendered_without_restrictions(write):
    path = write("c.yaml", MINIMAL.replace("bigscience-bloom-rail-1.0", "some-new-rail-2.0"))
    with pytest.raises(ConfigError, match="does not ship") as info:
        load_card(path)
    assert info.value.line == 2 and info.value.path == "metadata.license"
    result = CliRunner().invoke(main, ["card", "validate", str(path)])
    assert result.exit_code == 2 and "does not ship" in result.output


def test_non_rail_licence_renders_without_a_licence_section(write):
    card = load_card(write("c.yaml", MINIMAL.replace("bigscience-bloom-rail-1.0", "apache-2.0")))
    assert card_licence(card) is None
    assert "Licence and Use Restrictions" not in render_card(card, "md").text


def test_failed_render_leaves_existing_output_untouched(write, tmp_path: Path):
    out = write("README.md", "precious\n")
    bad = write("bad.yaml", MINIMAL + "citaton: x\n")
    assert CliRunner().invoke(main, ["card", "render", str(bad), "-o", str(out)]).exit_code == 2
    assert out.read_text() == "precious\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_dump_and_reload_keeps_data_and_key_order():
    card = load_card(CARDS[0])
    again = load_card_text(dump_card(card.data))
    assert again.data == card.data
    assert list(again.data) == list(card.data) and list(again.metadata) == list(card.metadata)
    assert "'no'" in dump_card({"metadata": {"license": "mit", "language": "no"}, "title": "T"})


# --- user templates ---


def test_user_template_overrides_by_name_and_gets_licence_appended(write, tmp_path: Path):
    folder = tmp_path / "tpl"
    folder.mkdir()
    (folder / "card.md.j2").write_text(
        "---\n{{ front_matter }}---\n\n# {{ title }} (custom)\n", encoding="utf-8"
    )
    card = write("c.yaml", MINIMAL)
    out = tmp_path / "o.md"
    result = CliRunner().invoke(
        main, ["card", "render", str(card), "--template", str(folder), "-o", str(out)]
    )
    assert result.exit_code == 0 and "appended" in result.output
    text = out.read_text(encoding="utf-8")
    assert "# Tiny card (custom)" in text
    assert all(clause in text for clause in get_licence("bigscience-bloom-rail-1.0").restrictions.values())


def test_user_template_that_keeps_the_licence_is_not_changed(write, tmp_path: Path):
    folder = tmp_path / "tpl"
    folder.mkdir()
    (folder / "card.html.j2").write_text(
        "<html><body><h1>{{ title }}</h1>{% include 'licence.html.j2' %}</body></html>\n", encoding="utf-8"
    )
    rendered = render_card(load_card(write("c.yaml", MINIMAL)), "html", template_dir=folder)
    assert not rendered.appended_licence
    assert rendered.text.count("Licence and Use Restrictions") == 1


@pytest.mark.parametrize(
    ("template", "line", "message"),
    [
        ("line one\n{{ title }\n", 2, "template error"),
        ("ok\nok\n{{ no_such_variable }}\n", 3, "no_such_variable"),
    ],
)
def test_template_errors_name_the_template_file_and_line(template, line, message, write, tmp_path: Path):
    folder = tmp_path / "tpl"
    folder.mkdir()
    (folder / "card.md.j2").write_text(template, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        render_card(load_card(write("c.yaml", MINIMAL)), "md", template_dir=folder)
    assert info.value.source.endswith("card.md.j2") and info.value.line == line
    assert message in str(info.value)
    result = CliRunner().invoke(
        main,
        ["card", "render", str(tmp_path / "c.yaml"), "--template", str(folder), "-o", str(tmp_path / "o.md")],
    )
    assert result.exit_code == 2 and "card.md.j2:" in result.output


def test_missing_template_folder_exits_2(write, tmp_path: Path):
    result = CliRunner().invoke(
        main,
        [
            "card",
            "render",
            str(write("c.yaml", MINIMAL)),
            "--template",
            str(tmp_path / "none"),
            "-o",
            str(tmp_path / "o.md"),
        ],
    )
    assert result.exit_code == 2 and "template folder not found" in result.output


# --- EU form ---


def test_eu_form_fills_from_the_card_and_lists_what_is_missing(write):
    card = load_card(CARDS[[p.stem for p in CARDS].index("bloom-560m")])
    text = render_card(card, "eu-gpai").text
    assert "| Total model size | AIO, NCA, DP | 500M–5B (559,214,592 parameters) |" in text
    assert "| Provider legal name | AIO, NCA, DP | BigScience |" in text
    missing = text.split("## Not yet provided by the card", 1)[1]
    assert "Model authenticity" in missing and "`eu.model_authenticity`" in missing
    assert "Provider legal name" not in missing
    assert "Art. 53(2)" in text


def test_eu_form_of_a_bare_card_lists_every_unanswerable_field(write):
    card = load_card(write("c.yaml", MINIMAL.replace("bigscience-bloom-rail-1.0", "mit")))
    text = render_card(card, "eu-gpai").text
    assert "Energy used for training" in text.split("## Not yet provided by the card", 1)[1]


# --- lint ---


def test_lint_scores_and_lists_missing_and_placeholders():
    report = lint_card(load_card(CARDS[[p.stem for p in CARDS].index("bloom-560m")]))
    statuses = {(i.framework, i.item): i.status for i in report.items}
    assert statuses[("huggingface", "Environmental Impact")] == "placeholder"
    assert statuses[("huggingface", "How to Get Started with the Model")] == "missing"
    assert statuses[("mitchell", "Factors")] == "ok"
    assert 0 < report.score("eu-gpai") < report.score("huggingface") < 1
    assert any("environmental_impact.carbon_emitted" in p for p in report.placeholders)


BLOOMZ_RESULTS = "We refer to Table 7 from our paper [TODO LINK]."


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (BLOOMZ_RESULTS, BLOOMZ_RESULTS),
        ("TBD", "TBD"),
        ("Line one.\nSee [TODO LINK].", "Line one. See [TODO LINK]."),
    ],
    ids=["short", "only placeholder", "multi-line"],
)
def test_lint_quotes_the_value_around_a_placeholder(value: str, shown: str, write):
    path = write("c.yaml", MINIMAL + "recommendations:\n  text: " + json.dumps(value) + "\n")
    assert lint_card(load_card(path)).placeholders == (f"recommendations.text: '{shown}'",)
    assert f"placeholder recommendations.text: '{shown}'" in run("card", "lint", str(path)).output


def test_lint_cuts_a_long_value_to_the_text_around_the_placeholder(write):
    value = "Scores are in the paper. " * 20 + "Link: TODO here. " + "More scores follow. " * 20
    path = write("c.yaml", MINIMAL + "recommendations:\n  text: " + json.dumps(value) + "\n")
    (found,) = lint_card(load_card(path)).placeholders
    where, _, shown = found.partition(": ")
    assert where == "recommendations.text"
    assert shown.startswith("'…") and shown.endswith("…'") and "Link: TODO here." in shown
    assert len(shown) < 100


def test_lint_of_bloomz_quotes_the_results_text():
    result = run("card", "lint", str(next(p for p in CARDS if p.stem == "bloomz")))
    assert f"placeholder evaluation.results.text: '{BLOOMZ_RESULTS}'" in result.output


def test_lint_placeholder_text_does_not_count(write):
    base = lint_card(load_card(write("a.yaml", MINIMAL + "recommendations:\n  text: Be careful.\n")))
    placeholder = lint_card(
        load_card(write("b.yaml", MINIMAL + "recommendations:\n  text: '[More Information Needed]'\n"))
    )
    assert base.score() > placeholder.score()
    assert ("huggingface", "Recommendations", "placeholder") in {
        (i.framework, i.item, i.status) for i in placeholder.items
    }


@pytest.mark.parametrize(("threshold", "code"), [("0.5", 0), ("0.6", 0), ("0.95", 1), ("1", 1)])
def test_lint_exit_code_follows_the_threshold(threshold: str, code: int):
    path = CARDS[[p.stem for p in CARDS].index("bloom-560m")]
    score = lint_card(load_card(path)).score()
    assert 0.6 < score < 0.95
    result = run("card", "lint", str(path), "--threshold", threshold, "--json")
    assert result.exit_code == code
    report = json.loads(result.output)
    assert report["score"] == pytest.approx(score, abs=1e-4)
    assert set(report["scores"]) == {"huggingface", "mitchell", "eu-gpai"}


def test_lint_invalid_card_exits_2(write):
    result = CliRunner().invoke(main, ["card", "lint", str(write("bad.yaml", "metadata: {}\ntitle: T\n"))])
    assert result.exit_code == 2


def test_yaml_in_docs_and_front_matter_is_plain_yaml():
    assert yaml.safe_load(render_card(load_card(CARDS[0]), "md").text.split("---")[1])


ENDLESS = [
    ["card", "validate", "/dev/zero"],
    ["card", "render", "/dev/zero", "-o", "-"],
    ["card", "lint", "/dev/zero"],
    ["card", "import", "/dev/zero", "-o", "-"],
]


@pytest.mark.parametrize("args", ENDLESS, ids=lambda a: a[1])
def test_endless_input_is_refused_not_read_forever(args: list[str]):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert (
        "/dev/zero" in result.output and "larger than" in result.output and "Traceback" not in result.output
    )


def test_endless_results_file_is_refused(write):
    card = write("card.yaml", MINIMAL)
    result = CliRunner().invoke(main, ["card", "merge-eval", str(card), "/dev/zero", "-o", str(card)])
    assert result.exit_code == 2 and "/dev/zero" in result.output and "larger than" in result.output
    assert card.read_text() == MINIMAL


@pytest.mark.parametrize(
    ("name", "data"), [("binary", b"\x89PNG\r\n\x1a\n\x00\x00"), ("latin-1", "né".encode("latin-1"))]
)
def test_binary_or_non_utf8_card_files_exit_2(name: str, data: bytes, tmp_path: Path):
    path = tmp_path / "card.yaml"
    path.write_bytes(data)
    result = CliRunner().invoke(main, ["card", "validate", str(path)])
    assert result.exit_code == 2 and str(path) in result.output and "Traceback" not in result.output


ENV_FACTS = "- **Hardware Type:** 384 A100 80GB GPUs\n- **Hours used:** 1,082,990\n- **Carbon Emitted:** 25 t"


@pytest.mark.parametrize(
    "readme",
    [
        f"---\nlicense: mit\n---\n# M\n\n## Environmental Impact\n\n{ENV_FACTS}\n",
        f"---\nlicense: mit\n---\n# M\n\n## Appendix\n\n### 3. Environmental Impact 🌱\n\n{ENV_FACTS}\n",
        f"---\nlicense: mit\n---\n# M\n\n## Training\n\n### Environmental impact:\n\n{ENV_FACTS}\n",
    ],
    ids=["top level", "under a custom heading", "under another section"],
)
def test_lint_counts_understood_content_wherever_it_sits(readme: str):
    from rail.cards import import_card_text

    card = import_card_text(readme).card
    statuses = {(i.framework, i.item): i.status for i in lint_card(card).items}
    assert statuses[("huggingface", "Environmental Impact")] == "ok"
    assert card.get("environmental_impact", "hours_used") == "1,082,990"


def test_lint_counts_a_known_heading_among_custom_sections_of_a_structured_card(write):
    text = MINIMAL + "extra:\n  Carbon Footprint:\n    text: |\n      - **Hours used:** 12\n"
    card = load_card(write("c.yaml", text))
    statuses = {(i.framework, i.item): i.status for i in lint_card(card).items}
    assert statuses[("huggingface", "Environmental Impact")] == "ok"


def test_lint_names_what_an_imported_card_should_add():
    from rail.cards import import_card_text

    card = import_card_text("---\nlicense: mit\n---\n# M\n\n## Uses\n\nChat.\n").card
    report = lint_card(card)
    missing = {i.item: i.suggestion for i in report.problems if i.framework == "huggingface"}
    assert missing["Environmental Impact"].startswith("'- **Hardware type:** …'")
    assert (
        "section headed 'Environmental Impact' (field environmental_impact)"
        in missing["Environmental Impact"]
    )
    assert missing["Uses: Downstream Use"] == "a section headed 'Downstream Use' (field uses.downstream_use)"
    assert "Uses: Direct Use" in missing  # "Chat." sits under Uses, not under a Direct Use heading
    item = next(i for i in report.to_dict()["problems"] if i["item"] == "Citation")
    assert item["add"] == "a section headed 'Citation' (field citation)"
