"""Merge evaluation results from a JSON file (``eval-results.schema.json``) into a card's ``model-index``."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rail import jsonio
from rail.cards.card import CardData, card_from_mapping, read_card_file
from rail.errors import ConfigError
from rail.yamlio import YamlDocument, format_path, load_schema, load_yaml_text, validate

RESULTS_SCHEMA = "eval-results.schema.json"


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and validate an evaluation results file; raise ConfigError naming the file, path and line.

    Deep nesting, NaN, Infinity and numbers beyond float range (``1e400``) are refused; a metric value that
    is not a finite number is named by its place and metric type.
    """
    source = str(path)
    text = read_card_file(path, jsonio.MAX_TEXT_BYTES)
    try:
        data = jsonio.loads(text, source=source)
    except ConfigError as exc:
        if "invalid number" in exc.detail:
            _name_non_finite(text, source)
        raise
    # JSON is YAML; reading it through rail's YAML loader gives the line of every key for error messages.
    doc = YamlDocument(data, source, load_yaml_text(text, source).lines)
    validate(doc, load_schema(RESULTS_SCHEMA), "evaluation results file")
    return data


def _name_non_finite(text: str, source: str) -> None:
    """Raise a ConfigError naming the metric (or other place) holding NaN, Infinity or an overflow."""
    try:
        data = json.loads(text, parse_constant=float)
        lines = load_yaml_text(text, source).lines
    except (RecursionError, ValueError, ConfigError):
        return
    for path, value in _numbers(data, ()):
        if math.isfinite(value):
            continue
        metric = _metric(data, path)
        what = f"metric '{metric}'" if metric else "number"
        raise ConfigError(
            f"{what} has the value {value!r}, which is not a finite number",
            source=source,
            path=format_path(path),
            line=lines.get(path) or lines.get(path[:-1]),
            hint="write the metric as a finite number (NaN, Infinity and values beyond ±1.8e308 are "
            "refused), "
            "or leave the metric out",
        )


def _numbers(node: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], float]]:
    if isinstance(node, float):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _numbers(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _numbers(value, (*path, index))


def _metric(data: Any, path: tuple[str | int, ...]) -> str | None:
    if len(path) >= 4 and path[0] == "results" and path[2] == "metrics":
        metric = data["results"][path[1]]["metrics"][path[3]]
        return (
            str(metric.get("name") or metric.get("type") or "") or None if isinstance(metric, dict) else None
        )
    return None


def _key(result: dict[str, Any]) -> tuple[Any, ...]:
    task, dataset = result["task"], result.get("dataset") or {}
    return (
        task["type"],
        task.get("name"),
        dataset.get("type"),
        dataset.get("name"),
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
        metrics = existing.setdefault("metrics", [])
        for metric in incoming["metrics"]:
            same = [
                i
                for i, m in enumerate(metrics)
                if (m["type"], m.get("name")) == (metric["type"], metric.get("name"))
            ]
            if same:
                metrics[same[0]] = metric
            else:
                metrics.append(metric)
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
