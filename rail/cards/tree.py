"""Turn card data into a tree of headed sections and content nodes that templates render.

The card schema is the single source of headings and labels: a property's ``title`` is its heading, and its
``x-render`` annotation says how it shows (``fact`` lines, ``body`` text without a heading, a ``table`` …).
Everything is walked in the card's own key order, so the rendered card keeps the order of its YAML.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from rail.cards.card import CardData, card_schema

# Keys that are not body sections: they are rendered by the templates themselves (title block, front matter,
# EU form) rather than walked.
FRONT_KEYS = ("metadata", "title", "subtitle", "card_version", "card_date", "notices", "eu")


@dataclass(frozen=True)
class Node:
    """One piece of content: ``kind`` is text, facts, list, table, image, code, glossary, names or section."""

    kind: str
    text: str = ""
    items: tuple[Any, ...] = ()
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    caption: str = ""
    note: str = ""
    url: str = ""
    language: str = ""
    section: Section | None = None


@dataclass(frozen=True)
class Section:
    """A headed part of the card; ``level`` 2 is a top-level section."""

    title: str
    anchor: str
    level: int
    nodes: tuple[Node, ...] = field(default_factory=tuple)


def slug(title: str) -> str:
    """Return the Hub's anchor for a heading (``Uses and Risks`` → ``uses-and-risks``)."""
    text = re.sub(r"[^\w\- ]", "", title.strip().lower())
    return text.replace(" ", "-")


def humanize(key: str) -> str:
    """Return a label for a custom key (``training_throughput`` → ``Training throughput``)."""
    words = key.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def format_value(value: Any) -> str:
    """Show a scalar as people write it: large integers grouped by thousands, no exponent notation."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10000 else str(value)
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    return str(value).strip()


def body_sections(card: CardData) -> tuple[Section, ...]:
    """Return the card's body as sections, in the order of its YAML."""
    schema = card_schema()
    props = schema["properties"]
    out: list[Section] = []
    for key, value in card.data.items():
        if key in FRONT_KEYS:
            continue
        if key == "extra":
            out.extend(_extra_sections(value, level=2))
            continue
        sub = _resolve(props[key])
        title = sub.get("title") or humanize(key)
        if key == "summary":
            title = "Model Summary"
        out.append(Section(title, slug(title), 2, tuple(_walk(value, sub, 2))))
    return tuple(out)


def _resolve(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow ``$ref`` into ``$defs``, keeping the referring node's own annotations (title, x-render)."""
    ref = schema.get("$ref")
    if not ref:
        return schema
    target = dict(_resolve(card_schema()["$defs"][ref.rsplit("/", 1)[1]]))
    target.update({k: v for k, v in schema.items() if k != "$ref"})
    return target


def _extra_sections(value: Mapping[str, Any], level: int) -> list[Section]:
    return [
        Section(str(title), slug(str(title)), level, tuple(_walk_content(content, level)))
        for title, content in value.items()
    ]


def _walk(value: Any, schema: Mapping[str, Any], level: int) -> list[Node]:
    render = schema.get("x-render")
    if isinstance(value, Mapping) and "properties" in schema and render not in ("block", "image", "table"):
        return _walk_section(value, schema, level)
    if render == "glossary":
        return [Node("glossary", items=tuple(value))]
    if render == "names":
        return [Node("names", items=tuple(str(v) for v in value))]
    if render in ("code", "code-list") or (isinstance(value, list) and value and _is_code(value[0])):
        return [_code(v) for v in (value if isinstance(value, list) else [value])]
    if render == "facts":
        return [Node("facts", items=tuple((humanize(k), _fact_value(v)) for k, v in value.items()))]
    return _walk_content(value, level)


def _walk_section(value: Mapping[str, Any], schema: Mapping[str, Any], level: int) -> list[Node]:
    props = schema.get("properties", {})
    nodes: list[Node] = []
    facts: list[tuple[str, Any]] = []

    def flush() -> None:
        if facts:
            nodes.append(Node("facts", items=tuple(facts)))
            facts.clear()

    for key, item in value.items():
        if key == "extra":
            flush()
            nodes.extend(Node("section", section=s) for s in _extra_sections(item, level + 1))
            continue
        sub = _resolve(props[key])
        render = sub.get("x-render")
        title = sub.get("title") or humanize(key)
        if render == "fact":
            facts.append((title, _fact_value(item)))
            continue
        flush()
        if render == "body":
            nodes.extend(_walk_content(item, level))
        elif render in ("glossary", "names", "code-list"):
            nodes.extend(_walk(item, sub, level))
        else:
            child = Section(title, slug(title), level + 1, tuple(_walk(item, sub, level + 1)))
            nodes.append(Node("section", section=child))
    flush()
    return nodes


def _fact_value(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_item(v) for v in value)
    return format_value(value)


def _item(value: Any) -> Any:
    """A bullet: a string, or (text, sub-bullets)."""
    if isinstance(value, Mapping):
        return (format_value(value["text"]), tuple(_item(v) for v in value.get("items", ())))
    return format_value(value)


def _is_code(value: Any) -> bool:
    return isinstance(value, Mapping) and "source" in value and set(value) <= {"title", "language", "source"}


def _code(value: Any) -> Node:
    if isinstance(value, str):
        return Node("code", text=value.rstrip("\n"))
    return Node(
        "code",
        text=value["source"].rstrip("\n"),
        language=value.get("language", ""),
        caption=value.get("title", ""),
    )


_BLOCK_KEYS = frozenset(("text", "image", "list_title", "items", "tables", "code", "note"))
_TABLE_KEYS = frozenset(("caption", "columns", "rows", "note"))


def _walk_content(value: Any, level: int) -> list[Node]:
    if isinstance(value, str | int | float):
        return [Node("text", text=format_value(value))]
    if isinstance(value, list):
        return [Node("list", items=tuple(_item(v) for v in value))]
    if isinstance(value, Mapping):
        if "rows" in value and set(value) <= _TABLE_KEYS:
            return [_table(value)]
        if set(value) <= _BLOCK_KEYS:
            return _block(value)
        return [Node("section", section=s) for s in _extra_sections(value, level + 1)]
    return []


def _block(value: Mapping[str, Any]) -> list[Node]:
    nodes: list[Node] = []
    for key, item in value.items():
        if key in ("text", "note"):
            nodes.append(Node("text", text=item.strip()))
        elif key == "image":
            nodes.append(Node("image", url=item["url"], text=item["alt"].strip()))
        elif key == "list_title":
            nodes.append(Node("list", caption=item.strip()))
        elif key == "items":
            if nodes and nodes[-1].kind == "list" and not nodes[-1].items:
                nodes[-1] = Node("list", caption=nodes[-1].caption, items=tuple(_item(v) for v in item))
            else:
                nodes.append(Node("list", items=tuple(_item(v) for v in item)))
        elif key == "tables":
            nodes.extend(_table(t) for t in item)
        elif key == "code":
            nodes.extend(_code(c) for c in item)
    return nodes


def _table(value: Mapping[str, Any]) -> Node:
    rows = value["rows"]
    columns: dict[str, str] = dict(value.get("columns") or {})
    for row in rows:
        for key in row:
            columns.setdefault(key, humanize(key))
    body = tuple(tuple(format_value(row.get(key)) for key in columns) for row in rows)
    return Node(
        "table",
        columns=tuple(columns.values()),
        rows=body,
        caption=(value.get("caption") or "").strip(),
        note=(value.get("note") or "").strip(),
    )
