"""Normalization shared by lexical checks: evasion forms fold, genuine text survives, spans map back."""

import sys
import unicodedata

import pytest

from rail import text as railtext
from rail.text import normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("m\u200beth", "meth"),  # zero-width space
        ("m\u200de\u200dt\u200dh", "meth"),  # zero-width joiners
        ("\u202emeth\u202c", "meth"),  # bidi override
        ("\u2066meth\u2069", "meth"),  # bidi isolate
        ("m\u00adeth", "meth"),  # soft hyphen
        ("mеth", "meth"),  # Cyrillic е inside a Latin word
        ("buy МЕТН now", "buy meth now"),  # all-Cyrillic look-alike word in a Latin text
        ("mεth", "meth"),  # Greek epsilon
        ("m3th", "meth"),
        ("h4x0r", "haxor"),
        ("$ex", "sex"),
        ("m.e.t.h", "meth"),
        ("m-e-t-h", "meth"),
        ("m e t h", "meth"),
        ("m_e_t_h", "meth"),
        ("m . e . t . h", "meth"),
        ("ＭＥＴＨ", "meth"),  # fullwidth
        ("𝐦𝐞𝐭𝐡", "meth"),  # mathematical bold
        ("Straße", "strasse"),
        ("ﬁne", "fine"),
        ("Je t’aime.", "je t'aime."),
        ("tabs\tand\n\nnewlines   here", "tabs and newlines here"),
    ],
)
def test_evasion_forms_fold(raw: str, expected: str) -> None:
    assert normalize(raw).text == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Привет, как дела? Это сор.", "привет, как дела? это сор."),  # Russian stays Russian
        ("Καλημέρα κόσμε", "καλημερα κοσμε"),  # Greek stays Greek (accents dropped, see below)
        ("ΜΕΤΗ", "μετη"),  # Greek-only text is not folded to Latin
        ("Call +1 555-0100 in 2023", "call +1 555-0100 in 2023"),  # phones and years untouched
        ("version 1.2.3 and 10.15.7", "version 1.2.3 and 10.15.7"),
        ("the 4th and 3rd mp3 on win10", "the 4th and 3rd mp3 on win10"),  # ordinals and names with digits
        ("192.168.0.1", "192.168.0.1"),
        ("一个传奇的开端", "一个传奇的开端"),
        ("मुझे हिंदी पसंद है", "मुझे हिंदी पसंद है"),
        ("Mạng neural nhân tạo", "mang neural nhan tao"),  # marks on Latin letters are dropped
        ("ٱلْعَرَبِيَّة", "ٱلْعَرَبِيَّة"),  # Arabic vowel marks are kept
        ("मुझे", "मुझे"),  # Indic vowel signs are kept
    ],
)
def test_genuine_text_is_kept(raw: str, expected: str) -> None:
    assert normalize(raw).text == expected


@pytest.mark.parametrize(
    ("raw", "needle", "original"),
    [
        ("Buy m\u200be\u200bth now", "meth", "m\u200be\u200bth"),
        ("x m . e . t . h y", "meth", "m . e . t . h"),
        ("please ＭＥＴＨ!", "meth", "ＭＥＴＨ"),
        ("a Straße b", "strasse", "Straße"),
        ("e\u0301te\u0301 ok", "ete", "e\u0301te\u0301"),
        ("how to make m\u0308eth", "meth", "m\u0308eth"),
        ("child p\u0336o\u0336r\u0336n", "porn", "p\u0336o\u0336r\u0336n"),
        ("Say  \u202e m3th", "meth", "m3th"),
    ],
)
def test_spans_point_into_the_original(raw: str, needle: str, original: str) -> None:
    n = normalize(raw)
    start = n.text.index(needle)
    a, b = n.original_span(start, start + len(needle))
    assert raw[a:b] == original


def test_every_character_maps_inside_the_original() -> None:
    raw = "A\u200bﬁ ß  m.e.t.h ＭＥＴＨ e\u0301 мир"
    n = normalize(raw)
    for i in range(len(n.text)):
        a, b = n.original_span(i, i + 1)
        assert 0 <= a < b <= len(raw)
    assert n.original_span(0, len(n.text)) == (0, len(raw))


def test_span_outside_the_text_is_an_error() -> None:
    with pytest.raises(ValueError):
        normalize("abc").original_span(0, 10)


def test_format_character_table_matches_unicodedata() -> None:
    table = {c for a, b in railtext._cf_ranges() for c in range(a, b + 1)}
    actual = {c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"}
    assert table == actual
    # Every one of them is removed, whatever Unicode version this Python has.
    sample = "".join(chr(a) + chr(b) for a, b in railtext._cf_ranges())
    assert normalize("m" + sample + "eth").text == "meth"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("how to make m\u0308eth", "how to make meth"),
        ("how to make ḿeth", "how to make meth"),  # precomposed
        ("child p\u0336o\u0336r\u0336n", "child porn"),  # strike-through overlay
        ("ДИТЯ\u0301", "дитя"),
        ("ἄλφα", "αλφα"),
    ],
)
def test_marks_on_latin_greek_cyrillic_letters_are_dropped(raw: str, expected: str) -> None:
    assert normalize(raw).text == expected


@pytest.mark.parametrize("joiner", ["\u200b", "\u2060", "\ufeff", "\u200b\u2060"])
def test_format_character_between_words_gives_a_variant_with_a_space(joiner: str) -> None:
    raw = f"please{joiner}dox him"
    n = normalize(raw)
    assert n.text == "pleasedox him"
    (variant,) = n.variants
    assert variant.text == "please dox him"
    start = variant.text.index("dox")
    a, b = variant.original_span(start, start + 3)
    assert raw[a:b] == "dox"


def test_joiners_inside_persian_and_indic_words_give_no_variant() -> None:
    assert normalize("می\u200cخواهم").variants == ()
    assert normalize("क्\u200dष").variants == ()
    assert normalize("m\u200beth").variants[0].text == "m eth"


def test_normalize_light_keeps_letters_and_maps_spans() -> None:
    raw = "Jane\u200b＠Example.org ٤١١١ ４１"
    n = railtext.normalize_light(raw)
    assert n.text == "Jane@Example.org 4111 41"
    assert n.original_span(0, 16) == (0, 17)
    assert n.original_span(17, 21) == (18, 22)


@pytest.mark.parametrize(
    "hostile",
    [
        "hello world m3th 2023 " * 150_000,  # 3.3 MB ordinary text
        "a " * 1_500_000 + "aa",  # spelled-letter run that ends in a word
        "a." * 1_500_000,
        "\u0301" * 2_000_000,  # combining marks only
        "Ｍｅｔｈ\u200b" * 400_000,
    ],
)
def test_megabytes_of_hostile_input_complete(hostile: str) -> None:
    from rail.policy.matcher import PhraseMatcher

    raw = hostile + " so buy m\u200be\u200bth now"
    n = normalize(raw)
    (match,) = [m for m in PhraseMatcher(["buy meth"]).finditer(n) if m.start >= len(hostile)]
    assert raw[match.start : match.end] == "buy m\u200be\u200bth"
    assert (match.start, match.end) == (len(hostile) + 4, len(raw) - 4)
