"""Which card field a heading holds, and what a card says for a field wherever the text sits.

Headings are matched on their visible text, case-insensitively, without numbering, emoji, a trailing colon
or "[optional]" (``## 3. Environmental Impact 🌱`` holds ``environmental_impact``). A sub-heading is matched
against the sub-fields of the nearest section above it that holds a field, then anywhere; a known heading
under a custom one still counts. :func:`field_value` answers ``card.get(...)`` for imported cards from the
Markdown those sections hold, reading ``- **Label:** value`` bullets as facts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from typing import Any

from rail.cards.markdown import heading_line, list_facts, plain_text

# Headings (normalized) → top-level card field. Variants come from the Hugging Face card templates (the
# annotated one, the autotrain/Trainer one), the BLOOM cards and common Hub practice.
TOP_FIELDS: Mapping[str, str] = {
    "model summary": "summary",
    "summary": "summary",
    "tl;dr": "summary",
    "tldr": "summary",
    "model details": "model_details",
    "model description": "model_details",
    "model information": "model_details",
    "uses": "uses",
    "use": "uses",
    "intended use": "uses",
    "intended uses": "uses",
    "intended uses & limitations": "uses",
    "intended uses and limitations": "uses",
    "intended users": "intended_users",
    "bias, risks, and limitations": "bias_risks_limitations",
    "bias, risks and limitations": "bias_risks_limitations",
    "risks and limitations": "bias_risks_limitations",
    "limitations": "bias_risks_limitations",
    "limitations and bias": "bias_risks_limitations",
    "limitations and biases": "bias_risks_limitations",
    "bias and limitations": "bias_risks_limitations",
    "ethical considerations": "bias_risks_limitations",
    "ethical considerations and limitations": "bias_risks_limitations",
    "recommendations": "recommendations",
    "training data": "training_data",
    "training and evaluation data": "training_data",
    "training dataset": "training_data",
    "training": "training_procedure",
    "training details": "training_procedure",
    "training procedure": "training_procedure",
    "evaluation": "evaluation",
    "evaluation results": "evaluation",
    "testing data, factors & metrics": "evaluation",
    "environmental impact": "environmental_impact",
    "carbon footprint": "environmental_impact",
    "technical specifications": "technical_specifications",
    "how to use": "how_to_use",
    "how to get started with the model": "how_to_use",
    "usage": "how_to_use",
    "quickstart": "how_to_use",
    "quick start": "how_to_use",
    "citation": "citation",
    "citation information": "citation",
    "bibtex entry and citation info": "citation",
    "glossary and calculations": "glossary",
    "glossary": "glossary",
    "more information": "more_information",
    "model card authors": "authors",
    "model card contact": "contact",
}

# Sub-headings (normalized) → sub-field, per top-level field.
SUB_FIELDS: Mapping[str, Mapping[str, str]] = {
    "uses": {
        "intended use": "intended_use",
        "direct use": "direct_use",
        "downstream use": "downstream_use",
        "out-of-scope use": "out_of_scope_use",
        "out-of-scope uses": "out_of_scope_use",
        "out of scope use": "out_of_scope_use",
        "misuse": "misuse",
        "misuse and out-of-scope use": "misuse",
        "misuse, malicious use, and out-of-scope use": "misuse",
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
        "speeds, sizes, times": "speeds_sizes_times",
    },
    "training_data": {"preprocessing": "preprocessing", "languages": "languages"},
    "evaluation": {
        "metrics": "metrics",
        "factors": "factors",
        "results": "results",
        "testing data": "testing_data",
        "training results": "results",
    },
    "technical_specifications": {
        "training": "training",
        "tokenization": "tokenization",
        "model architecture": "architecture",
        "model architecture and objective": "architecture",
        "objective": "objective",
        "compute infrastructure": "compute_infrastructure",
    },
}

# Fact labels (normalized to keys) that name a field's key differently.
FACT_ALIASES: Mapping[str, str] = {
    "language_s": "languages",
    "language_s_nlp": "languages",
    "language": "languages",
    "finetuned_from_model": "finetuned_from",
    "fine_tuned_from": "finetuned_from",
    "model_date": "release_date",
    "release_date_estimate": "release_date",
    "licence": "license",
    "send_questions_to": "point_of_contact",
    "carbon_emissions": "carbon_emitted",
    "co2_emissions": "carbon_emitted",
    "hardware": "hardware_type",
    "hours": "hours_used",
    "electricity_usage": "electricity_used",
}
# Labels that qualify their fact: the qualifier stays with the value, so an estimate never reads as firm.
QUALIFIERS: Mapping[str, str] = {"release_date_estimate": "estimate"}


def normalize_heading(heading: str) -> str:
    """Return the matching key of a heading's inline Markdown (visible text, lower case, no decorations)."""
    text = plain_text(heading).lower()
    for marker in ("[optional]", "(optional)"):
        text = text.replace(marker, "")
    text = text.strip().rstrip(":").strip()
    # Leading numbering ("1.", "2.3", "iv)") and symbols (emoji, bullets) are decoration.
    words = text.split()
    while words and (_numbering(words[0]) or not any(ch.isalnum() for ch in words[0])):
        words.pop(0)
    while words and not any(ch.isalnum() for ch in words[-1]):
        words.pop()
    return " ".join(words)


def _numbering(word: str) -> bool:
    core = word.rstrip(".)")
    return bool(core) and core != word and (core.replace(".", "").isdigit() or core in _ROMAN)


_ROMAN = {"i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x"}


def _label_key(label: str) -> str:
    text = plain_text(label).lower().replace("[optional]", "").replace("(optional)", "")
    key = "".join(ch if ch.isalnum() else "_" for ch in text)
    return "_".join(part for part in key.split("_") if part)


def fact_key(label: str) -> str:
    """Return the key of a fact label (``Language(s) (NLP)`` → ``languages``)."""
    key = _label_key(label)
    return FACT_ALIASES.get(key, key)


@cache
def _field_titles() -> Mapping[str, Mapping[str, str]]:
    """Per top-level field: normalized schema title (and key) of each sub-field → sub-field key."""
    from rail.cards.card import card_schema

    out: dict[str, dict[str, str]] = {}
    for key, prop in card_schema()["properties"].items():
        subs: dict[str, str] = {}
        for sub, sub_prop in prop.get("properties", {}).items():
            if sub == "extra":
                continue
            subs[sub] = sub
            title = sub_prop.get("title")
            if title:
                subs[fact_key(title)] = sub
        out[key] = subs
    return out


def body_fields() -> frozenset[str]:
    """Every field a body section may hold: top-level sections and sub-sections (``uses.direct_use``)."""
    from rail.cards.card import BODY_KEYS

    titles = _field_titles()
    fields = set(BODY_KEYS)
    for key in BODY_KEYS:
        fields.update(f"{key}.{sub}" for sub in set(titles.get(key, {}).values()))
    return frozenset(fields)


def heading_field(heading: str, parent: str | None) -> str | None:
    """Return the field a heading holds, given the field of the nearest section above it (or None)."""
    key = normalize_heading(heading)
    top = parent.split(".", 1)[0] if parent else None
    if top and key in SUB_FIELDS.get(top, {}):
        return f"{top}.{SUB_FIELDS[top][key]}"
    if top and key in _field_titles().get(top, {}) and key.replace(" ", "_") != top:
        return f"{top}.{_field_titles()[top][key]}"
    if key in TOP_FIELDS:
        return TOP_FIELDS[key]
    # A sub-field heading on its own (under a custom heading) still counts; under another field it is that
    # field's detail (BLOOM's "Hardware" under "Compute infrastructure"), not a jump to a different section.
    owners = [owner for owner, subs in SUB_FIELDS.items() if key in subs] if parent is None else []
    if len(owners) == 1:
        return f"{owners[0]}.{SUB_FIELDS[owners[0]][key]}"
    return None


def assign_fields(sections: Sequence[tuple[str | None, int]]) -> list[str | None]:
    """Return the field of each (heading, level) in order, nesting sub-headings under their parents."""
    fields: list[str | None] = []
    stack: list[tuple[int, str | None]] = []
    for heading, level in sections:
        if heading is None:
            fields.append(None)
            continue
        while stack and stack[-1][0] >= level:
            stack.pop()
        parent = next((f for _, f in reversed(stack) if f), None)
        field = heading_field(heading, parent)
        if field == parent:
            field = None
        fields.append(field)
        stack.append((level, field))
    return fields


def _subtree(body: Sequence[Mapping[str, Any]], index: int) -> str:
    """The Markdown of section ``index`` with every section nested under it, headings included."""
    level = int(body[index].get("level", 0))
    parts = [str(body[index].get("markdown", ""))]
    for section in body[index + 1 :]:
        if "heading" in section and int(section["level"]) <= level:
            break
        if "heading" in section:
            parts.append(heading_line(int(section["level"]), str(section["heading"])))
        parts.append(str(section.get("markdown", "")))
    return "\n\n".join(p for p in parts if p).strip()


def _texts(body: Sequence[Mapping[str, Any]], field: str) -> list[str]:
    return [text for i, s in enumerate(body) if s.get("field") == field and (text := _subtree(body, i))]


def field_value(body: Sequence[Mapping[str, Any]], path: Sequence[str | int]) -> str | None:
    """Return what the body says for ``path`` (``("environmental_impact", "hours_used")``), or None.

    A path names a section field (its Markdown, sub-sections included; duplicates joined) or a fact of one
    (the value of a ``- **Label:** value`` bullet in it).
    """
    parts = [str(p) for p in path]
    if not parts:
        return None
    if len(parts) >= 2 and (texts := _texts(body, f"{parts[0]}.{parts[1]}")):
        return "\n\n".join(texts) if len(parts) == 2 else _fact(texts, parts[2], parts[1])
    texts = _texts(body, parts[0])
    if not texts:
        return None
    if len(parts) == 1:
        return "\n\n".join(texts)
    return _fact(texts, parts[1], parts[0]) if len(parts) == 2 else None


def _fact(texts: Sequence[str], key: str, owner: str) -> str | None:
    titles = _field_titles().get(owner, {})
    for text in texts:
        for label, value in list_facts(text).items():
            found = titles.get(fact_key(label), fact_key(label))
            if found == key and value:
                qualifier = QUALIFIERS.get(_label_key(label))
                return f"{value} ({qualifier})" if qualifier else value
    return None


def extra_value(data: Mapping[str, Any], path: Sequence[str | int]) -> Any:
    """Return the content of a custom (``extra``) section whose heading holds ``path``'s field, or None."""
    from rail.cards.text import flatten

    wanted = ".".join(str(p) for p in path[:2])
    for heading, content, parent in _extra_sections(data, None):
        field = heading_field(heading, parent)
        if field == wanted and len(path) <= 2:
            return content
        if field == str(path[0]) and len(path) == 1:
            return content
        if field == str(path[0]) and len(path) == 2:
            fact = _fact([flatten(content)], str(path[1]), str(path[0]))
            if fact is not None:
                return fact
    return None


def _extra_sections(node: Mapping[str, Any], parent: str | None) -> Iterator[tuple[str, Any, str | None]]:
    for key, value in node.items():
        if key == "extra" and isinstance(value, Mapping):
            for heading, content in value.items():
                yield str(heading), content, parent
                if isinstance(content, Mapping):
                    yield from _extra_sections(
                        {"extra": content}, heading_field(str(heading), parent) or parent
                    )
        elif isinstance(value, Mapping) and key != "metadata":
            yield from _extra_sections(value, key if parent is None else parent)
