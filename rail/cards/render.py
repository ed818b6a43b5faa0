"""Render a card to a Hugging Face README (Markdown), a self-contained HTML page, or the EU form.

Templates are jinja2 with StrictUndefined; HTML templates (``*.html.j2``) are autoescaped, Markdown ones
are not. A ``template_dir`` overrides built-in templates file by file. An imported card (one with ``body``)
renders its README sections back exactly as written; card Markdown in HTML keeps its own HTML, passed
through an allow-list sanitizer. Whatever the template, a card under a RAIL licence carries the licence
section: the use restrictions word for word where the licence has a fixed list rail holds, what can
honestly be said where it does not (``openrail`` names a family), and the notice to redistributors. When a
template leaves them out, rail appends its own licence section and says so in
:attr:`Rendered.appended_licence`.
"""

from __future__ import annotations

import html
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import jinja2
import yaml
from markupsafe import Markup, escape

from rail.cards.card import CardData
from rail.cards.eu_form import fill_form
from rail.cards.markdown import join_sections, parser, render_html, sanitize_html
from rail.cards.tree import Section, body_sections, format_value, slug
from rail.errors import ConfigError
from rail.licences import Licence, get_licence, is_rail_licence, known_licences


class Format(str, Enum):
    """Output formats of ``rail card render``."""

    MD = "md"
    HTML = "html"
    EU_GPAI = "eu-gpai"


TEMPLATES = {Format.MD: "card.md.j2", Format.HTML: "card.html.j2", Format.EU_GPAI: "eu-gpai.md.j2"}
LICENCE_TEMPLATES = {
    Format.MD: "licence.md.j2",
    Format.HTML: "licence.html.j2",
    Format.EU_GPAI: "licence.md.j2",
}
LICENCE_HEADING = "Licence and Use Restrictions"


@dataclass(frozen=True)
class Rendered:
    """A rendered card: the text, and whether rail had to append the licence section the template left out."""

    text: str
    format: Format
    appended_licence: bool = False


def card_licence(card: CardData) -> Licence | None:
    """Return the RAIL licence whose terms the card must carry, or None for a non-RAIL licence.

    Raises ConfigError for a RAIL-family licence id rail does not know (validation refuses such a card too):
    a card must not go out under a use-restricted licence without its terms.
    """
    if not is_rail_licence(card.licence_id):
        return None
    if card.licence_id not in known_licences():
        raise ConfigError(
            f"licence '{card.licence_id}' is a RAIL licence whose use restrictions rail does not ship",
            source=card.source,
            path="metadata.license",
            hint=f"use one of {', '.join(known_licences())}, or add the licence to rail's catalogue",
        )
    return get_licence(str(card.licence_id))


def front_matter(card: CardData) -> str:
    """Return the metadata as YAML that huggingface_hub reads back unchanged (order kept, ``no`` quoted)."""
    if not card.metadata:
        return ""
    return yaml.safe_dump(_plain(card.metadata), sort_keys=False, allow_unicode=True, width=100)


def _plain(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


_MD = parser()


def _md_block(text: Any) -> Markup:
    return Markup(sanitize_html(_MD.render(format_value(text))))


def _md_inline(text: Any) -> Markup:
    return Markup(sanitize_html(_MD.renderInline(format_value(text))))


def _md_cell(text: Any) -> str:
    return format_value(text).replace("\n", " ").replace("|", "\\|")


def _environment(template_dir: str | Path | None) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if template_dir is not None:
        folder = Path(template_dir)
        if not folder.is_dir():
            raise ConfigError(
                "template folder not found", source=str(folder), hint="pass a folder of *.j2 files"
            )
        loaders.append(jinja2.FileSystemLoader(str(folder)))
    loaders.append(jinja2.PackageLoader("rail.cards", "templates"))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        autoescape=lambda name: name is not None and name.endswith(".html.j2"),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(md=_md_block, md_inline=_md_inline, md_cell=_md_cell, value=format_value, slug=slug)
    return env


@dataclass(frozen=True)
class _Body:
    """An imported card's README body, split where the licence section goes."""

    before: str
    after: str
    licence_level: int
    toc: tuple[tuple[str, str], ...] = ()
    html_before: str = ""
    html_after: str = ""
    has_title: bool = False


def _split_body(body: Sequence[Mapping[str, Any]], fmt: Format) -> _Body:
    """Split at the end of the Uses section (with its sub-sections), else at the end of the body."""
    at, level = len(body), 0
    uses = next((i for i, s in enumerate(body) if s.get("field") == "uses"), None)
    if uses is not None:
        level = int(body[uses]["level"])
        at = next(
            (
                j
                for j in range(uses + 1, len(body))
                if "heading" in body[j] and int(body[j]["level"]) <= level
            ),
            len(body),
        )
    else:
        levels = [int(s["level"]) for s in body[1:] if "heading" in s]
        level = min(levels) if levels else 2
    before, after = join_sections(body[:at]), join_sections(body[at:])
    has_title = any(s.get("level") == 1 for s in body)
    if fmt is not Format.HTML:
        return _Body(before, after, max(level, 1), has_title=has_title)
    seen: dict[str, int] = {"licence-and-use-restrictions": 1}
    headings: list[tuple[int, str, str]] = []
    html_before = render_html(before, seen, headings)
    html_after = render_html(after, seen, headings)
    levels = [lvl for lvl, _, _ in headings if lvl > 1]
    toc = tuple((text, anchor) for lvl, text, anchor in headings if levels and lvl == min(levels))
    return _Body(before, after, max(level, 1), toc, html_before, html_after, has_title)


def _context(card: CardData, licence: Licence | None, fmt: Format) -> dict[str, Any]:
    body = _split_body(card.body, fmt) if card.body is not None else None
    sections = body_sections(card) if body is None else ()
    filled = fill_form(card)
    return {
        "card": card.data,
        "metadata": card.metadata,
        "front_matter": front_matter(card),
        "title": card.title,
        "subtitle": card.data.get("subtitle", ""),
        "card_version": card.data.get("card_version", ""),
        "card_date": card.data.get("card_date", ""),
        "notices": card.data.get("notices", []),
        "sections": sections,
        "body": body,
        "licence": licence,
        "licence_id": card.licence_id or "",
        "licence_link": card.metadata.get("license_link") or "",
        "licence_level": body.licence_level if body is not None else 2,
        "restrictions": list(licence.restrictions.items()) if licence else [],
        "licence_after": _licence_anchor(sections),
        "eu_fields": filled,
        "eu_missing": [f.field for f in filled if f.value is None],
    }


def _licence_anchor(sections: tuple[Section, ...]) -> str:
    """The section after which the licence section goes: Uses when the card has it, else the last one."""
    anchors = [s.anchor for s in sections]
    if "uses" in anchors:
        return "uses"
    return anchors[-1] if anchors else ""


def render_card(
    card: CardData, fmt: Format | str = Format.MD, *, template_dir: str | Path | None = None
) -> Rendered:
    """Render ``card`` as ``fmt`` (``md``, ``html`` or ``eu-gpai``), optionally with user templates.

    >>> rendered = render_card(load_card("cards/bloom-560m.yaml"), "html")  # doctest: +SKIP
    """
    fmt = Format(fmt)
    licence = card_licence(card)
    env = _environment(template_dir)
    context = _context(card, licence, fmt)
    text = _render(env, TEMPLATES[fmt], context)
    appended = False
    if licence is not None and not carries_licence(text, licence, fmt):
        section = _render(env, LICENCE_TEMPLATES[fmt], context)
        text = _append(text, section, fmt)
        appended = True
    return Rendered(text, fmt, appended)


def carries_licence(text: str, licence: Licence, fmt: Format | str) -> bool:
    """Whether ``text`` holds every use restriction of ``licence`` word for word, and its notice."""
    needed = [*licence.restrictions.values(), licence.notice]
    if Format(fmt) is not Format.HTML:
        return all(piece in text for piece in needed)
    # Templates escape quotes (&#39;), hand-written HTML may not: either form counts.
    return all(str(escape(piece)) in text or html.escape(piece, quote=False) in text for piece in needed)


def _append(text: str, section: str, fmt: Format) -> str:
    if fmt is Format.HTML and "</body>" in text:
        head, tail = text.rsplit("</body>", 1)
        return f"{head}{section}</body>{tail}"
    return text.rstrip("\n") + "\n\n" + section


def _render(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(
            f"template error: {exc.message}",
            source=exc.filename or exc.name or name,
            line=exc.lineno,
            hint="fix the template syntax",
        ) from None
    except jinja2.TemplateNotFound as exc:
        raise ConfigError(
            f"template '{exc.name}' not found",
            source=name,
            hint="a template folder overrides built-in templates by file name",
        ) from None
    except (jinja2.UndefinedError, TypeError, ValueError, AttributeError, KeyError) as exc:
        where, line = _template_frame(exc, name)
        raise ConfigError(
            f"template error: {exc}",
            source=where,
            line=line,
            hint="templates see: " + ", ".join(sorted(context)),
        ) from None


def _template_frame(exc: BaseException, name: str) -> tuple[str, int | None]:
    """Find the template file and line an error came from (jinja maps its frames to template lines)."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(".j2"):
            return frame.filename, frame.lineno
    return name, None
