"""Shared paths for the card tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from rail.resources import data_dir

CARDS = sorted(Path(str(data_dir("rail.cardset"))).glob("*.yaml"))
# Copies of published BLOOM-family cards as found: two pages copied from a browser, two with metadata.
SEEDS = Path(__file__).parent / "seeds"


@pytest.fixture
def write(tmp_path: Path):
    """Write a text file under tmp_path and return its path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return _write
