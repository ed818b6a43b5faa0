"""PII detectors: real identifiers are found (and redacted), look-alikes are not."""

import pytest

from rail.policy.pii import find_pii, redact


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("write to jane.doe@example.org today", "email", "jane.doe@example.org"),
        ("card 4111 1111 1111 1111 ok", "payment_card", "4111 1111 1111 1111"),
        ("amex 378282246310005.", "payment_card", "378282246310005"),
        ("mc 5555-5555-5555-4444", "payment_card", "5555-5555-5555-4444"),
        ("iban DE89 3704 0044 0532 0130 00 thanks", "iban", "DE89 3704 0044 0532 0130 00"),
        ("GB82WEST12345698765432", "iban", "GB82WEST12345698765432"),
        ("ssn 123-45-6789", "us_ssn", "123-45-6789"),
        ("ip 192.168.1.20.", "ip_address", "192.168.1.20"),
        ("ip 2001:db8::8a2e:370:7334", "ip_address", "2001:db8::8a2e:370:7334"),
        ("call +44 20 7946 0958", "phone", "+44 20 7946 0958"),
        ("call (555) 123-4567", "phone", "(555) 123-4567"),
        ("call 555-123-4567", "phone", "555-123-4567"),
        ("appelle le 06 12 34 56 78", "phone", "06 12 34 56 78"),
        ("ruf 0171-1234567 an", "phone", "0171-1234567"),
        ("+33612345678", "phone", "+33612345678"),
    ],
)
def test_positives(text: str, kind: str, value: str) -> None:
    found = [(m.kind, m.value) for m in find_pii(text)]
    assert found == [(kind, value)]
    m = find_pii(text)[0]
    assert text[m.start : m.end] == value


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # Luhn fails
        "number 1234 5678 9012 3456",  # no issuer prefix / Luhn
        "iban DE89 3704 0044 0532 0130 01",  # mod-97 fails
        "iban DE89 3704 0044 0532 0130",  # wrong length for DE
        "ssn 000-12-3456",
        "ssn 666-12-3456",
        "ssn 912-34-5678",
        "ssn 123-00-4567",
        "ssn 123-45-0000",
        "ssn 078-05-1120",  # the published Woolworth number
        "on 2023-01-15, 15.01.2023 and 01/02/2023",
        "version 1.2.3, 10.15.7 and v2.3.4.5",
        "ip 999.1.1.1 and 01.02.03.04",
        "time 12:30:45 and std::vector",
        "year 2024, order 123456789, isbn 978-3-16-148410-0",
        "lists 12 34 56 78 90 and 2021-2022-2023",
        "email-like foo@bar and a@b.c",
    ],
)
def test_negatives(text: str) -> None:
    assert find_pii(text) == []


def test_redact_replaces_each_kind() -> None:
    text = "Mail jane.doe@example.org or call +44 20 7946 0958, card 4111111111111111."
    assert redact(text) == "Mail [REDACTED:email] or call [REDACTED:phone], card [REDACTED:payment_card]."


def test_kinds_filter_and_unknown_kind() -> None:
    assert [m.kind for m in find_pii("a@example.com 555-123-4567", kinds=["phone"])] == ["phone"]
    with pytest.raises(ValueError, match="unknown PII kind"):
        find_pii("x", kinds=["passport"])


def test_large_text_with_many_matches() -> None:
    text = "contact a@example.com or 555-123-4567. " * 50_000
    assert len(find_pii(text)) == 100_000
