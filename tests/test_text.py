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
        ("Καλημέρα κόσμε", "καλημέρα κόσμε"),  # Greek stays Greek
        ("ΜΕΤΗ", "μετη"),  # Greek-only text is not folded to Latin
        ("Call +1 555-0100 in 2023", "call +1 555-0100 in 2023"),  # phones and years untouched
        ("version 1.2.3 and 10.15.7", "version 1.2.3 and 10.15.7"),
        ("the 4th and 3rd mp3 on win10", "the 4th and 3rd mp3 on win10"),  # ordinals and names with digits
        ("192.168.0.1", "192.168.0.1"),
        ("一个传奇的开端", "一个传奇的开端"),
        ("मुझे हिंदी पसंद है", "मुझे हिंदी पसंद है"),
        ("Mạng neural nhân tạo", "mạng neural nhân tạo"),
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
        ("e\u0301te\u0301 ok", "été", "e\u0301te\u0301"),
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
    table = {c for a, b in railtext._CF_RANGES for c in range(a, b + 1)}
    actual = {c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"}
    assert table == actual


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
    n = normalize(hostile)
    assert n.original_span(0, len(n.text))[1] <= len(hostile)
