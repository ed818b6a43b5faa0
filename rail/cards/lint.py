"""How complete a card is: Hugging Face template sections, Mitchell et al.'s nine sections, the EU form."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rail.cards.card import CardData, card_schema
from rail.cards.eu_form import fill_form
from rail.cards.text import PLACEHOLDER, flatten, is_placeholder

# Each item is satisfied when any of its card paths holds real text (not missing, not only placeholders).
HF_TEMPLATE: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    ("Model Details", (("model_details",),)),
    ("Uses: Direct Use", (("uses", "direct_use"), ("uses", "intended_use"))),
    ("Uses: Downstream Use", (("uses", "downstream_use"),)),
    ("Uses: Out-of-Scope Use", (("uses", "out_of_scope_use"), ("uses", "misuse"))),
    ("Bias, Risks, and Limitations", (("bias_risks_limitations",),)),
    ("Recommendations", (("recommendations",),)),
    ("How to Get Started with the Model", (("how_to_use",),)),
    ("Training Data", (("training_data",),)),
    ("Training Procedure", (("training_procedure",), ("technical_specifications", "training"))),
    (
        "Evaluation: Testing Data, Factors & Metrics",
        (("evaluation", "testing_data"), ("evaluation", "factors"), ("evaluation", "metrics")),
    ),
    ("Evaluation: Results", (("evaluation", "results"), ("metadata", "model-index"))),
    (
        "Environmental Impact",
        (
            ("environmental_impact", "hardware_type"),
            ("environmental_impact", "hours_used"),
            ("environmental_impact", "carbon_emitted"),
            ("environmental_impact", "electricity_used"),
        ),
    ),
    ("Technical Specifications", (("technical_specifications",),)),
    ("Citation", (("citation",),)),
    ("Glossary", (("glossary",),)),
    ("More Information", (("more_information",),)),
    ("Model Card Authors", (("authors",),)),
    ("Model Card Contact", (("contact",),)),
)

MITCHELL: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    ("Model Details", (("model_details",),)),
    ("Intended Use", (("uses", "intended_use"), ("uses", "direct_use"))),
    ("Factors", (("evaluation", "factors"),)),
    ("Metrics", (("evaluation", "metrics"),)),
    ("Evaluation Data", (("evaluation", "testing_data"),)),
    ("Training Data", (("training_data",),)),
    ("Quantitative Analyses", (("evaluation", "results"), ("metadata", "model-index"))),
    ("Ethical Considerations", (("bias_risks_limitations",), ("uses", "misuse"))),
    ("Caveats and Recommendations", (("recommendations",),)),
)

FRAMEWORKS = ("huggingface", "mitchell", "eu-gpai")

# Characters of the value shown either side of a placeholder, so the author can find it in the file.
PLACEHOLDER_CONTEXT = 40


@dataclass(frozen=True)
class LintItem:
    """One expected item: its framework, name, status (ok, missing, placeholder) and where to add it.

    ``paths`` are the card fields that satisfy the item; ``suggestion`` says what to add in the card's own
    terms: YAML keys for a structured card, a README section (and field) for an imported one.
    """

    framework: str
    item: str
    status: str
    paths: tuple[str, ...]
    suggestion: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "framework": self.framework,
            "item": self.item,
            "status": self.status,
            "paths": list(self.paths),
            "add": self.suggestion or ", ".join(self.paths),
        }


@dataclass(frozen=True)
class LintReport:
    """Completeness of one card: items per framework, scores in [0, 1], placeholder texts found."""

    source: str
    items: tuple[LintItem, ...]
    placeholders: tuple[str, ...]

    def score(self, framework: str | None = None) -> float:
        """Share of items satisfied, for one framework or (None) all of them together."""
        chosen = [i for i in self.items if framework is None or i.framework == framework]
        return sum(i.status == "ok" for i in chosen) / len(chosen) if chosen else 1.0

    @property
    def problems(self) -> tuple[LintItem, ...]:
        """The items that are missing or still placeholders."""
        return tuple(i for i in self.items if i.status != "ok")

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form printed by ``rail card lint --json``."""
        return {
            "source": self.source,
            "score": round(self.score(), 4),
            "scores": {f: round(self.score(f), 4) for f in FRAMEWORKS},
            "problems": [i.to_dict() for i in self.problems],
            "placeholders": list(self.placeholders),
        }


def _status(card: CardData, paths: tuple[tuple[str, ...], ...]) -> str:
    values = [card.get(*p) for p in paths]
    if all(v is None for v in values):
        return "missing"
    return "ok" if any(v is not None and not is_placeholder(v) for v in values) else "placeholder"


def _suggestion(card: CardData, paths: tuple[str, ...]) -> str:
    """What to add: YAML keys, or for an imported README a section (with its field) or labelled fact lines."""
    body_paths = [p for p in paths if not p.startswith(("metadata.", "eu."))]
    if card.body is None or not body_paths:
        return ", ".join(paths)
    props = card_schema()["properties"]
    owner, _, sub = body_paths[0].partition(".")
    owner_title = props[owner].get("title", owner)
    sub_props = props[owner].get("properties", {})
    facts = [
        p.partition(".")[2]
        for p in body_paths
        if sub_props.get(p.partition(".")[2], {}).get("x-render") == "fact"
    ]
    if facts and len(facts) == len(body_paths):
        lines = ", ".join(f"'- **{sub_props[f]['title']}:** …'" for f in facts)
        return f"{lines} in a section headed '{owner_title}' (field {owner})"
    heading = sub_props[sub].get("title", sub) if sub else owner_title
    return f"a section headed '{heading}' (field {body_paths[0]})"


def lint_card(card: CardData) -> LintReport:
    """Check ``card`` against the three frameworks; the report lists what is missing or a placeholder.

    Content counts wherever the card holds it: a structured key, an imported README section whose heading
    names the field (at any depth, under any heading), or a custom section with such a heading.
    """
    items: list[LintItem] = []
    for framework, table in (("huggingface", HF_TEMPLATE), ("mitchell", MITCHELL)):
        for name, paths in table:
            dotted = tuple(".".join(p) for p in paths)
            items.append(LintItem(framework, name, _status(card, paths), dotted, _suggestion(card, dotted)))
    for filled in fill_form(card):
        raw = (card.data.get("eu") or {}).get(filled.field.key)
        status = "ok" if filled.value is not None else ("placeholder" if raw is not None else "missing")
        items.append(
            LintItem(
                "eu-gpai",
                f"{filled.field.section} — {filled.field.label}",
                status,
                (f"eu.{filled.field.key}",),
                f"eu.{filled.field.key}",
            )
        )
    return LintReport(card.source, tuple(items), tuple(_placeholder_paths(card.data, ())))


def _placeholder_paths(node: Any, path: tuple[str | int, ...]) -> list[str]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _placeholder_paths(v, (*path, k))]
    if isinstance(node, list):
        if path == ("body",):
            return [p for i, v in enumerate(node) for p in _section_placeholders(v, i)]
        return [p for i, v in enumerate(node) for p in _placeholder_paths(v, (*path, i))]
    text = flatten(node)
    match = PLACEHOLDER.search(text)
    if match is None:
        return []
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    return [f"{where}: {_excerpt(text, match)!r}"]


def _section_placeholders(section: Any, index: int) -> list[str]:
    """Placeholders in an imported README section, named by the section's heading."""
    text = str(section.get("markdown", "")) if isinstance(section, dict) else ""
    match = PLACEHOLDER.search(text)
    if match is None:
        return []
    heading = section.get("heading")
    where = f"body[{index}] (section '{heading}')" if heading else f"body[{index}]"
    return [f"{where}: {_excerpt(text, match)!r}"]


def _excerpt(text: str, match: re.Match[str], width: int = PLACEHOLDER_CONTEXT) -> str:
    """Quote the value on one line, cut to ``width`` characters either side of the placeholder."""
    start = max(0, match.start() - width)
    end = min(len(text), match.end() + width)
    excerpt = " ".join(text[start:end].split())
    return ("…" if start else "") + excerpt + ("…" if end < len(text) else "")
