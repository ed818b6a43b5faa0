"""The EU GPAI Code of Practice Model Documentation Form, filled from a card.

Each field takes the card's ``eu.<key>`` value when given, otherwise what the card body already says
(release date, architecture, parameter count, licence …). Fields with neither are listed as not provided.
Audience flags: AIO (AI Office), NCA (national competent authorities), DP (downstream providers);
rail marks DP on the items Annex XII requires providers to give downstream providers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rail.cards.card import CardData
from rail.cards.text import flatten, is_placeholder
from rail.licences import get_licence, known_licences

ALL = ("AIO", "NCA", "DP")
AUTHORITIES = ("AIO", "NCA")

# Parameter-count buckets of the form's "total model size" item, upper bounds exclusive.
SIZE_BUCKETS = (
    (500e6, "1–500M"),
    (5e9, "500M–5B"),
    (15e9, "5–15B"),
    (50e9, "15–50B"),
    (100e9, "50–100B"),
    (500e9, "100–500B"),
    (1e12, "500B–1T"),
)


@dataclass(frozen=True)
class FormField:
    """One item of the form: where it sits, who it is for, and how a card answers it."""

    key: str
    section: str
    label: str
    audience: tuple[str, ...]
    fallback: Callable[[CardData], Any] | None = None


@dataclass(frozen=True)
class FilledField:
    """A form item with the card's answer (``value`` is None when the card does not provide it)."""

    field: FormField
    value: str | None
    origin: str


def _at(*path: str) -> Callable[[CardData], Any]:
    return lambda card: card.get(*path)


def _first(*getters: Callable[[CardData], Any]) -> Callable[[CardData], Any]:
    def pick(card: CardData) -> Any:
        for getter in getters:
            value = getter(card)
            if value is not None and not is_placeholder(value):
                return value
        return None

    return pick


def _model_size(card: CardData) -> str | None:
    total = card.get("technical_specifications", "parameters", "total_parameters")
    if not isinstance(total, int | float) or isinstance(total, bool):
        return None
    for bound, bucket in SIZE_BUCKETS:
        if total < bound:
            return f"{bucket} ({total:,} parameters)"
    return f">1T ({total:,} parameters)"


def _licence_link(card: CardData) -> str | None:
    if card.metadata.get("license_link"):
        return card.metadata["license_link"]
    if card.licence_id in known_licences() and get_licence(str(card.licence_id)).wording != "family":
        return get_licence(str(card.licence_id)).url
    return None


def _acceptable_use(card: CardData) -> str | None:
    if card.licence_id not in known_licences():
        return None
    licence = get_licence(str(card.licence_id))
    if licence.wording == "family":
        link = card.metadata.get("license_link")
        return "The use restrictions of the Open RAIL licence distributed with the model" + (
            f" ({link})" if link else ""
        )
    return f"The use restrictions of the {licence.name}, Attachment A ({licence.url})"


def _licence(card: CardData) -> str | None:
    return card.licence_id


S1, S2, S3 = "1. General information", "2. Model properties", "3. Methods of distribution and licences"
S4, S5, S6 = "4. Use", "5. Training process", "6. Data used for training, testing and validation"
S7, S8, S0 = "7. Computational resources", "8. Energy consumption", "Document"

FIELDS: tuple[FormField, ...] = (
    FormField("last_updated", S0, "Date last updated", ALL, _at("card_date")),
    FormField("document_version", S0, "Document version", ALL, _at("card_version")),
    FormField("provider", S1, "Provider legal name", ALL, _at("model_details", "developed_by")),
    FormField("model_name", S1, "Model name", ALL, _first(_at("metadata", "model_name"), _at("title"))),
    FormField("model_family", S1, "Model family", ALL),
    FormField("versioned_name", S1, "Versioned model name", ALL, _at("model_details", "version")),
    FormField(
        "model_authenticity",
        S1,
        "Model authenticity (e.g. secure hash of the distributed weights)",
        AUTHORITIES,
    ),
    FormField("release_date", S1, "Release date", ALL, _at("model_details", "release_date")),
    FormField("union_release_date", S1, "Union market release date", ALL),
    FormField(
        "dependencies",
        S1,
        "Model dependencies (base models, or N/A)",
        ALL,
        _first(_at("metadata", "base_model"), _at("model_details", "finetuned_from")),
    ),
    FormField(
        "architecture",
        S2,
        "Architecture (about 20 words)",
        ALL,
        _first(_at("technical_specifications", "architecture"), _at("training_procedure", "model")),
    ),
    FormField(
        "design_specifications",
        S2,
        "Design specifications (about 100 words)",
        ALL,
        _at("technical_specifications", "objective"),
    ),
    FormField("input_modalities", S2, "Input modalities", ALL),
    FormField(
        "max_input_size",
        S2,
        "Maximum input size",
        ALL,
        _at("technical_specifications", "parameters", "sequence_length"),
    ),
    FormField("output_modalities", S2, "Output modalities", ALL),
    FormField("max_output_size", S2, "Maximum output size", ALL),
    FormField("model_size", S2, "Total model size", ALL, _model_size),
    FormField("distribution_channels", S3, "Distribution channels", ALL),
    FormField("licence", S3, "Licence", ALL, _licence),
    FormField("licence_link", S3, "Licence link", ALL, _licence_link),
    FormField("licence_category", S3, "Licence category", ALL),
    FormField("additional_assets", S3, "Additional assets and their licences", ALL),
    FormField("acceptable_use_policy", S4, "Acceptable use policy", ALL, _acceptable_use),
    FormField(
        "intended_uses",
        S4,
        "Intended uses",
        ALL,
        _first(_at("uses", "intended_use"), _at("uses", "direct_use")),
    ),
    FormField(
        "ai_system_types",
        S4,
        "Type and nature of AI systems it can be integrated in",
        ALL,
        _at("uses", "downstream_use"),
    ),
    FormField("integration_means", S4, "Technical means for integration", ALL, _at("how_to_use")),
    FormField("required_hardware", S4, "Required hardware", ALL),
    FormField("required_software", S4, "Required software", ALL),
    FormField(
        "training_design",
        S5,
        "Design specifications of the training process",
        AUTHORITIES,
        _first(_at("training_procedure"), _at("technical_specifications", "training")),
    ),
    FormField("training_rationale", S5, "Decision rationale", AUTHORITIES),
    FormField("data_modalities", S6, "Data type / modality", ALL),
    FormField(
        "data_provenance",
        S6,
        "Provenance (web crawl, third-party, user data, public datasets, synthetic, other)",
        ALL,
        _first(_at("training_data", "datasets"), _at("training_data", "overview")),
    ),
    FormField("data_acquisition", S6, "How the data was obtained and selected", AUTHORITIES),
    FormField("data_points", S6, "Number of data points", AUTHORITIES),
    FormField(
        "data_scope",
        S6,
        "Scope and main characteristics",
        AUTHORITIES,
        _first(_at("training_data", "overview", "items"), _at("training_data", "languages", "text")),
    ),
    FormField("data_curation", S6, "Curation methodologies", ALL, _at("training_data", "preprocessing")),
    FormField("unsuitable_sources_measures", S6, "Measures to detect unsuitable data sources", AUTHORITIES),
    FormField("bias_measures", S6, "Measures to detect identifiable biases", AUTHORITIES),
    FormField(
        "training_time",
        S7,
        "Training time",
        AUTHORITIES,
        _first(
            _at("technical_specifications", "training", "dates"), _at("environmental_impact", "hours_used")
        ),
    ),
    FormField("training_compute", S7, "Amount of computation used for training", AUTHORITIES),
    FormField("compute_methodology", S7, "Measurement methodology (computation)", AUTHORITIES),
    FormField(
        "training_energy",
        S8,
        "Energy used for training",
        AUTHORITIES,
        _at("environmental_impact", "electricity_used"),
    ),
    FormField("energy_methodology", S8, "Measurement methodology (energy)", AUTHORITIES),
    FormField("inference_compute", S8, "Benchmarked computation used for inference", AUTHORITIES),
)


def fill_form(card: CardData) -> tuple[FilledField, ...]:
    """Answer every form item from ``card``: its ``eu`` value, else what the body says, else None."""
    eu = card.data.get("eu") or {}
    filled = []
    for item in FIELDS:
        value, origin = eu.get(item.key), f"eu.{item.key}"
        if value is None or is_placeholder(value):
            value = item.fallback(card) if item.fallback else None
            origin = "card body" if value is not None else ""
        if value is None or is_placeholder(value):
            filled.append(FilledField(item, None, ""))
        else:
            filled.append(FilledField(item, flatten(value), origin))
    return tuple(filled)


def missing_fields(card: CardData) -> tuple[FormField, ...]:
    """Return the form items the card does not provide yet."""
    return tuple(f.field for f in fill_form(card) if f.value is None)
