"""Rewrite the golden renders in tests/cards/golden/ after an intended change to a template or a card.

Run ``python -m tests.cards.update_golden``, then review ``git diff tests/cards/golden`` before committing:
the golden test itself only compares, so it fails until the files are rewritten here on purpose.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rail.cards import load_card, render_card
from tests.cards.conftest import CARDS

GOLDEN = Path(__file__).parent / "golden"
CARD = "bloom-560m"
FORMATS = {"md": f"{CARD}.md", "html": f"{CARD}.html", "eu-gpai": f"{CARD}.eu-gpai.md"}


def render_golden(fmt: str) -> str:
    """Render the golden card in ``fmt``."""
    return render_card(load_card(next(p for p in CARDS if p.stem == CARD)), fmt).text


def main() -> int:
    """Write every golden file and say which changed."""
    for fmt, name in FORMATS.items():
        path = GOLDEN / name
        text = render_golden(fmt)
        old = path.read_text(encoding="utf-8") if path.exists() else None
        path.write_text(text, encoding="utf-8")
        print(f"{path}: {'unchanged' if old == text else 'rewritten'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
