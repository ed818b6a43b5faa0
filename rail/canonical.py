"""Canonical JSON: the one byte form rail hashes and signs (audit records, checkpoints, provenance).

Keys sorted, separators ``,`` and ``:`` without spaces, UTF-8 without ``\\u`` escapes, no NaN or Infinity —
so two equal JSON values always give equal bytes, and a hash over the bytes is a hash over the value.
"""

from __future__ import annotations

import json
from typing import Any

from rail.errors import CanonicalJSONError

__all__ = ["canonical_json"]


def canonical_json(obj: Any) -> bytes:
    """Return ``obj`` as canonical JSON bytes; raise CanonicalJSONError for NaN, Infinity or non-JSON types.

    Example::

        canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()
    """
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")
    except ValueError as exc:
        raise CanonicalJSONError(f"value is not representable as canonical JSON: {exc} "
                                 "(scores and durations must be finite numbers)") from exc
    except TypeError as exc:
        raise CanonicalJSONError(f"value holds something JSON cannot represent: {exc}") from exc
