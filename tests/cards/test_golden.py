"""Golden renders of the bloom-560m card in every format.

The expected files live in tests/cards/golden/. After an intended change to a template or to the card,
regenerate them with::

    RAIL_UPDATE_GOLDEN=1 python -m pytest tests/cards/test_golden.py

and review the diff before committing it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rail.cards import load_card, render_card
from tests.cards.conftest import CARDS

GOLDEN = Path(__file__).parent / "golden"
FORMATS = {"md": "bloom-560m.md", "html": "bloom-560m.html", "eu-gpai": "bloom-560m.eu-gpai.md"}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_render_matches_golden_file(fmt: str):
    card = load_card(next(p for p in CARDS if p.stem == "bloom-560m"))
    text = render_card(card, fmt).text
    golden = GOLDEN / FORMATS[fmt]
    if os.environ.get("RAIL_UPDATE_GOLDEN") == "1":
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"missing {golden}; run with RAIL_UPDATE_GOLDEN=1 to create it"
    assert text == golden.read_text(encoding="utf-8")
