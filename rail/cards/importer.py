"""Turn an existing Hugging Face model card (front matter + Markdown) into card YAML data.

Known headings (and the variants the BLOOM cards use) map to schema sections; anything else is kept as a
custom section under ``extra``; Markdown tables become rows of mappings; order is kept. Parsing is line by
line with no backtracking regular expressions, so its cost grows linearly with the input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rail.cards.card import CardData, card_from_mapping, card_schema
from rail.errors import ConfigError
from rail.yamlio import load_yaml_text

MAX_IMPORT_BYTES = 4 * 1024 * 1024

_TOP = {
    "model summary": "summary",
    "summary": "summary",
    "model details": "model_details",
    "model description": "model_details",
    "uses": "uses",
    "use": "uses",
    "intended users": "intended_users",
    "bias, risks, and limitations": "bias_risks_limitations",
    "bias, risks and limitations": "bias_risks_limitations",
    "risks and limitations": "bias_risks_limitations",
    "limitations": "bias_risks_limitations",
    "recommendations": "recommendations",
    "training data": "training_data",
    "training": "training_procedure",
    "training details": "training_procedure",
    "training procedure": "training_procedure",
    "evaluation": "evaluation",
    "environmental impact": "environmental_impact",
    "technical specifications": "technical_specifications",
    "how to use": "how_to_use",
    "how to get started with the model": "how_to_use",
    "citation": "citation",
    "glossary and calculations": "glossary",
    "glossary": "glossary",
    "more information": "more_information",
    "model card authors": "authors",
    "model card contact": "contact",
    "table of contents": "",
}
_SUB = {
    "uses": {
        "intended use": "intended_use",
        "direct use": "direct_use",
        "downstream use": "downstream_use",
        "out-of-scope uses": "out_of_scope_use",
        "out-of-scope use": "out_of_scope_use",
        "misuse": "misuse",
        "misuse and out-of-scope use": "licence_note",
    },
    "intended_users": {
        "direct users": "direct_users",
        "indirect users": "indirect_users",
        "others affected (parties prenantes)": "others_affected",
        "others affected": "others_affected",
    },
    "training_procedure": {
        "model": "model",
        "hardware": "hardware",
        "software": "software",
        "training hyperparameters": "hyperparameters",
    },
    "evaluation": {
        "metrics": "metrics",
        "factors": "factors",
        "results": "results",
        "testing data": "testing_data",
    },
    "technical_specifications": {
        "training": "training",
        "tokenization": "tokenization",
        "model architecture": "architecture",
        "compute infrastructure": "compute_infrastructure",
    },
    "model_details": {"model description": ""},
}
_FACTS = {
    "developed by": "developed_by",
    "shared by": "shared_by",
    "model type": "model_type",
    "version": "version",
    "languages": "languages",
    "language(s)": "languages",
    "license": "license",
    "release date": "release_date",
    "release date estimate": "release_date",
    "funded by": "funded_by",
    "finetuned from model": "finetuned_from",
    "repository": "repository",
    "paper": "paper",
    "demo": "demo",
    "point of contact": "point_of_contact",
}
# Labels that qualify their fact: the qualifier stays with the value, so an estimate never reads as firm.
_QUALIFIERS = {"release date estimate": "estimate"}
_BULLETS = ("- ", "* ", "+ ")


@dataclass
class _Node:
    title: str
    level: int
    lines: list[str] = field(default_factory=list)
    children: list[_Node] = field(default_factory=list)


@dataclass(frozen=True)
class ImportResult:
    """The imported card and what the importer had to leave out or guess."""

    card: CardData
    warnings: tuple[str, ...]


def import_card_file(path: str | Path) -> ImportResult:
    """Import the Hugging Face README at ``path``."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError("file not found", source=str(p), hint="check the path") from None
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", source=str(p)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 text (byte {exc.start})", source=str(p), hint="save it as UTF-8"
        ) from None
    return import_card_text(text, str(p))


def split_front_matter(
    text: str, source: str = "<card>"
) -> tuple[Mapping[str, Any] | None, list[str], list[str]]:
    """Split a README into (metadata, body lines, warnings), scanning lines once.

    Front matter is a ``---`` line and the next ``---`` line. Text before the opening ``---`` (a page copied
    from a browser) is dropped with a warning; a Hub page's ``metadata`` block (the front matter shown under
    a line ``metadata``) is read too.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_IMPORT_BYTES:
        raise ConfigError(f"file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MiB", source=source)
    lines = text.splitlines()
    warnings: list[str] = []
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
        if any(line.strip() for line in lines[:start]):
            warnings.append(f"dropped {start} line(s) before the front matter (page text around the card?)")
        meta = _parse_metadata("\n".join(lines[start + 1 : end]), source, start + 1)
        return meta, lines[end + 1 :], warnings
    at = next((i for i, line in enumerate(lines[:40]) if line.strip() == "metadata"), None)
    if at is not None and at + 1 < len(lines) and lines[at + 1].strip().endswith(":"):
        end = at + 1
        while end < len(lines) and lines[end].strip():
            end += 1
        if any(line.strip() for line in lines[:at]):
            warnings.append(f"dropped {at} line(s) before the metadata block (page text around the card?)")
        return _parse_metadata("\n".join(lines[at + 1 : end]), source, at + 1), lines[end:], warnings
    warnings.append("no front matter found: the card has no metadata to keep")
    return None, lines, warnings


def _parse_metadata(block: str, source: str, offset: int) -> Mapping[str, Any]:
    try:
        meta = load_yaml_text(block, source).data
    except ConfigError as exc:
        raise ConfigError(
            f"front matter: {exc.detail}",
            source=source,
            line=(exc.line + offset) if exc.line else offset,
            hint=exc.hint,
        ) from None
    if meta is not None and not isinstance(meta, Mapping):
        raise ConfigError("front matter must be a YAML mapping", source=source, line=offset)
    return meta or {}


def import_card_text(text: str, source: str = "<card>") -> ImportResult:
    """Import a Hugging Face README given as text; the result is validated card data."""
    metadata, body, warnings = split_front_matter(text, source)
    metadata = dict(metadata or {})
    if "license" not in metadata:
        metadata["license"] = "other"
        warnings.append("no license in the metadata: set metadata.license (rail wrote 'other')")
    root = _outline(body)
    data: dict[str, Any] = {"metadata": metadata}
    title = _preamble(root, data)
    data["title"] = title or str(metadata.get("model_name") or Path(source).stem)
    for node in root.children:
        _place(node, data, warnings)
    return ImportResult(card_from_mapping(_ordered(data), source), tuple(warnings))


def _ordered(data: dict[str, Any]) -> dict[str, Any]:
    """Put the title block first, then everything else in the order it was read."""
    front = ("metadata", "title", "subtitle", "card_version", "card_date", "notices")
    out = {k: data[k] for k in front if k in data}
    out.update((k, v) for k, v in data.items() if k not in out)
    return out


def _heading(line: str, structured: bool) -> tuple[int, str] | None:
    stripped = line.strip()
    if structured:
        if not stripped.startswith("#"):
            return None
        level = len(stripped) - len(stripped.lstrip("#"))
        if level > 6 or not stripped[level:].startswith(" "):
            return None
        return level, _clean_title(stripped[level:].strip().rstrip("#").strip())
    key = _clean_title(stripped).lower()
    if len(stripped) >= 60 or not _known(key):
        return None
    return (2 if key in _TOP else 3), _clean_title(stripped)


def _known(title: str) -> bool:
    key = title.lower()
    return key in _TOP or any(key in subs for subs in _SUB.values())


def _clean_title(title: str) -> str:
    return title.replace("**", "").replace("__", "").strip().rstrip(":").strip()


def _outline(lines: list[str]) -> _Node:
    # A Markdown README has ATX headings; a page copied from a browser has plain lines where headings were
    # (and "# comment" lines of unfenced code), so there only known section titles count as headings.
    structured = any(
        found is not None and _known(found[1])
        for found in (_heading(line, True) for line in lines if line.startswith("#"))
    )
    root = _Node("", 0)
    stack = [root]
    fence = False
    for line in lines:
        if line.lstrip().startswith("```"):
            fence = not fence
        found = None if fence else _heading(line, structured)
        if found is None:
            stack[-1].lines.append(line)
            continue
        level, title = found
        while stack[-1].level >= level:
            stack.pop()
        node = _Node(title, level)
        stack[-1].children.append(node)
        stack.append(node)
    return root


def _preamble(root: _Node, data: dict[str, Any]) -> str | None:
    """Take title, subtitle, version line and warnings from the text before the first section."""
    title = None
    if root.children and root.children[0].level == 1:
        first = root.children.pop(0)
        title = first.title
        root.lines.extend(first.lines)
        root.children[0:0] = first.children
    rest: list[str] = []
    for line in root.lines:
        stripped = line.strip()
        plain = _strip_tags(stripped)
        if stripped.startswith("<h1") and not title:
            title = plain
        elif stripped.startswith("<h2") and "subtitle" not in data:
            data["subtitle"] = plain
        elif stripped.startswith("<"):
            continue
        elif plain.startswith("Version ") and "/" in plain and "card_version" not in data:
            version, _, date = plain[len("Version ") :].partition("/")
            data["card_version"], data["card_date"] = version.strip(), date.strip()
        elif plain.upper().startswith("WARNING"):
            data.setdefault("notices", []).append(plain.split(":", 1)[-1].strip())
        else:
            rest.append(line)
    content = _content(_Node("", 0, rest))
    if content is not None:
        data.setdefault("extra", {})["Introduction"] = content
    return title


def _strip_tags(text: str) -> str:
    out, inside = [], False
    for ch in text:
        if ch == "<":
            inside = True
        elif ch == ">":
            inside = False
        elif not inside:
            out.append(ch)
    return "".join(out).replace("*", "").strip()


def _place(node: _Node, data: dict[str, Any], warnings: list[str]) -> None:
    key = _TOP.get(node.title.lower())
    if key == "":
        return
    if key is None or key in data:
        content = _content(node)
        if content is not None:
            data.setdefault("extra", {})[node.title] = content
        return
    props = card_schema()["properties"][key]
    if key == "summary":
        text = _text_only(node)
        if text is not None:
            data[key] = text
        else:
            data.setdefault("extra", {})[node.title] = _content(node)
        return
    section: dict[str, Any] = {}
    subs = _SUB.get(key, {})
    intro = _Node("", node.level, node.lines)
    special = {
        "model_details": _model_details,
        "citation": _citation,
        "glossary": _glossary,
        "authors": _authors,
    }.get(key)
    if special is not None:
        special(intro, section)
    else:
        _intro(intro, section, props)
    later = _children(node.children, section, subs, props, data)
    if section:
        data[key] = section
    else:
        warnings.append(f"section '{node.title}' is empty and was left out")
    for child in later:
        _place(child, data, warnings)


def _children(
    children: list[_Node],
    section: dict[str, Any],
    subs: Mapping[str, str],
    props: Mapping[str, Any],
    data: dict[str, Any],
) -> list[_Node]:
    """Map sub-headings to the section's keys, looking through headings that only group them.

    Returns the sub-headings that name a top-level section the card does not have yet (the BLOOM cards put
    Recommendations under Bias, Risks and Limitations); the caller places them after this section.
    """
    later: list[_Node] = []
    for child in children:
        sub = subs.get(child.title.lower())
        if sub == "":
            _model_details(_Node("", child.level, child.lines), section)
            later.extend(_children(child.children, section, subs, props, data))
            continue
        top = _TOP.get(child.title.lower())
        if sub is None and top and top not in data and top not in [_TOP.get(n.title.lower()) for n in later]:
            later.append(child)
            continue
        grouping = bool(child.children) and any(subs.get(g.title.lower()) for g in child.children)
        if grouping:
            lead = _Node(child.title, child.level, child.lines)
            if not (sub and sub not in section and _fits(lead, props["properties"][sub], section, sub)):
                _keep(lead, section)
            later.extend(_children(child.children, section, subs, props, data))
            continue
        if sub and sub not in section and _fits(child, props["properties"][sub], section, sub):
            continue
        _keep(child, section)
    return later


def _keep(node: _Node, section: dict[str, Any]) -> None:
    content = _content(node)
    if content is not None:
        section.setdefault("extra", {})[node.title] = content


def _intro(node: _Node, section: dict[str, Any], props: Mapping[str, Any]) -> None:
    parts = _parts(node.lines)
    if not parts:
        return
    if "text" in props["properties"] and all(kind == "text" for kind, _ in parts):
        section["text"] = "\n\n".join(value for _, value in parts)
    elif "items" in props["properties"] and len(parts) <= 2 and parts[-1][0] == "items":
        if parts[0][0] == "text":
            section["text"] = parts[0][1]
        section["items"] = parts[-1][1]
    else:
        section.setdefault("extra", {})["Overview"] = _block(parts)


def _fits(node: _Node, schema: Mapping[str, Any], section: dict[str, Any], key: str) -> bool:
    """Put ``node`` at ``section[key]`` when its content has the shape that key takes."""
    if node.children:
        return False
    parts = _parts(node.lines)
    if not parts:
        return False
    ref = schema.get("$ref", "")
    if ref.endswith("/facts"):
        facts = _facts(parts)
        if facts is None:
            return False
        section[key] = facts
        return True
    if ref.endswith("/block"):
        section[key] = _block(parts)
        return True
    if schema.get("x-render") == "body":
        if not all(kind == "text" for kind, _ in parts):
            return False
        section[key] = "\n\n".join(v for _, v in parts)
        return True
    section[key] = _prose(parts)
    return True


def _content(node: _Node) -> Any:
    """Content for a custom section: Markdown, a list, a block, a table, or sub-headings → content."""
    parts = _parts(node.lines)
    if not node.children:
        return _prose(parts) if parts else None
    out: dict[str, Any] = {}
    if parts:
        out["Overview"] = _prose(parts)
    for child in node.children:
        content = _content(child)
        if content is not None:
            out[child.title] = content
    return out or None


def _prose(parts: list[tuple[str, Any]]) -> Any:
    if len(parts) == 1 and parts[0][0] in ("text", "items"):
        return parts[0][1]
    if len(parts) == 1 and parts[0][0] == "table":
        return parts[0][1]
    return _block(parts)


def _block(parts: list[tuple[str, Any]]) -> dict[str, Any]:
    block: dict[str, Any] = {}
    for kind, value in parts:
        if kind == "text":
            if "text" not in block and "items" not in block and "tables" not in block:
                block["text"] = value
            elif "note" in block or ("tables" not in block and "items" not in block):
                block.setdefault("text", "")
                target = "note" if "note" in block else "text"
                block[target] = (block[target] + "\n\n" + value).strip()
            else:
                block["note"] = value
        elif kind == "items":
            if "items" in block:
                block["items"].extend(value)
            else:
                block["items"] = value
        elif kind == "table":
            block.setdefault("tables", []).append(value)
        elif kind == "code":
            block.setdefault("code", []).append(value)
    return block


def _text_only(node: _Node) -> str | None:
    parts = _parts(node.lines)
    if node.children or not parts or any(kind != "text" for kind, _ in parts):
        return None
    return "\n\n".join(v for _, v in parts)


def _parts(lines: list[str]) -> list[tuple[str, Any]]:
    """Split Markdown lines into ("text" | "items" | "table" | "code", value) parts, in order."""
    parts: list[tuple[str, Any]] = []
    para: list[str] = []
    i = 0

    def flush() -> None:
        if para:
            text = "\n".join(para).strip()
            if text:
                parts.append(("text", text))
            para.clear()

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            flush()
            language = stripped[3:].strip()
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            code = {"source": "\n".join(lines[i + 1 : j]) or " "}
            if language:
                code = {"language": language, **code}
            parts.append(("code", code))
            i = j + 1
            continue
        if stripped.startswith("|"):
            flush()
            j = i
            while j < len(lines) and lines[j].strip().startswith("|"):
                j += 1
            table = _table(lines[i:j])
            if table is not None:
                if parts and parts[-1][0] == "text" and len(parts[-1][1]) < 200 and "\n" not in parts[-1][1]:
                    table = {"caption": parts.pop()[1], **table}
                parts.append(("table", table))
            else:
                para.extend(lines[i:j])
            i = j
            continue
        bullet = _bullet(line)
        if bullet is not None:
            flush()
            items = []
            while i < len(lines) and _bullet(lines[i]) is not None:
                indent, text = _bullet(lines[i])
                if indent >= 2 and items and isinstance(items[-1], str | dict):
                    last = items[-1] if isinstance(items[-1], dict) else {"text": items[-1], "items": []}
                    last["items"].append(text)
                    items[-1] = last
                else:
                    items.append(text)
                i += 1
            if parts and parts[-1][0] == "items":
                parts[-1][1].extend(items)
            else:
                parts.append(("items", items))
            continue
        if not stripped:
            flush()
        else:
            para.append(stripped)
        i += 1
    flush()
    return parts


def _bullet(line: str) -> tuple[int, str] | None:
    indent = len(line) - len(line.lstrip(" "))
    body = line.lstrip(" ")
    if body.startswith(_BULLETS) and body[2:].strip():
        return indent, body[2:].strip()
    return None


def _cells(line: str) -> list[str]:
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    cells, current, escaped = [], [], False
    for ch in body:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
            current.append(ch)
        elif ch == "|":
            cells.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    cells.append("".join(current).strip())
    return [c.replace("\\|", "|") for c in cells]


def _table(lines: list[str]) -> dict[str, Any] | None:
    if len(lines) < 2 or set(lines[1].replace("|", "").replace(":", "").replace("-", "").strip()):
        return None
    header = _cells(lines[0])
    body = [_cells(line) for line in lines[2:]]
    # Side-by-side tables use a blank column as a gutter; it holds no data.
    gutter = {
        i
        for i, title in enumerate(header)
        if not title and all(i >= len(cells) or not cells[i] for cells in body)
    }
    header = [title for i, title in enumerate(header) if i not in gutter]
    body = [[cell for i, cell in enumerate(cells) if i not in gutter] for cells in body]
    keys: list[str] = []
    for index, title in enumerate(header):
        key = "".join(ch if ch.isalnum() else "_" for ch in title.lower()).strip("_") or f"column_{index + 1}"
        while key in keys:
            key = f"{key}_{index + 1}"
        keys.append(key)
    rows = [
        {key: (cells[i] if i < len(cells) and cells[i] != "" else None) for i, key in enumerate(keys)}
        for cells in body
    ]
    return {"columns": {key: title or key for key, title in zip(keys, header, strict=True)}, "rows": rows}


def _facts(parts: list[tuple[str, Any]]) -> dict[str, Any] | None:
    if len(parts) != 1 or parts[0][0] != "items":
        return None
    facts: dict[str, Any] = {}
    for item in parts[0][1]:
        text = item["text"] if isinstance(item, dict) else item
        label, sep, value = text.replace("**", "").partition(":")
        if not sep:
            return None
        key = "".join(ch if ch.isalnum() else "_" for ch in label.strip().lower()).strip("_")
        if not key or key in facts:
            return None
        subs = item.get("items", []) if isinstance(item, dict) else []
        facts[key] = ([value.strip()] if value.strip() else []) + subs if subs else value.strip()
    return facts


def _model_details(node: _Node, section: dict[str, Any]) -> None:
    parts = _parts(node.lines)
    for kind, value in parts:
        if kind == "items":
            rest = []
            last_key = None
            for item in value:
                text = item["text"] if isinstance(item, dict) else item
                label, sep, fact = text.partition(":**") if text.startswith("**") else ("", "", "")
                label = label.strip("* ").lower()
                key = _FACTS.get(label) if sep else None
                if key and key not in section:
                    fact = fact.strip()
                    if fact and label in _QUALIFIERS:
                        fact = f"{fact} ({_QUALIFIERS[label]})"
                    subs = item.get("items", []) if isinstance(item, dict) else []
                    section[key] = ([fact] if fact else []) + subs if subs or not fact else fact
                    last_key = key
                elif last_key and not sep:
                    # Continuation bullets of the fact above (the BLOOM cards write them unindented).
                    previous = section[last_key]
                    section[last_key] = (previous if isinstance(previous, list) else [previous]) + [text]
                else:
                    rest.append(item)
                    last_key = None
            if rest:
                section.setdefault("extra", {}).setdefault("Details", []).extend(rest)
        elif kind == "text" and "description" not in section:
            section["description"] = value
        else:
            section.setdefault("extra", {})[f"Details {len(section.get('extra', {})) + 1}"] = _prose(
                [(kind, value)]
            )


def _citation(node: _Node, section: dict[str, Any]) -> None:
    for kind, value in _parts(node.lines):
        if kind == "code" and "bibtex" not in section:
            section["bibtex"] = value["source"]
        elif kind == "text" and "text" not in section:
            section["text"] = value
        else:
            section.setdefault("extra", {})[f"Citation {len(section.get('extra', {})) + 1}"] = _prose(
                [(kind, value)]
            )


def _glossary(node: _Node, section: dict[str, Any]) -> None:
    for kind, value in _parts(node.lines):
        terms = _terms(value) if kind == "items" else None
        if terms is not None and "terms" not in section:
            section["terms"] = terms
        elif kind == "text" and "text" not in section:
            section["text"] = value
        else:
            section.setdefault("extra", {})[f"Glossary {len(section.get('extra', {})) + 1}"] = _prose(
                [(kind, value)]
            )


def _terms(items: list[Any]) -> list[dict[str, str]] | None:
    terms = []
    for item in items:
        if not isinstance(item, str):
            return None
        text, anchor = item, None
        if text.startswith('<a name="'):
            anchor, _, text = text[len('<a name="') :].partition('">')
            text = text.replace("</a>", "", 1)
        label, sep, definition = text.partition(":**")
        if not sep or not label.startswith("**") or not definition.strip():
            return None
        term = {"term": label.strip("* "), "definition": definition.strip()}
        if anchor:
            term = {"term": term["term"], "anchor": anchor, "definition": term["definition"]}
        terms.append(term)
    return terms


def _authors(node: _Node, section: dict[str, Any]) -> None:
    for kind, value in _parts(node.lines):
        if kind != "text":
            section.setdefault("extra", {})[f"Authors {len(section.get('extra', {})) + 1}"] = _prose(
                [(kind, value)]
            )
            continue
        for line in value.splitlines():
            if line.count(",") >= 2 and "names" not in section:
                section["names"] = [name.strip() for name in line.split(",") if name.strip()]
            else:
                section["text"] = (section.get("text", "") + "\n" + line).strip()
