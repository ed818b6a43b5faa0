"""Read JSON and text from users safely: bounded size, bounded nesting, finite numbers, real UTF-8.

Every reader here raises :class:`~rail.errors.ConfigError` naming the source (and line) instead of letting a
RecursionError, a UnicodeDecodeError or an endless read escape.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import IO, Any

from rail.errors import ConfigError

__all__ = ["MAX_DEPTH", "MAX_LINE_BYTES", "MAX_TEXT_BYTES", "iter_lines", "loads", "read_text"]

#: Deeper JSON than this is refused (records, requests and results are a few levels deep).
MAX_DEPTH = 64
#: One JSON line (or one text read from a file or stdin) larger than this is refused.
MAX_LINE_BYTES = 8 * 1024 * 1024
MAX_TEXT_BYTES = 8 * 1024 * 1024

_SURROGATE = re.compile("[\ud800-\udfff]")
_CHUNK = 1 << 16


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text} is too large to represent")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _depth_ok(value: Any) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


def _strings(value: Any) -> Iterator[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def loads(text: str, *, source: str, line: int | None = None, hint: str | None = None) -> Any:
    """Parse one JSON document; refuse NaN/Infinity, numbers beyond float range, lone surrogates and depth.

    >>> loads('{"a": [1, 2.5]}', source="x.json")
    {'a': [1, 2.5]}
    """
    where = f"line {line} " if line is not None else ""
    try:
        value = json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise ConfigError(f"{where}is nested too deeply (more than {MAX_DEPTH} levels)", source=source,
                          line=line, hint=hint) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}is not valid JSON: {exc.msg} (column {exc.colno})", source=source,
                          line=line, hint=hint) from None
    except ValueError as exc:
        raise ConfigError(f"{where}has an invalid number: {exc}", source=source, line=line,
                          hint="write finite numbers; NaN, Infinity and values beyond ±1.8e308 are "
                          "not accepted") from None
    if not _depth_ok(value):
        raise ConfigError(f"{where}is nested too deeply (more than {MAX_DEPTH} levels)", source=source,
                          line=line, hint=hint)
    if any(_SURROGATE.search(s) for s in _strings(value)):
        raise ConfigError(f"{where}has a lone surrogate escape such as \\ud800, which is not a Unicode "
                          "character", source=source, line=line,
                          hint="escape characters outside the BMP as a surrogate pair, or write them "
                          "as UTF-8")
    return value


def _decode(data: bytes, source: str, line: int | None) -> str:
    where = f"line {line} " if line is not None else ""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}is not UTF-8 text (invalid byte at offset {exc.start})", source=source,
                          line=line, hint="give text encoded as UTF-8; binary input is refused") from None
    if "\x00" in text:
        raise ConfigError(f"{where}holds NUL bytes: this is binary data, not text", source=source, line=line,
                          hint="give plain UTF-8 text")
    return text


def read_text(stream: IO[bytes], *, source: str, limit: int = MAX_TEXT_BYTES) -> str:
    """Read all of a binary stream as UTF-8 text, refusing more than ``limit`` bytes while reading."""
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise ConfigError(f"input is larger than {limit:,} bytes", source=source,
                              hint="give a shorter text, or split it into several requests")
        parts.append(chunk)
    return _decode(b"".join(parts), source, None)


def iter_lines(stream: IO[bytes], *, source: str, limit: int = MAX_LINE_BYTES) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, text)`` for each line of a binary stream; a line over ``limit`` bytes stops it.

    The limit holds while reading, so an endless input without newlines (``/dev/zero``) is refused quickly.
    """
    number = 0
    while True:
        raw = stream.readline(limit + 1)
        if not raw:
            return
        number += 1
        if len(raw) > limit and not raw.endswith(b"\n"):
            raise ConfigError(f"line {number} is longer than {limit:,} bytes", source=source, line=number,
                              hint="split the input into shorter lines")
        yield number, _decode(raw, source, number)
