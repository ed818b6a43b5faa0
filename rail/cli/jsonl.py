"""Input for the commands that read user text: JSON lines (``rail check --jsonl``, ``rail generate --jsonl``)
and a whole text from stdin or a file (``rail check -``, ``rail detect -``).

Both refuse the same things the same way (exit 2): invalid UTF-8 or binary data, endless or oversized input,
JSON nested too deeply, non-finite numbers and lone surrogates.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from rail.errors import ConfigError
from rail.jsonio import iter_lines, loads, read_text


def read_text_input(stream: IO[bytes], source: str = "<stdin>") -> str:
    """Read one text (UTF-8, bounded in size) from ``stream``; ConfigError for binary or oversized input."""
    return read_text(stream, source=source)


def read_objects(path: str, example: str) -> list[tuple[int, dict[str, Any]]]:
    """Return ``(line number, object)`` for each non-blank line of ``path`` (``-`` reads stdin).

    The whole input is read before anything is returned, so a bad line stops the command before any
    result is printed. ``example`` is a valid line, shown in the hint of every error.
    """
    source = "<stdin>" if path == "-" else path
    try:
        stream = sys.stdin.buffer if path == "-" else open(path, "rb")
    except OSError as exc:
        raise ConfigError(f"cannot read JSONL file: {exc.strerror}", source=source) from None
    hint = f"write one object per line, e.g. {example}"
    objects = []
    try:
        for number, line in iter_lines(stream, source=source):
            if not line.strip():
                continue
            obj = loads(line, source=source, line=number, hint=hint)
            if not isinstance(obj, dict):
                raise ConfigError(f"line {number} is not a JSON object", source=source, line=number,
                                  hint=hint)
            objects.append((number, obj))
    finally:
        if path != "-":
            stream.close()
    return objects
