"""Small text helpers shared by rendering, linting and the EU form: flatten card values, spot placeholders."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rail.cards.tree import format_value

# What card authors leave behind when a section is not written yet (the Hugging Face template's default
# text, and the phrases the BLOOM cards use for pending facts).
PLACEHOLDER = re.compile(
    r"\[more information needed\]|\bTBD\b|\bTODO\b|\bforthcoming\b|\bto be added\b", re.IGNORECASE
)


def flatten(value: Any) -> str:
    """Return every piece of text in a card value, joined by newlines (tables row by row)."""
    parts: list[str] = []
    _collect(value, parts)
    return "\n".join(p for p in parts if p)


def _collect(value: Any, parts: list[str]) -> None:
    if isinstance(value, Mapping):
        for item in value.values():
            _collect(item, parts)
    elif isinstance(value, list | tuple):
        for item in value:
            _collect(item, parts)
    elif value is not None:
        parts.append(format_value(value))


def is_placeholder(value: Any) -> bool:
    """Whether ``value`` gives nothing yet: missing, empty, or only lines like "[More Information Needed]".

    Text counts line by line (headings aside), so a long section that mentions "forthcoming" once still
    counts as written, while one whose every line is a placeholder does not.
    """
    parts: list[str] = []
    _collect(value, parts)
    lines = [
        line for p in parts for line in p.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    return all(PLACEHOLDER.search(line) for line in lines)
