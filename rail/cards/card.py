"""Card YAML as data: load it safely, validate it against the shipped schema, write it back in key order."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from rail.errors import ConfigError
from rail.yamlio import YamlDocument, format_path, load_schema, load_yaml, load_yaml_text, schema_problems

SCHEMA_NAME = "card.schema.json"

_EMPTY_TEXT_HINT = (
    "write the text, or remove the key; a `|` block whose lines are not indented deeper than "
    "its key parses to empty text, so indent the block under the key"
)


@cache
def card_schema() -> Mapping[str, Any]:
    """Return the JSON Schema of card YAML (``rail/data/card.schema.json``)."""
    return load_schema(SCHEMA_NAME)


@dataclass(frozen=True)
class CardData:
    """A validated model card: ``data`` in the key order of its YAML, where it came from, and its lines.

    ``data`` is the card as written: ``metadata`` (the Hugging Face front matter), ``title`` and the body
    sections, ``eu`` (documentation form fields) and ``extra`` (custom sections). Treat it as read-only.
    """

    data: Mapping[str, Any]
    source: str = "<card>"
    lines: Mapping[tuple[str | int, ...], int] = field(default_factory=dict, repr=False)

    @property
    def metadata(self) -> Mapping[str, Any]:
        """The Hugging Face metadata, in the order the card gives it."""
        return self.data["metadata"]

    @property
    def licence_id(self) -> str:
        """The hub licence id from the metadata (e.g. ``bigscience-bloom-rail-1.0``)."""
        return self.metadata["license"]

    @property
    def title(self) -> str:
        """The card's title."""
        return self.data["title"]

    def get(self, *path: str | int) -> Any:
        """Return the value at ``path`` (e.g. ``get("technical_specifications", "parameters")``), or None."""
        node: Any = self.data
        for part in path:
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                return None
        return node


def card_problems(doc: YamlDocument) -> list[ConfigError]:
    """Return every problem of the parsed card ``doc``: schema violations and empty texts, ordered by line."""
    if not isinstance(doc.data, Mapping):
        return [
            ConfigError(
                "a card must be a YAML mapping with at least `metadata` and `title`",
                source=doc.source,
                line=1,
                hint="see the Model cards section of README.md for the layout",
            )
        ]
    problems = schema_problems(doc, card_schema())
    for path in _empty_strings(doc.data, ()):
        problems.append(
            ConfigError(
                "empty text",
                source=doc.source,
                path=format_path(path),
                line=doc.line_of(path),
                hint=_EMPTY_TEXT_HINT,
            )
        )
    problems.sort(key=lambda e: (e.line or 0, e.path or ""))
    return problems


def card_from_document(doc: YamlDocument) -> CardData:
    """Validate the parsed YAML ``doc`` as a card; raise one ConfigError listing every problem."""
    problems = card_problems(doc)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        listing = "; ".join(str(p) for p in problems[:20])
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        raise ConfigError(
            f"{len(problems)} problems in this card: {listing}{more}",
            source=doc.source,
            line=problems[0].line,
        )
    return CardData(doc.data, doc.source, doc.lines)


def load_card(path: str | Path) -> CardData:
    """Read and validate the card YAML at ``path``.

    >>> card = load_card("cards/bloom-560m.yaml")  # doctest: +SKIP
    >>> card.metadata["license"]  # doctest: +SKIP
    'bigscience-bloom-rail-1.0'
    """
    return card_from_document(load_yaml(path))


def load_card_text(text: str, source: str = "<card>") -> CardData:
    """Parse and validate card YAML given as text."""
    return card_from_document(load_yaml_text(text, source))


def card_from_mapping(data: Mapping[str, Any], source: str = "<card>") -> CardData:
    """Validate card data built in Python (e.g. by the importer) by writing it out and reading it back."""
    return load_card_text(dump_card(data), source)


def _empty_strings(node: Any, path: tuple[str | int, ...]) -> Iterator[tuple[str | int, ...]]:
    if isinstance(node, str):
        if not node.strip():
            yield path
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from _empty_strings(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _empty_strings(value, (*path, index))


class _CardDumper(yaml.SafeDumper):
    """Writes mappings in their own order and multi-line text as `|` blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_CardDumper.add_representer(str, _represent_str)


def dump_card(data: Mapping[str, Any]) -> str:
    """Return card ``data`` as YAML text in its key order (``no`` and dates quoted so they stay strings)."""
    return yaml.dump(
        _plain(data),
        Dumper=_CardDumper,
        sort_keys=False,
        allow_unicode=True,
        width=120,
        default_flow_style=False,
    )


def _plain(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {key: _plain(value) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(value) for value in node]
    return node


def write_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file beside it; a failure leaves ``path`` as it was."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise ConfigError("the output folder does not exist", source=str(target), hint="create it first")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
