"""Find and redact personal data in text: e-mail, phone numbers, payment cards, IBANs, US SSNs, IP addresses.

Detectors favour precision over recall, because a redaction that mangles ordinary text (a date, a version
number, an order id) is a defect users see every day:

- ``payment_card``: 13–19 digits (optionally grouped by spaces or hyphens), a known issuer prefix, and a valid
  Luhn check digit.
- ``iban``: a country code rail knows, that country's exact length, and a valid ISO 13616 mod-97 check.
- ``us_ssn``: ``AAA-GG-SSSS`` (hyphens or spaces) outside the ranges the SSA never issues (area 000, 666,
  900–999; group 00; serial 0000) and the two numbers published in advertising.
- ``phone``: an international number (``+`` or ``00``, 8–15 digits), a North American number
  (``(555) 123-4567``, ``555-123-4567``), or a national number with a trunk ``0`` (``06 12 34 56 78``).
  Dates, times, version numbers and plain digit runs are not phone numbers.
- ``ip_address``: IPv4 (every octet ≤ 255, no leading zeros) and IPv6 (validated by :mod:`ipaddress`).
- ``email``: ``local@domain.tld`` with an alphabetic top-level domain.

Matching runs on a light normalization of the text (:func:`rail.text.normalize_light`: NFKC, format
characters such as zero-width spaces removed, digits of every script read as ASCII digits), so
``jane\u200b@example.org``, ``jane＠example.org`` and fullwidth or Arabic-Indic card numbers are found; spans
point into the original text, so redaction replaces the characters as written. The regular expressions
cannot backtrack more than a bounded amount per character, so any input size is safe.

>>> redact("Mail jane.doe@example.org or call +44 20 7946 0958.")
'Mail [REDACTED:email] or call [REDACTED:phone].'
"""

from __future__ import annotations

import ipaddress
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rail.text import normalize_light

__all__ = ["PII_KINDS", "PiiMatch", "find_pii", "redact"]

PII_KINDS: tuple[str, ...] = ("email", "phone", "payment_card", "iban", "us_ssn", "ip_address")


@dataclass(frozen=True)
class PiiMatch:
    """One piece of personal data: its kind, its span in the text, and the matched characters."""

    kind: str
    start: int
    end: int
    value: str


_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}"
    r"[A-Za-z]{2,24}(?![\w-])"
)
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
_SSN = re.compile(r"(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_PHONE = re.compile(
    r"(?<![\w.+/-])(?:(?:\+|00)\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?"
    r"\d{2,5}(?:[ .-]\d{2,8}){1,5}(?![\w/-]|\.\d)"
    r"|(?<![\w+])\+\d{8,15}(?!\w)"
)
_SSN_SHAPE = re.compile(r"\d{3}([- ])\d{2}\1\d{4}")
_NANP = re.compile(r"(?:1[ .-]?)?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}")

# ISO 13616 lengths by country (the SWIFT IBAN registry).
_IBAN_LENGTHS = {
    "AD": 24,
    "AE": 23,
    "AL": 28,
    "AT": 20,
    "AZ": 28,
    "BA": 20,
    "BE": 16,
    "BG": 22,
    "BH": 22,
    "BR": 29,
    "BY": 28,
    "CH": 21,
    "CR": 22,
    "CY": 28,
    "CZ": 24,
    "DE": 22,
    "DK": 18,
    "DO": 28,
    "EE": 20,
    "EG": 29,
    "ES": 24,
    "FI": 18,
    "FO": 18,
    "FR": 27,
    "GB": 22,
    "GE": 22,
    "GI": 23,
    "GL": 18,
    "GR": 27,
    "GT": 28,
    "HR": 21,
    "HU": 28,
    "IE": 22,
    "IL": 23,
    "IQ": 23,
    "IS": 26,
    "IT": 27,
    "JO": 30,
    "KW": 30,
    "KZ": 20,
    "LB": 28,
    "LC": 32,
    "LI": 21,
    "LT": 20,
    "LU": 20,
    "LV": 21,
    "MC": 27,
    "MD": 24,
    "ME": 22,
    "MK": 19,
    "MR": 27,
    "MT": 31,
    "MU": 30,
    "NL": 18,
    "NO": 15,
    "PK": 24,
    "PL": 28,
    "PS": 29,
    "PT": 25,
    "QA": 29,
    "RO": 24,
    "RS": 22,
    "SA": 24,
    "SC": 31,
    "SE": 24,
    "SI": 19,
    "SK": 24,
    "SM": 27,
    "ST": 25,
    "SV": 28,
    "TL": 23,
    "TN": 24,
    "TR": 26,
    "UA": 29,
    "VA": 22,
    "VG": 24,
    "XK": 20,
}
_CARD_PREFIXES = re.compile(r"4|5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)|3[47]|3[068]|35|6(?:011|5|4[4-9]|2)")
_SSN_PUBLISHED = {"078051120", "219099999"}


def luhn_valid(digits: str) -> bool:
    """Whether the digit string ``digits`` passes the Luhn (mod 10) check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(compact: str) -> bool:
    """Whether ``compact`` (no spaces, upper case) has its country's length and passes the mod-97 check."""
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def _emails(text: str) -> Iterable[PiiMatch]:
    for m in _EMAIL.finditer(text):
        yield PiiMatch("email", m.start(), m.end(), m.group())


def _cards(text: str) -> Iterable[PiiMatch]:
    for m in _CARD.finditer(text):
        value = m.group()
        separators = set(re.sub(r"\d", "", value))
        if len(separators) > 1:
            continue
        digits = re.sub(r"\D", "", value)
        if _CARD_PREFIXES.match(digits) and luhn_valid(digits):
            yield PiiMatch("payment_card", m.start(), m.end(), value)


def _ibans(text: str) -> Iterable[PiiMatch]:
    for m in _IBAN.finditer(text):
        value = m.group()
        expected = _IBAN_LENGTHS.get(value[:2])
        if expected is None:
            continue
        # The pattern may run on into a following upper-case word; cut at the country's length if the
        # cut falls on a space.
        count = 0
        end = 0
        while end < len(value) and count < expected:
            count += value[end] != " "
            end += 1
        if count < expected:
            continue
        if end < len(value) and value[end] != " ":
            continue
        candidate = value[:end]
        if iban_valid(candidate.replace(" ", "")):
            yield PiiMatch("iban", m.start(), m.start() + end, candidate)


def _ssns(text: str) -> Iterable[PiiMatch]:
    for m in _SSN.finditer(text):
        area, _, group, serial = m.groups()
        if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
            continue
        if area + group + serial in _SSN_PUBLISHED:
            continue
        yield PiiMatch("us_ssn", m.start(), m.end(), m.group())


def _ips(text: str) -> Iterable[PiiMatch]:
    for m in _IPV4.finditer(text):
        octets = m.group().split(".")
        if all(int(o) <= 255 and (o == "0" or not o.startswith("0")) for o in octets):
            yield PiiMatch("ip_address", m.start(), m.end(), m.group())
    for m in _IPV6.finditer(text):
        value = m.group()
        groups = [g for g in value.split(":") if g]
        if len(groups) < 3 or (len(value.split(":")) < 8 and "::" not in value):
            continue
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            continue
        yield PiiMatch("ip_address", m.start(), m.end(), value)


def _phones(text: str) -> Iterable[PiiMatch]:
    for m in _PHONE.finditer(text):
        value = m.group()
        digits = re.sub(r"\D", "", value)
        if _SSN_SHAPE.fullmatch(value):
            continue
        if value.startswith(("+", "00")):
            ok = 8 <= len(digits) <= 15
        elif _NANP.fullmatch(value):
            ok = True
        else:
            # A national number with a trunk prefix, grouped by spaces or hyphens (not dots: those are
            # versions and dates far more often than phone numbers).
            ok = value.lstrip("(").startswith("0") and "." not in value and 9 <= len(digits) <= 12
        if ok:
            yield PiiMatch("phone", m.start(), m.end(), value)


# Earlier detectors win where matches overlap: a card number is not also reported as a phone number.
_DETECTORS: tuple[tuple[str, Callable[[str], Iterable[PiiMatch]]], ...] = (
    ("email", _emails),
    ("iban", _ibans),
    ("payment_card", _cards),
    ("us_ssn", _ssns),
    ("ip_address", _ips),
    ("phone", _phones),
)


def find_pii(text: str, kinds: Iterable[str] | None = None) -> list[PiiMatch]:
    """Return the personal data found in ``text`` (all kinds, or only ``kinds``), ordered by position.

    Matches never overlap; where two detectors claim the same characters the more specific one wins
    (e-mail, IBAN, payment card, SSN, IP address, phone — in that order). Detection runs on
    :func:`rail.text.normalize_light` of ``text``; each match's span and ``value`` are those of ``text``.
    """
    wanted = set(PII_KINDS if kinds is None else kinds)
    unknown = wanted - set(PII_KINDS)
    if unknown:
        raise ValueError(f"unknown PII kind(s): {', '.join(sorted(unknown))}; known: {', '.join(PII_KINDS)}")
    light = normalize_light(text)
    taken: list[PiiMatch] = []
    starts: list[int] = []
    for kind, detector in _DETECTORS:
        if kind not in wanted:
            continue
        for match in detector(light.text):
            k = bisect_right(starts, match.start)
            if k and taken[k - 1].end > match.start:
                continue
            if k < len(taken) and taken[k].start < match.end:
                continue
            starts.insert(k, match.start)
            taken.insert(k, match)
    if light.text is text:
        return taken
    mapped = []
    for match in taken:
        start, end = light.original_span(match.start, match.end)
        mapped.append(PiiMatch(match.kind, start, end, text[start:end]))
    return mapped


def redact(text: str, kinds: Iterable[str] | None = None) -> str:
    """Return ``text`` with each piece of personal data replaced by ``[REDACTED:<kind>]``."""
    return replace_spans(text, [(m.start, m.end, f"[REDACTED:{m.kind}]") for m in find_pii(text, kinds)])


def replace_spans(text: str, replacements: Iterable[tuple[int, int, str]]) -> str:
    """Return ``text`` with non-overlapping ``(start, end, replacement)`` spans replaced (any order given)."""
    out: list[str] = []
    pos = 0
    for start, end, replacement in sorted(replacements):
        if start < pos:
            start = pos
            if end <= start:
                continue
        out.append(text[pos:start])
        out.append(replacement)
        pos = end
    out.append(text[pos:])
    return "".join(out)
