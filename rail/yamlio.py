"""Safe YAML reading with line numbers, and JSON Schema validation with messages people can act on.

Every YAML file rail reads (policies, deployment declarations, card metadata, settings) goes through
:func:`load_yaml`. It differs from ``yaml.safe_load`` where the difference protects users:

- only ``true``/``false`` are booleans (YAML 1.2), so ``language: no`` stays the string ``"no"``;
- dates stay strings, so a schema that wants a string gets one;
- duplicate keys are an error instead of a silent overwrite;
- size, nesting depth and alias use are bounded, so a hostile document cannot exhaust time or memory;
- the line of every key and item is kept, so validation errors can point at it.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from rail.errors import ConfigError
from rail.resources import schema_path

MAX_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_ALIASES = 64
#: Values (scalars, lists, mappings) one document may hold as written; counted before it is built.
MAX_NODES = 100_000
MAX_EXPANDED_NODES = 250_000

PathKey = tuple[str | int, ...]

# libyaml parses an order of magnitude faster than the pure-Python parser; both build the same nodes.
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _RailLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """SafeLoader with YAML 1.2 booleans and no timestamp conversion."""


_DROPPED_TAGS = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
_RailLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _DROPPED_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_RailLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass(frozen=True)
class YamlDocument:
    """A parsed YAML document: its data, where it came from, and the line of every node."""

    data: Any
    source: str
    lines: Mapping[PathKey, int] = field(default_factory=dict)

    def line_of(self, path: Iterable[str | int]) -> int | None:
        """Return the line of ``path``, or of its nearest ancestor that has one."""
        key = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), None)


def format_path(path: Iterable[str | int]) -> str:
    """Render a document path as ``rules[2].check.kind`` (``<document>`` for the root)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<document>"


def load_yaml_text(text: str, source: str = "<string>") -> YamlDocument:
    """Parse YAML ``text``; raise :class:`ConfigError` naming ``source`` and the line on any problem."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise ConfigError(f"file is larger than {MAX_BYTES // (1024 * 1024)} MiB", source=source,
                          hint="rail reads configuration and card files of reasonable size only")
    if "\x00" in text:
        raise ConfigError("not valid YAML: the file holds NUL bytes", source=source,
                          hint="remove control characters; save the file as plain UTF-8 text")
    _count_nodes(text, source)
    try:
        loader = _RailLoader(text)
    except yaml.YAMLError as exc:  # the reader refuses control characters up front
        raise ConfigError(f"not valid YAML: {exc}", source=source,
                          hint="remove control characters; save the file as plain UTF-8 text") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(None, source, {})
        lines: dict[PathKey, int] = {}
        expanded = _check_node(node, (), lines, source, depth=0, aliases=[0], ancestors=set())
        if expanded > MAX_EXPANDED_NODES:
            raise ConfigError(f"aliases expand the document to {expanded:,} nodes (limit "
                              f"{MAX_EXPANDED_NODES:,})", source=source,
                              hint="expand the aliases by hand; rail limits them to stop expansion bombs")
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ConfigError(f"not valid YAML: {problem}", source=source, line=line,
                          hint="check the indentation and quoting on that line") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", source=source) from None
    except RecursionError:
        raise ConfigError(f"nesting is deeper than {MAX_DEPTH} levels", source=source) from None
    finally:
        loader.dispose()
    return YamlDocument(data, source, lines)


def _count_nodes(text: str, source: str) -> None:
    """Refuse a document with more than MAX_NODES values before building it (building is the slow part)."""
    count = 0
    parser = _RailLoader(text)
    try:
        while parser.check_event():
            event = parser.get_event()
            if isinstance(event, (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent,
                                  yaml.AliasEvent)):
                count += 1
                if count > MAX_NODES:
                    line = event.start_mark.line + 1 if event.start_mark else None
                    raise ConfigError(f"the document holds more than {MAX_NODES:,} values", source=source,
                                      line=line, hint="split it into smaller files; rail reads configuration "
                                      "and card files of reasonable size only")
    except yaml.YAMLError:
        return  # the full parse below reports it with its line
    finally:
        parser.dispose()


def load_yaml(path: str | Path) -> YamlDocument:
    """Read and parse the YAML file at ``path`` (at most MAX_BYTES are read, even from an endless file)."""
    p = Path(path)
    try:
        with p.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError("file not found", source=str(p), hint="check the path") from None
    except IsADirectoryError:
        raise ConfigError("is a directory, expected a YAML file", source=str(p)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", source=str(p)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", source=str(p),
                          hint="save the file as UTF-8") from None
    return load_yaml_text(text, str(p))


def _check_node(node: yaml.Node, path: PathKey, lines: dict[PathKey, int], source: str,
                depth: int, aliases: list[int], ancestors: set[int]) -> int:
    """Check ``node`` and its children; return how many nodes it stands for once aliases are expanded."""
    if depth > MAX_DEPTH:
        raise ConfigError(f"nesting is deeper than {MAX_DEPTH} levels", source=source,
                          line=node.start_mark.line + 1, path=format_path(path))
    lines.setdefault(path, node.start_mark.line + 1)
    if id(node) in ancestors:
        # `a: &a [*a]` builds a structure that contains itself; every walk over it would never end.
        raise ConfigError("an alias refers to a node that contains it (recursive alias)", source=source,
                          line=node.start_mark.line + 1, path=format_path(path),
                          hint="remove the alias or point it at another node")
    if getattr(node, "_rail_seen", False):
        aliases[0] += 1
        if aliases[0] > MAX_ALIASES:
            raise ConfigError(f"more than {MAX_ALIASES} alias references", source=source,
                              line=node.start_mark.line + 1,
                              hint="expand the aliases by hand; rail limits them to stop expansion bombs")
        return int(getattr(node, "_rail_size", 1))
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        setattr(node, "_rail_seen", True)  # noqa: B010 - PyYAML nodes have no slot for it
    ancestors = ancestors | {id(node)}
    size = 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == "<<":
                raise ConfigError("merge keys (<<) are not supported", source=source,
                                  line=key_node.start_mark.line + 1, path=format_path(path),
                                  hint="write the keys out")
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                shown = repr(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "a list or mapping"
                raise ConfigError(f"mapping keys must be text, not {shown}", source=source,
                                  line=key_node.start_mark.line + 1, path=format_path(path),
                                  hint="quote the key, e.g. \"1\": …")
            key = key_node.value
            if key in seen:
                raise ConfigError(f"duplicate key '{key}' (first on line {seen[key]})", source=source,
                                  line=key_node.start_mark.line + 1, path=format_path(path),
                                  hint="remove one of them")
            seen[key] = key_node.start_mark.line + 1
            lines[(*path, key)] = key_node.start_mark.line + 1
            size += 1 + _check_node(value_node, (*path, key), lines, source, depth + 1, aliases, ancestors)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            size += _check_node(item, (*path, index), lines, source, depth + 1, aliases, ancestors)
    node._rail_size = min(size, MAX_EXPANDED_NODES + 1)  # type: ignore[attr-defined]
    return node._rail_size  # type: ignore[attr-defined]


def load_schema(name: str) -> dict[str, Any]:
    """Load a JSON Schema shipped in ``rail/data``."""
    return json.loads(schema_path(name).read_text(encoding="utf-8"))


def schema_problems(doc: YamlDocument, schema: Mapping[str, Any]) -> list[ConfigError]:
    """Return one :class:`ConfigError` per schema violation in ``doc``, ordered by line."""
    validator = jsonschema.Draft202012Validator(schema)
    if doc.data is None and schema.get("type") == "object":
        return [ConfigError("the file is empty (expected a mapping of keys)", source=doc.source, line=1,
                            hint="write the keys the file needs; see README.md for an example")]
    problems = []
    for error in validator.iter_errors(doc.data):
        leaf = _deepest(error)
        path = list(leaf.absolute_path)
        message, hint = _describe(leaf)
        if leaf.validator == "additionalProperties":
            extra = _unknown_keys(leaf)
            if extra:
                path = [*path, extra[0]]
        problems.append(ConfigError(message, source=doc.source, path=format_path(path),
                                    line=doc.line_of(path), hint=hint))
    problems.sort(key=lambda e: (e.line or 0, e.path or ""))
    return problems


def validate(doc: YamlDocument, schema: Mapping[str, Any], what: str) -> None:
    """Raise one :class:`ConfigError` listing every schema problem in ``doc`` (``what``: the file kind)."""
    problems = schema_problems(doc, schema)
    if not problems:
        return
    first = problems[0]
    if len(problems) == 1:
        raise first
    listing = "; ".join(str(p) for p in problems[:20])
    more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
    raise ConfigError(f"{len(problems)} problems in this {what}: {listing}{more}", source=doc.source,
                      line=first.line)


def _deepest(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    # For oneOf/anyOf the most specific sub-error says more than "not valid under any of the given schemas".
    if error.context:
        best = jsonschema.exceptions.best_match(error.context)
        if best is not None and len(best.absolute_path) >= len(error.absolute_path):
            return _deepest(best)
    return error


def _unknown_keys(error: jsonschema.ValidationError) -> list[str]:
    allowed = set(error.schema.get("properties", {}))
    if isinstance(error.instance, Mapping):
        return [k for k in error.instance if k not in allowed]
    return []


def _describe(error: jsonschema.ValidationError) -> tuple[str, str | None]:
    kind = error.validator
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = _unknown_keys(error)
        guess = difflib.get_close_matches(extra[0], allowed, n=1) if extra else []
        hint = f"did you mean '{guess[0]}'?" if guess else f"allowed keys: {', '.join(allowed)}"
        return f"unknown key '{extra[0] if extra else '?'}'", hint
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"missing required key '{missing}'", "add it"
    if kind == "type":
        expected = error.validator_value
        wanted = expected if isinstance(expected, list) else [expected]
        names = [_TYPE_NAMES.get(str(t), str(t)) for t in wanted]
        if error.instance is None:
            return f"expected {' or '.join(names)}, got an empty value", "give it a value"
        got = f"{_json_type(error.instance)} {_short(error.instance)}"
        return f"expected {' or '.join(names)}, got {got}", None
    if kind == "enum":
        return f"{_short(error.instance)} is not one of {', '.join(map(str, error.validator_value))}", None
    if kind == "pattern":
        return f"{_short(error.instance)} does not match the pattern {error.validator_value}", None
    return error.message, None


# JSON Schema's type names in the words of YAML files.
_TYPE_NAMES = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "true or false", "null": "nothing"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
