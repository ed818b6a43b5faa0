"""Card Markdown as the Hub reads it: split at headings without losing a byte, render it as safe HTML.

Parsing is markdown-it (CommonMark with tables and raw HTML, as on the Hub). A README body becomes a list of
:class:`MarkdownSection`: each heading with its level and inline text, and the exact source lines between it
and the next heading, so writing the sections back gives the same blocks in the same order. HTML output
passes the card's own HTML (``<details>``, ``<img>``, tables …) through an allow-list sanitizer (nh3):
scripts, event handlers, ``javascript:`` URLs, iframes, objects and forms never survive.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token

__all__ = [
    "MarkdownSection",
    "anchor",
    "heading_line",
    "join_sections",
    "list_facts",
    "parser",
    "plain_text",
    "render_html",
    "render_inline_html",
    "sanitize_html",
    "split_sections",
    "unique_anchor",
]


def parser() -> MarkdownIt:
    """Return a parser that reads card Markdown as the Hub does: CommonMark, tables, strikethrough, HTML."""
    return MarkdownIt("commonmark", {"html": True, "linkify": False, "typographer": False}).enable(
        ["table", "strikethrough"]
    )


_PARSER = parser()


@dataclass(frozen=True)
class MarkdownSection:
    """A heading (``None`` for text before the first heading) and the exact Markdown up to the next one.

    ``line`` is the 1-based line of the heading (or of the first content line) in the source it came from.
    """

    heading: str | None
    level: int
    markdown: str
    line: int = 1


def split_sections(body: str, first_line: int = 1) -> tuple[MarkdownSection, ...]:
    """Split Markdown ``body`` at its top-level headings; ``first_line`` is the line ``body`` starts on.

    Headings inside lists, quotes, fences or HTML blocks are content, not section breaks. Blank lines at the
    start and end of a section are dropped (they separate blocks and carry nothing); everything else is kept
    exactly as written.
    """
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    tokens = _PARSER.parse("\n".join(lines))
    marks: list[tuple[int, int, int, str]] = []
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and token.level == 0 and token.map is not None:
            marks.append((token.map[0], token.map[1], int(token.tag[1]), tokens[index + 1].content.strip()))
    sections: list[MarkdownSection] = []
    preamble_end = marks[0][0] if marks else len(lines)
    preamble = _trimmed(lines[:preamble_end])
    if preamble:
        sections.append(MarkdownSection(None, 0, preamble, first_line + _first_text(lines)))
    for position, (start, end, level, text) in enumerate(marks):
        stop = marks[position + 1][0] if position + 1 < len(marks) else len(lines)
        sections.append(MarkdownSection(text, level, _trimmed(lines[end:stop]), first_line + start))
    return tuple(sections)


def _first_text(lines: list[str]) -> int:
    return next((i for i, line in enumerate(lines) if line.strip()), 0)


def _trimmed(lines: list[str]) -> str:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return "\n".join(lines[start:end])


def heading_line(level: int, text: str) -> str:
    """Write a heading as Markdown: ATX (``## Text``), or setext when the text spans lines."""
    if "\n" in text and level <= 2:
        return text + "\n" + ("===" if level == 1 else "---")
    return ("#" * level + " " + text.replace("\n", " ")).rstrip()


def join_sections(sections: Iterable[Mapping[str, Any]]) -> str:
    """Write body sections (``heading``, ``level``, ``markdown``) back as one Markdown text."""
    parts: list[str] = []
    for section in sections:
        if "heading" in section:
            parts.append(heading_line(int(section["level"]), str(section["heading"])))
        if section.get("markdown"):
            parts.append(str(section["markdown"]))
    return "\n\n".join(parts) + "\n" if parts else ""


def plain_text(inline: str) -> str:
    """Return the visible text of inline Markdown (formatting, links and inline HTML removed)."""
    tokens = _PARSER.parseInline(inline)
    parts: list[str] = []
    for token in tokens[0].children or [] if tokens else []:
        if token.type in ("text", "code_inline"):
            parts.append(token.content)
        elif token.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif token.type == "image":
            parts.append("".join(child.content for child in token.children or []))
    return " ".join("".join(parts).split())


def list_facts(markdown: str) -> dict[str, str]:
    """Return the labelled facts of ``markdown`` as label → value, in order (the first of a label wins).

    A fact is a top-level bullet ``- **Label:** value`` (or ``- Label: value``), its sub-bullets appended one
    per line, or a paragraph line that starts with a bold label (``**Label:** value``). Values keep their
    inline Markdown.
    """
    tokens = _PARSER.parse(markdown)
    facts: dict[str, str] = {}
    depth = 0
    for index, token in enumerate(tokens):
        found: list[tuple[str, str]] = []
        if token.type in ("bullet_list_open", "ordered_list_open"):
            depth += 1
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            depth -= 1
        elif token.type == "list_item_open" and depth == 1:
            found.append(_label_value(_item_text(tokens, index)))
        elif token.type == "inline" and depth == 0 and token.level == 1:
            found.extend(
                _label_value(line) for line in token.content.split("\n") if line.startswith(("**", "__"))
            )
        for label, value in found:
            if label and label not in facts:
                facts[label] = value
    return facts


def _item_text(tokens: list[Token], start: int) -> str:
    """The inline source of a list item: its first paragraph, then its sub-bullets' first lines."""
    parts: list[str] = []
    depth = 0
    for token in tokens[start + 1 :]:
        if token.type == "list_item_open":
            depth += 1
        elif token.type == "list_item_close":
            if depth == 0:
                break
            depth -= 1
        elif token.type == "inline" and len(parts) < 20:
            parts.append(token.content.strip())
    return "\n".join(p for p in parts if p)


def _label_value(text: str) -> tuple[str, str]:
    first, _, rest = text.partition("\n")
    body = first.strip()
    bold = body.startswith(("**", "__"))
    if bold:
        body = body[2:]
    colon = body.find(":", 0, 80)
    if colon <= 0:
        return "", ""
    label = body[:colon].replace("**", "").replace("__", "").strip()
    value = body[colon + 1 :].strip()
    if bold and value.startswith(("**", "__")):
        value = value[2:].strip()
    elif bold and not label:
        return "", ""
    if rest:
        value = (value + "\n" + rest).strip()
    return plain_text(label), value


# ---------------------------------------------------------------- HTML

_TAGS = nh3.ALLOWED_TAGS | {"input", "picture", "source", "video", "audio"}
_ATTRIBUTES: dict[str, set[str]] = {
    "*": {"align", "title", "lang", "dir", "style"},
    "a": {"href", "name", "id"},
    "img": {"src", "alt", "width", "height", "srcset", "loading"},
    "source": {"srcset", "type", "media", "src"},
    "video": {"src", "controls", "width", "height", "poster"},
    "audio": {"src", "controls"},
    "td": {"colspan", "rowspan", "valign", "width"},
    "th": {"colspan", "rowspan", "valign", "width", "scope"},
    "table": {"width", "border"},
    "ol": {"start", "type"},
    "details": {"open"},
    "code": {"class"},
    "input": {"type", "checked", "disabled"},
    "h1": {"id"},
    "h2": {"id"},
    "h3": {"id"},
    "h4": {"id"},
    "h5": {"id"},
    "h6": {"id"},
    "span": {"id"},
    "div": {"id"},
}
_STYLE_PROPERTIES = {
    "text-align",
    "vertical-align",
    "width",
    "max-width",
    "min-width",
    "height",
    "max-height",
    "margin",
    "margin-left",
    "margin-right",
    "margin-top",
    "margin-bottom",
    "padding",
    "display",
    "float",
    "color",
    "font-weight",
    "font-style",
    "font-size",
    "border",
    "border-radius",
    "white-space",
}


def sanitize_html(html: str) -> str:
    """Keep the harmless part of ``html``: an allow-list of tags, attributes, URL schemes and styles.

    Scripts, styles, iframes, objects, embeds, forms and their content are removed; event handlers and
    ``javascript:``/``data:`` URLs never survive; links get ``rel="noopener noreferrer"``.
    """
    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        filter_style_properties=_STYLE_PROPERTIES,
        strip_comments=True,
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"input": {"disabled": "disabled"}},
    )


_ANCHOR_DROP = re.compile(r"[^\w\- ]")


def anchor(text: str) -> str:
    """Return the Hub's anchor for a heading (``Uses and Risks`` → ``uses-and-risks``)."""
    return _ANCHOR_DROP.sub("", text.strip().lower()).replace(" ", "-")


def render_html(
    markdown: str, anchors: dict[str, int] | None = None, headings: list[tuple[int, str, str]] | None = None
) -> str:
    """Render card Markdown as sanitized HTML; top-level headings get unique ``id`` anchors.

    ``anchors`` counts the anchors taken so far (share it across calls for one page); each top-level heading
    is appended to ``headings`` as (level, visible text, anchor), for a table of contents.
    """
    seen = anchors if anchors is not None else {}
    tokens = _PARSER.parse(markdown)
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and token.level == 0:
            text = plain_text(tokens[index + 1].content)
            token.attrSet("id", unique_anchor(text, seen))
            if headings is not None:
                headings.append((int(token.tag[1]), text, str(token.attrGet("id"))))
    return sanitize_html(_PARSER.renderer.render(tokens, _PARSER.options, {}))


def render_inline_html(markdown: str) -> str:
    """Render one line of card Markdown (a label, a table cell) as sanitized inline HTML."""
    return sanitize_html(_PARSER.renderInline(markdown))


def unique_anchor(text: str, seen: dict[str, int]) -> str:
    """Return the anchor for ``text``, suffixed ``-1``, ``-2`` … when an earlier heading took it."""
    base = anchor(text) or "section"
    count = seen.get(base, 0)
    seen[base] = count + 1
    return base if count == 0 else f"{base}-{count}"
