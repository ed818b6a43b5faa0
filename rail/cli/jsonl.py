"""JSON-lines input for the batch commands: ``rail check --jsonl`` and ``rail generate --jsonl``."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from rail.errors import ConfigError

_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_lone_surrogate(obj: Any) -> bool:
    """Whether a decoded JSON value holds a string with a lone surrogate (``"\\ud800"``), not valid UTF-8."""
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return True
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def read_objects(path: str, example: str) -> list[tuple[int, dict[str, Any]]]:
    """Return ``(line number, object)`` for each non-blank line of ``path`` (``-`` reads stdin).

    The whole input is read before anything is returned, so a bad line stops the command before any
    result is printed. ``example`` is a valid line, shown in the hint of every error.
    """
    source = "<stdin>" if path == "-" else path
    try:
        stream = sys.stdin if path == "-" else open(path, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read JSONL file: {exc.strerror}", source=source) from None
    hint = f"write one object per line, e.g. {example}"
    objects = []
    with stream:
        try:
            for number, line in enumerate(stream, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"line {number} is not valid JSON: {exc.msg}", source=source,
                                      line=number, hint=hint) from None
                if not isinstance(obj, dict):
                    raise ConfigError(f"line {number} is not a JSON object", source=source, line=number,
                                      hint=hint)
                if _has_lone_surrogate(obj):
                    raise ConfigError(f"line {number} has a lone surrogate escape such as \\ud800, which is "
                                      "not a Unicode character", source=source, line=number,
                                      hint="escape characters outside the BMP as a surrogate pair, or write "
                                      "them as UTF-8")
                objects.append((number, obj))
        except UnicodeDecodeError:
            raise ConfigError("not UTF-8 text", source=source, hint="save the file as UTF-8") from None
    return objects
