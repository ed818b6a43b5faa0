"""Merge evaluation results from a JSON file (``eval-results.schema.json``) into a card's ``model-index``."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from rail.cards.card import CardData, card_from_mapping
from rail.errors import ConfigError
from rail.yamlio import load_schema, load_yaml_text, validate

RESULTS_SCHEMA = "eval-results.schema.json"


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and validate an evaluation results file; raise ConfigError naming the file, path and line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", source=str(p), hint="check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read file: {exc}", source=str(p)) from None
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"not valid JSON: {exc.msg}",
            source=str(p),
            line=exc.lineno,
            hint="check the brackets and commas on that line",
        ) from None
    # JSON is YAML; reading it through rail's YAML loader gives the line of every key for error messages.
    doc = load_yaml_text(text, str(p))
    validate(doc, load_schema(RESULTS_SCHEMA), "evaluation results file")
    return doc.data


def _key(result: dict[str, Any]) -> tuple[Any, ...]:
    task, dataset = result["task"], result["dataset"]
    return (
        task["type"],
        task.get("name"),
        dataset["type"],
        dataset["name"],
        dataset.get("config"),
        dataset.get("split"),
        dataset.get("revision"),
    )


def merge_results(card: CardData, results: dict[str, Any]) -> CardData:
    """Return ``card`` with ``results`` merged into its model-index.

    A metric with the same type (and name) for the same task and dataset is replaced; new metrics,
    datasets and tasks are added after the existing ones. The entry is ``results["model_name"]``, else the
    card's first model-index entry, else its title.
    """
    data = copy.deepcopy(dict(card.data))
    metadata = data["metadata"]
    index = metadata.setdefault("model-index", [])
    name = results.get("model_name") or (index[0]["name"] if index else card.title)
    entry = next((e for e in index if e["name"] == name), None)
    if entry is None:
        entry = {"name": name, "results": []}
        index.append(entry)
    for new in results["results"]:
        incoming = _to_model_index(new)
        existing = next((r for r in entry["results"] if _key(r) == _key(incoming)), None)
        if existing is None:
            entry["results"].append(incoming)
            continue
        for metric in incoming["metrics"]:
            same = [
                i
                for i, m in enumerate(existing["metrics"])
                if (m["type"], m.get("name")) == (metric["type"], metric.get("name"))
            ]
            if same:
                existing["metrics"][same[0]] = metric
            else:
                existing["metrics"].append(metric)
        if "source" in incoming:
            existing["source"] = incoming["source"]
    return card_from_mapping(data, card.source)


def _to_model_index(result: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "task": dict(result["task"]),
        "dataset": dict(result["dataset"]),
        "metrics": [dict(m) for m in result["metrics"]],
    }
    if "source" in result:
        out["source"] = dict(result["source"])
    return out
