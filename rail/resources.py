"""Where rail finds the data files it ships: policy packs, card metadata, JSON Schemas."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

# In a wheel the repository folders policies/ and cards/ are installed as the packages rail.packs and
# rail.cardset; an editable install has no such packages, so it reads the folders where they stand.
_REPO_FOLDERS = {"rail.packs": "policies", "rail.cardset": "cards"}


def data_dir(package: str) -> Traversable:
    """Return the packaged data folder ``package``: ``rail.data``, ``rail.packs`` or ``rail.cardset``."""
    try:
        return files(package)
    except ModuleNotFoundError:
        folder = _REPO_FOLDERS.get(package)
        if folder is None:
            raise
        return Path(__file__).resolve().parent.parent / folder


def schema_path(name: str) -> Traversable:
    """Return the packaged JSON Schema called ``name`` (e.g. ``policy.schema.json``)."""
    return data_dir("rail.data") / name
