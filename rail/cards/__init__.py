"""Model cards as YAML: validate, render (Markdown, HTML, EU form), lint, import READMEs, merge evals."""

from rail.cards.card import (
    CardData,
    CardWarning,
    card_from_mapping,
    card_problems,
    card_schema,
    dump_card,
    load_card,
    load_card_text,
    read_card_file,
    write_atomically,
)
from rail.cards.eu_form import FIELDS, FilledField, FormField, fill_form, missing_fields
from rail.cards.evals import load_results, merge_results
from rail.cards.importer import (
    FrontMatter,
    ImportResult,
    import_card_file,
    import_card_text,
    split_front_matter,
)
from rail.cards.lint import FRAMEWORKS, LintItem, LintReport, lint_card
from rail.cards.render import Format, Rendered, card_licence, carries_licence, front_matter, render_card

__all__ = [
    "FIELDS",
    "FRAMEWORKS",
    "CardData",
    "CardWarning",
    "FilledField",
    "FormField",
    "Format",
    "FrontMatter",
    "ImportResult",
    "LintItem",
    "LintReport",
    "Rendered",
    "card_from_mapping",
    "card_licence",
    "card_problems",
    "card_schema",
    "carries_licence",
    "dump_card",
    "fill_form",
    "front_matter",
    "import_card_file",
    "import_card_text",
    "lint_card",
    "load_card",
    "load_card_text",
    "load_results",
    "merge_results",
    "missing_fields",
    "read_card_file",
    "render_card",
    "split_front_matter",
    "write_atomically",
]
