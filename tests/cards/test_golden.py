"""Golden renders of the bloom-560m card in every format.

The expected files live in tests/cards/golden/. This test only compares; after an intended change to a
template or to the card, rewrite them with ``python -m tests.cards.update_golden`` and review the diff.
"""

from __future__ import annotations

import pytest

from tests.cards.update_golden import FORMATS, GOLDEN, render_golden


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_render_matches_golden_file(fmt: str):
    golden = GOLDEN / FORMATS[fmt]
    assert golden.exists(), f"missing {golden}; create it with python -m tests.cards.update_golden"
    assert render_golden(fmt) == golden.read_text(encoding="utf-8")
