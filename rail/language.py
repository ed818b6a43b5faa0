"""Detect the language of a prompt or an output, for disclosure wording and the choice of toxicity model."""

from __future__ import annotations

import threading
from typing import Any

#: Below this confidence (normalized probability) a guess is not worth acting on.
MIN_CONFIDENCE = 0.25
#: Fewer letters than this give no reliable signal ("ok", "42", an emoji).
MIN_LETTERS = 3
#: Language identification reads the start of long texts only; more text does not change the answer.
MAX_CHARS = 2000

# py3langid names some Chinese varieties separately; rail speaks of written Chinese as "zh".
_TO_ISO_639_1 = {"wuu": "zh", "yue": "zh", "cmn": "zh", "zho": "zh", "nan": "zh", "hak": "zh"}

_identifier: Any = None
_lock = threading.Lock()


def _get_identifier() -> Any:
    global _identifier
    with _lock:
        if _identifier is None:
            from py3langid.langid import _load_identifier

            _identifier = _load_identifier(norm_probs=True)
    return _identifier


def detect(text: str) -> str | None:
    """Return the ISO 639-1 code of ``text``'s language, or None when the text is too short or unclear.

    >>> detect("Quelle est la capitale de la France ?")
    'fr'
    >>> detect("ok") is None
    True
    """
    sample = text[:MAX_CHARS]
    letters = sum(1 for c in sample if c.isalpha())
    if letters < MIN_LETTERS and not any(_is_cjk(c) for c in sample):
        return None
    code, confidence = _get_identifier().classify(sample)
    code = _TO_ISO_639_1.get(code, code)
    if confidence < MIN_CONFIDENCE or len(code) != 2:
        return None
    return code


def _is_cjk(char: str) -> bool:
    # One CJK ideograph carries a word's worth of signal, so two of them are enough to decide.
    return "\u4e00" <= char <= "\u9fff" or "\u3040" <= char <= "\u30ff" or "\uac00" <= char <= "\ud7af"
