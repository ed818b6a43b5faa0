"""Turn an existing Hugging Face model card (front matter + Markdown) into card YAML data, losing nothing.

The front matter becomes ``metadata`` exactly as written (keys rail does not know are kept, with a
warning). The Markdown body becomes ``body``: the text before the first heading, then each heading with the
exact Markdown up to the next one, in order (markdown-it finds the headings, so ``#`` lines in code, HTML
or lists stay content). A section whose heading names a card field (``## Uses``, ``### Direct Use``,
``## Environmental Impact`` under any heading) is tagged with that field, so lint and the EU form read it.
Rendering the card as Markdown gives the same blocks back. Problems point at lines of the README itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rail.cards.card import CardData, CardWarning, card_from_document, read_card_file
from rail.cards.fields import assign_fields, normalize_heading
from rail.cards.markdown import plain_text, split_sections
from rail.errors import ConfigError
from rail.yamlio import YamlDocument, load_yaml_text

MAX_IMPORT_BYTES = 4 * 1024 * 1024

# Headings that never serve as the card's title.
_NOT_TITLES = frozenset(("table of contents", "contents", "toc"))


@dataclass(frozen=True)
class ImportResult:
    """The imported card and what the importer noticed (kept but unknown, guessed, dropped page text)."""

    card: CardData
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class FrontMatter:
    """A README's metadata, its body, the line the body starts on, and the line of every metadata key."""

    metadata: Mapping[str, Any] | None
    body: str
    body_line: int
    lines: Mapping[tuple[str | int, ...], int]
    warnings: tuple[str, ...]


def import_card_file(path: str | Path) -> ImportResult:
    """Import the Hugging Face README at ``path``."""
    return import_card_text(read_card_file(path, MAX_IMPORT_BYTES), str(path))


def split_front_matter(text: str, source: str = "<card>") -> FrontMatter:
    """Split a README into its metadata and Markdown body, scanning lines once.

    Front matter is a ``---`` line and the next ``---`` (or ``...``) line, as huggingface_hub reads it.
    Text before the opening ``---`` (a page copied from a browser) is dropped with a warning; a Hub page's
    ``metadata`` block (the front matter shown under a line ``metadata``) is read too. Errors name the
    README's own line.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_IMPORT_BYTES:
        raise ConfigError(f"file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MiB", source=source)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    start = next((i for i, line in enumerate(lines[:40]) if line.rstrip() == "---"), None)
    if start is not None:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].rstrip() in ("---", "...")), None)
        if end is None:
            raise ConfigError(
                "front matter is not closed",
                source=source,
                line=start + 1,
                hint="end the YAML front matter with a line '---'",
            )
        warnings = []
        if any(line.strip() for line in lines[:start]):
            warnings.append(f"dropped {start} line(s) before the front matter (page text around the card?)")
        meta, where = _parse_metadata("\n".join(lines[start + 1 : end]), source, start + 1)
        return FrontMatter(meta, "\n".join(lines[end + 1 :]), end + 2, where, tuple(warnings))
    at = next((i for i, line in enumerate(lines[:40]) if line.strip() == "metadata"), None)
    if at is not None and at + 1 < len(lines) and lines[at + 1].strip().endswith(":"):
        end = at + 1
        while end < len(lines) and lines[end].strip():
            end += 1
        warnings = []
        if any(line.strip() for line in lines[:at]):
            warnings.append(f"dropped {at} line(s) before the metadata block (page text around the card?)")
        meta, where = _parse_metadata("\n".join(lines[at + 1 : end]), source, at + 1)
        return FrontMatter(meta, "\n".join(lines[end:]), end + 1, where, tuple(warnings))
    return FrontMatter(
        None, "\n".join(lines), 1, {}, ("no front matter found: the card has no metadata to keep",)
    )


def _parse_metadata(
    block: str, source: str, offset: int
) -> tuple[Mapping[str, Any], dict[tuple[str | int, ...], int]]:
    """Parse the front matter YAML; ``offset`` is the README line just above it, so lines are the README's."""
    try:
        doc = load_yaml_text(block, source)
    except ConfigError as exc:
        raise ConfigError(
            f"front matter: {exc.detail}",
            source=source,
            path=f"front matter {exc.path}" if exc.path and exc.path != "<document>" else None,
            line=(exc.line + offset) if exc.line else offset,
            hint=exc.hint,
        ) from None
    if doc.data is not None and not isinstance(doc.data, Mapping):
        raise ConfigError(
            "front matter must be a YAML mapping of keys (license, language, tags, …)",
            source=source,
            line=offset + 1,
            hint="write `key: value` lines between the two `---` lines",
        )
    lines = {("metadata", *path): line + offset for path, line in doc.lines.items()}
    return doc.data or {}, lines


def import_card_text(text: str, source: str = "<card>") -> ImportResult:
    """Import a Hugging Face README given as text; the result is validated card data.

    >>> result = import_card_text("---\\nlicense: mit\\n---\\n# Tiny\\n\\n## Uses\\n\\nChat.\\n")
    >>> [s.get("field") for s in result.card.data["body"]]
    [None, 'uses']
    """
    front = split_front_matter(text, source)
    warnings = list(front.warnings)
    metadata = dict(front.metadata or {})
    lines = dict(front.lines)
    if "license" not in metadata:
        warnings.append("no license in the metadata: the card states no licence; add metadata.license")
    sections = split_sections(front.body, front.body_line)
    fields = assign_fields([(s.heading, s.level) for s in sections])
    body: list[dict[str, Any]] = []
    for index, (section, name) in enumerate(zip(sections, fields, strict=True)):
        entry: dict[str, Any] = {}
        if section.heading is not None:
            entry.update(heading=section.heading, level=section.level)
            if name:
                entry["field"] = name
        if section.markdown:
            entry["markdown"] = section.markdown
        if entry:
            lines[("body", index)] = section.line
            body.append(entry)
    title, how = _title(body, metadata, source)
    if how:
        warnings.append(how)
    data: dict[str, Any] = {"metadata": metadata, "title": title, "body": body}
    lines[("title",)] = next((lines[("body", i)] for i, s in enumerate(body) if s.get("heading") == title), 1)
    doc = YamlDocument(data, source, lines)
    card = card_from_document(doc)
    warnings.extend(_describe(w) for w in card.warnings)
    return ImportResult(card, tuple(warnings))


def _title(body: list[dict[str, Any]], metadata: Mapping[str, Any], source: str) -> tuple[str, str]:
    """The card's title and, when it is not the README's own title heading, how it was chosen.

    The title is the first ``<h1>`` of the text before the first heading (how many cards start), else a
    first-level heading that comes before every section heading (``# Uses``) and is not a table of contents.
    """
    preamble = body[0].get("markdown", "") if body and "heading" not in body[0] else ""
    html_title = _html_h1(preamble)
    if html_title:
        return html_title, ""
    headings = [s for s in body if "heading" in s and normalize_heading(s["heading"]) not in _NOT_TITLES]
    for section in headings:
        if "field" in section:
            break
        if section["level"] == 1 and plain_text(section["heading"]):
            return plain_text(section["heading"]), ""
    index = metadata.get("model-index")
    entry = index[0] if isinstance(index, list) and index and isinstance(index[0], Mapping) else {}
    candidates = (
        ("metadata.model_name", metadata.get("model_name")),
        ("the model-index name", entry.get("name")),
        ("the first heading", plain_text(headings[0]["heading"]) if headings else None),
    )
    for origin, value in candidates:
        if isinstance(value, str) and value.strip():
            return value.strip(), f"the README has no title heading: the card's title is {origin}"
    folder = (
        Path(source).resolve().parent.name if Path(source).name.lower() == "readme.md" else Path(source).stem
    )
    return (
        folder or "Model card",
        "the README has no heading or model name: the card's title is the file's name",
    )


def _html_h1(markdown: str) -> str:
    """The text of the first ``<h1>…</h1>`` in ``markdown`` (tags inside it dropped), or ''."""
    lower = markdown.lower()
    start = lower.find("<h1")
    if start < 0:
        return ""
    open_end = lower.find(">", start)
    close = lower.find("</h1>", open_end)
    if open_end < 0 or close < 0:
        return ""
    return plain_text(markdown[open_end + 1 : close])


def _describe(warning: CardWarning) -> str:
    where = f"line {warning.line}, " if warning.line else ""
    return f"{where}{warning.path}: {warning.message}" + (f" ({warning.hint})" if warning.hint else "")
