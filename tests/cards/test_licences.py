"""The RAIL licence family in the catalogue, and cards under each: validate and render agree, terms shown."""

from __future__ import annotations

import re

import pytest
import yaml
from click.testing import CliRunner
from markupsafe import escape as html_escape

from rail.cards import import_card_file, load_card_text, render_card
from rail.cli import main
from rail.errors import ConfigError
from rail.licences import get_licence, is_rail_licence, known_licences
from tests.cards.fidelity import CORPUS

RAIL_IDS = (
    "bigscience-bloom-rail-1.0",
    "bigscience-openrail-m",
    "creativeml-openrail-m",
    "openrail++",
    "bigcode-openrail-m",
    "openrail",
)
# Ids a card may carry: the catalogue, Hub ids of other licences, every id in the corpus, made-up RAIL ids.
CORPUS_IDS = {
    (yaml.safe_load(p.read_text(encoding="utf-8").split("---")[1]) or {}).get("license")
    for p in CORPUS.glob("*.md")
    if p.read_text(encoding="utf-8").startswith("---")
}
LICENCE_IDS = sorted(
    {*RAIL_IDS, *known_licences(), "apache-2.0", "mit", "cc-by-4.0", "other", "llama2", "gemma", "unknown"}
    | {i for i in CORPUS_IDS if isinstance(i, str)}
    | {"some-new-rail-2.0", "openrail-s", "bigscience-rail-2.0"}
)


def _card(licence: str, extra: str = "") -> str:
    return f"metadata:\n  license: {licence}\n{extra}title: T\nsummary: A card.\n"


def test_the_catalogue_holds_the_rail_family_with_sources_and_dates():
    assert set(RAIL_IDS) <= set(known_licences())
    for licence_id in RAIL_IDS:
        licence = get_licence(licence_id)
        assert licence.url.startswith("https://") and licence.source
        if licence.wording == "exact":
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", licence.date or "")
            assert licence.restrictions and licence.restrictions_intro


@pytest.mark.parametrize(
    ("licence_id", "count", "lettered", "date"),
    [
        ("bigscience-bloom-rail-1.0", 13, True, "2022-05-19"),
        ("bigscience-openrail-m", 13, True, "2022-08-18"),
        ("creativeml-openrail-m", 11, False, "2022-08-22"),
        ("openrail++", 11, False, "2022-11-24"),
    ],
)
def test_exact_lists_have_the_licences_shape(licence_id: str, count: int, lettered: bool, date: str):
    licence = get_licence(licence_id)
    assert (len(licence.restrictions), licence.lettered, licence.date) == (count, lettered, date)
    assert licence.restrictions_intro == "You agree not to use the Model or Derivatives of the Model:"


def test_openrail_m_widens_c_e_g_and_the_creativeml_lists_drop_disclosure_and_impersonation():
    bloom, openrail = get_licence("bigscience-bloom-rail-1.0"), get_licence("bigscience-openrail-m")
    assert openrail.clause("c").endswith("information and/or content with the purpose of harming others;")
    assert "(e.g. images, code, posts, articles)" in openrail.clause("e")
    assert (
        openrail.clause("g")
        == "To impersonate or attempt to impersonate (e.g. deepfakes) others without their consent;"
    )
    assert bloom.clause("i").endswith("characteristics") and openrail.clause("i").endswith("characteristics;")
    for licence_id in ("creativeml-openrail-m", "openrail++"):
        texts = list(get_licence(licence_id).restrictions.values())
        assert not any("machine generated" in t or "impersonate" in t for t in texts)
        assert texts == [openrail.clause(c) for c in "abcdfhijklm"]  # the other eleven, word for word


@pytest.mark.parametrize("licence_id", LICENCE_IDS)
def test_every_licence_validate_accepts_also_renders(licence_id: str, write):
    path = write("card.yaml", _card(licence_id))
    validated = CliRunner().invoke(main, ["card", "validate", str(path)])
    rendered = [
        CliRunner().invoke(main, ["card", "render", str(path), "--format", f, "-o", "-"])
        for f in ("md", "html", "eu-gpai")
    ]
    assert validated.exit_code in (0, 2) and "Traceback" not in validated.output
    assert all(r.exit_code == validated.exit_code for r in rendered), (
        validated.output,
        [r.output for r in rendered],
    )
    if is_rail_licence(licence_id):
        assert validated.exit_code == (0 if licence_id in known_licences() else 2)


@pytest.mark.parametrize("licence_id", [i for i in RAIL_IDS if get_licence(i).wording == "exact"])
@pytest.mark.parametrize("fmt", ["md", "html", "eu-gpai"])
def test_a_card_under_an_exact_licence_carries_every_restriction(licence_id: str, fmt: str):
    licence = get_licence(licence_id)
    text = render_card(load_card_text(_card(licence_id)), fmt).text
    escape = (lambda s: str(html_escape(s))) if fmt == "html" else (lambda s: s)
    for letter, clause in licence.restrictions.items():
        assert escape(clause) in text, letter
        if fmt != "html":
            assert f"- ({letter}) {clause}" in text if licence.lettered else f"- {clause}" in text
    assert escape(licence.notice) in text


def test_openrail_renders_as_a_family_without_inventing_a_list(write):
    card = load_card_text(_card("openrail", "  license_link: https://example.org/LICENSE\n"))
    text = render_card(card, "md").text
    assert "## Licence and Use Restrictions" in text
    assert "names the family, not one licence text" in text
    assert "[licence text](https://example.org/LICENSE)" in text
    assert "You agree not to use" not in text
    assert get_licence("openrail").notice in text


def test_bigcode_renders_its_missing_wording_as_missing():
    text = render_card(load_card_text(_card("bigcode-openrail-m")), "md").text
    assert "not reproduced here because rail holds no verified transcription" in text
    assert "https://huggingface.co/spaces/bigcode/bigcode-model-license-agreement" in text
    assert get_licence("bigcode-openrail-m").restrictions == {}


def _licence_of(readme) -> str | None:
    text = readme.read_text(encoding="utf-8")
    return (yaml.safe_load(text.split("---")[1]) or {}).get("license") if text.startswith("---") else None


RAIL_CORPUS = sorted(p for p in CORPUS.glob("*.md") if is_rail_licence(_licence_of(p)))


def test_the_corpus_has_cards_under_every_rail_licence_but_bigcode():
    assert {_licence_of(p) for p in RAIL_CORPUS} == set(RAIL_IDS) - {"bigcode-openrail-m"}


@pytest.mark.parametrize("readme", RAIL_CORPUS, ids=lambda p: p.stem)
def test_imported_rail_cards_render_with_their_terms(readme):
    card = import_card_file(readme).card
    licence = get_licence(card.licence_id)
    for fmt in ("md", "html"):
        rendered = render_card(card, fmt)
        escape = (lambda s: str(html_escape(s))) if fmt == "html" else (lambda s: s)
        assert all(escape(c) in rendered.text for c in licence.restrictions.values())
        assert escape(licence.notice) in rendered.text and not rendered.appended_licence


def test_unknown_licence_letter_names_the_known_ones():
    with pytest.raises(ConfigError, match="use one of a, b"):
        get_licence("bigscience-openrail-m").clause("z")
