"""Card YAML as data: load it safely, validate it against the shipped schema, write it back in key order."""

from __future__ import annotations

import difflib
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from rail.errors import ConfigError
from rail.jsonio import read_text
from rail.licences import is_rail_licence, known_licences
from rail.yamlio import (
    MAX_BYTES,
    YamlDocument,
    format_path,
    load_schema,
    load_yaml,
    load_yaml_text,
    schema_problems,
)

SCHEMA_NAME = "card.schema.json"

# Keys that are the card's title block and answers, not body sections.
FRONT_KEYS = ("metadata", "title", "subtitle", "card_version", "card_date", "notices", "eu")
# What an imported card (one with `body`) may hold beside it: the rest of its text lives in the body.
BESIDE_BODY = ("metadata", "title", "body", "eu")

_EMPTY_TEXT_HINT = (
    "write the text, or remove the key; a `|` block whose lines are not indented deeper than "
    "its key parses to empty text, so indent the block under the key"
)


@cache
def card_schema() -> Mapping[str, Any]:
    """Return the JSON Schema of card YAML (``rail/data/card.schema.json``)."""
    return load_schema(SCHEMA_NAME)


def _body_keys() -> tuple[str, ...]:
    return tuple(k for k in card_schema()["properties"] if k not in (*FRONT_KEYS, "body", "extra"))


BODY_KEYS: tuple[str, ...] = _body_keys()


@dataclass(frozen=True)
class CardWarning:
    """Something a card keeps but rail does not know or cannot check: where it is, and what to consider."""

    message: str
    source: str
    path: str
    line: int | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = self.source + (f":{self.line}" if self.line else "")
        return f"{where}, at {self.path}: {self.message}" + (f" — {self.hint}" if self.hint else "")

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "message": self.message,
            "source": self.source,
            "path": self.path,
            "line": self.line,
            "hint": self.hint,
        }


@dataclass(frozen=True)
class CardData:
    """A validated model card: ``data`` in the key order of its YAML, where it came from, and its lines.

    ``data`` is the card as written: ``metadata`` (the Hugging Face front matter), ``title``, then either the
    structured body sections or (an imported README) ``body``, the README's Markdown sections in order with
    the field each holds; ``eu`` (documentation form fields) and ``extra`` (custom sections). Treat it as
    read-only. ``warnings`` lists what the card keeps that rail does not know (unknown metadata keys).
    """

    data: Mapping[str, Any]
    source: str = "<card>"
    lines: Mapping[tuple[str | int, ...], int] = field(default_factory=dict, repr=False)
    warnings: tuple[CardWarning, ...] = ()

    @property
    def metadata(self) -> Mapping[str, Any]:
        """The Hugging Face metadata, in the order the card gives it."""
        return self.data["metadata"]

    @property
    def licence_id(self) -> str | None:
        """The hub licence id from the metadata (e.g. ``bigscience-bloom-rail-1.0``), or None."""
        licence = self.metadata.get("license")
        return licence if isinstance(licence, str) else None

    @property
    def title(self) -> str:
        """The card's title."""
        return self.data["title"]

    @property
    def body(self) -> tuple[Mapping[str, Any], ...] | None:
        """An imported card's README sections (``heading``, ``level``, ``field``, ``markdown``), or None."""
        body = self.data.get("body")
        return tuple(body) if body is not None else None

    def get(self, *path: str | int) -> Any:
        """Return the value at ``path`` (e.g. ``get("technical_specifications", "parameters")``), or None.

        Where the card's YAML has no such key, the answer comes from the text that holds the field wherever it
        sits: an imported card's body section (``## Environmental Impact``, facts as ``- **Label:** value``),
        or a custom section with that heading.
        """
        node: Any = self.data
        for part in path:
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                node = None
                break
        if node is not None or not path or path[0] in FRONT_KEYS or path[0] == "body":
            return node
        from rail.cards.fields import extra_value, field_value

        if self.body is not None:
            return field_value(self.body, path)
        return extra_value(self.data, path)


def card_problems(doc: YamlDocument) -> list[ConfigError]:
    """Return every problem of the parsed card ``doc`` (schema, empty texts, body, licence) by line."""
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
    for key, value in doc.data.items():
        if key != "metadata":
            problems.extend(_empty_text(doc, value, (key,)))
    problems.extend(_body_problems(doc))
    metadata = doc.data.get("metadata")
    if "body" not in doc.data and isinstance(metadata, Mapping) and "license" not in metadata:
        # An imported README keeps what it has; a card written for rail states its licence.
        problems.append(
            ConfigError(
                "missing required key 'license'",
                source=doc.source,
                path="metadata",
                line=doc.line_of(["metadata"]),
                hint="add it: the Hub licence id, e.g. bigscience-bloom-rail-1.0",
            )
        )
    problems.extend(_licence_problems(doc))
    problems.sort(key=lambda e: (e.line or 0, e.path or ""))
    return problems


def _empty_text(doc: YamlDocument, node: Any, path: tuple[str | int, ...]) -> Iterator[ConfigError]:
    for where in _empty_strings(node, path):
        if where[0] == "body" and where[-1] == "heading":
            continue  # `#` alone is an empty heading, which Markdown allows
        yield ConfigError(
            "empty text",
            source=doc.source,
            path=format_path(where),
            line=doc.line_of(where),
            hint=_EMPTY_TEXT_HINT,
        )


def _body_problems(doc: YamlDocument) -> Iterator[ConfigError]:
    data = doc.data
    if "body" not in data:
        return
    for key in data:
        if key not in BESIDE_BODY:
            yield ConfigError(
                f"`{key}` beside `body`: an imported card keeps its text in `body` only",
                source=doc.source,
                path=key,
                line=doc.line_of([key]),
                hint=f"move the text into a section of `body` (with `field:` naming what it holds), or drop "
                f"`body` and write structured sections; beside `body` go {', '.join(BESIDE_BODY)}",
            )
    body = data.get("body")
    if not isinstance(body, list):
        return
    from rail.cards.fields import body_fields

    known = sorted(body_fields())
    for index, section in enumerate(body):
        name = section.get("field") if isinstance(section, Mapping) else None
        if isinstance(name, str) and name not in known:
            guess = difflib.get_close_matches(name, known, n=1)
            yield ConfigError(
                f"unknown field '{name}'",
                source=doc.source,
                path=format_path(["body", index, "field"]),
                line=doc.line_of(["body", index, "field"]),
                hint=f"did you mean '{guess[0]}'?"
                if guess
                else "use a section key such as uses or uses.direct_use",
            )


def _licence_problems(doc: YamlDocument) -> Iterator[ConfigError]:
    licence = (
        (doc.data.get("metadata") or {}).get("license")
        if isinstance(doc.data.get("metadata"), Mapping)
        else None
    )
    if is_rail_licence(licence) and licence not in known_licences():
        yield ConfigError(
            f"licence '{licence}' is a RAIL licence whose use restrictions rail does not ship",
            source=doc.source,
            path="metadata.license",
            line=doc.line_of(["metadata", "license"]),
            hint=f"use the Hub id of the licence (one of {', '.join(known_licences())}), or `other` with "
            "`license_name` and `license_link`; rail will not render a use-restricted card without its terms",
        )


def card_warnings(doc: YamlDocument) -> tuple[CardWarning, ...]:
    """Return what ``doc`` keeps that rail does not know: metadata (and widget) keys outside its schema."""
    if not isinstance(doc.data, Mapping):
        return ()
    found = list(_unknown_keys(doc, doc.data, card_schema(), ()))
    found.sort(key=lambda w: (w.line or 0, w.path))
    return tuple(found)


def _unknown_keys(
    doc: YamlDocument, value: Any, schema: Mapping[str, Any], path: tuple[str | int, ...]
) -> Iterator[CardWarning]:
    schema = _resolve(schema)
    if "anyOf" in schema:
        branch = next((b for b in schema["anyOf"] if _fits_type(value, _resolve(b))), None)
        if branch is not None:
            yield from _unknown_keys(doc, value, branch, path)
        return
    if isinstance(value, Mapping):
        props = schema.get("properties", {})
        patterns = tuple(p.lstrip("^") for p in schema.get("patternProperties", {}))
        for key, item in value.items():
            if key in props:
                yield from _unknown_keys(doc, item, props[key], (*path, key))
            elif schema.get("x-unknown-keys") == "warn" and not str(key).startswith(patterns or ("\0",)):
                guess = difflib.get_close_matches(str(key), sorted(props), n=1)
                where = (*path, key)
                yield CardWarning(
                    f"key '{key}' is not one rail knows; it is kept as written",
                    doc.source,
                    format_path(where),
                    doc.line_of(where),
                    f"did you mean '{guess[0]}'?" if guess else None,
                )
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            yield from _unknown_keys(doc, item, schema["items"], (*path, index))


def _resolve(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    return card_schema()["$defs"][ref.rsplit("/", 1)[1]] if ref else schema


def _fits_type(value: Any, schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    if kind is None:
        return True
    kinds = kind if isinstance(kind, list) else [kind]
    checks = {"object": Mapping, "array": list, "string": str}
    return any(isinstance(value, checks[k]) for k in kinds if k in checks)


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
    return CardData(doc.data, doc.source, doc.lines, card_warnings(doc))


def read_card_file(path: str | Path, limit: int = MAX_BYTES) -> str:
    """Read the UTF-8 text file at ``path``, refusing more than ``limit`` bytes while reading.

    READMEs and results files are read here (card YAML through :func:`rail.yamlio.load_yaml`, which bounds its
    read the same way), so a device or pipe that never ends (``/dev/zero``) is refused after ``limit`` bytes
    instead of being read forever, and binary input is refused with its offset.
    """
    p = Path(path)
    try:
        mode = p.stat().st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError("is a directory, expected a file", source=str(p), hint="name a file")
        with p.open("rb") as handle:
            text = read_text(handle, source=str(p), limit=limit)
    except FileNotFoundError:
        raise ConfigError("file not found", source=str(p), hint="check the path") from None
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", source=str(p)) from None
    except ConfigError as exc:
        if "larger than" in exc.detail:
            raise ConfigError(
                f"file is larger than {limit // (1024 * 1024)} MiB (or never ends)",
                source=str(p),
                hint="rail reads card files of reasonable size only",
            ) from None
        raise
    return text[1:] if text.startswith("\ufeff") else text


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
    """Validate card data built in Python (e.g. by merge-eval) by writing it out and reading it back."""
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
    """Writes mappings in their own order and multi-line text as `|` blocks, Markdown hard breaks included."""

    def analyze_scalar(self, scalar: str) -> yaml.emitter.ScalarAnalysis:
        analysis = super().analyze_scalar(scalar)
        # PyYAML refuses a block for text with spaces before a line end ("  " is a Markdown hard break),
        # although a `|` block holds them exactly; allow it when nothing else stands in the way.
        if "\n" in scalar and not analysis.allow_block and _block_safe(scalar):
            analysis.allow_block = True
        return analysis


def _block_safe(text: str) -> bool:
    """Whether a `|` block holds ``text`` exactly: only characters YAML writes as they are (tabs included)."""
    return all(ch in "\n\t" or " " <= ch <= "~" or _unicode_ok(ch) for ch in text)


def _unicode_ok(ch: str) -> bool:
    return (
        "\xa0" <= ch <= "\ud7ff" or "\ue000" <= ch <= "\ufffd" or ch >= "\U00010000"
    ) and ch not in "\ufeff\u2028\u2029"


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
