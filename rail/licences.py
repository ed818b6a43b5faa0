"""The RAIL licences rail knows, keyed by Hugging Face Hub licence id, with their exact use restrictions.

Example id: ``bigscience-bloom-rail-1.0``. Each entry says how much rail can state about its restrictions
(:attr:`Licence.wording`): ``exact`` (the licence's own list, word for word), ``family`` (``openrail``: the id
names a family of licences, so there is no one list to state) or ``unavailable`` (the licence has a list,
but rail holds no verified transcription of it). Cards and policies use the same catalogue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType
from typing import Any, Literal

import yaml

from rail.errors import ConfigError
from rail.resources import data_dir

Wording = Literal["exact", "family", "unavailable"]


@dataclass(frozen=True)
class Licence:
    """A RAIL licence: id, name, date, where its wording comes from, its use restrictions and notice.

    ``restrictions`` maps the clause label to its exact text: the licence's letter (``a``…``m``) when it
    letters its list, else the position (``1``…``11``) with ``lettered`` false. It is empty unless
    ``wording`` is ``exact``.
    """

    id: str
    name: str
    date: str | None
    url: str
    source: str
    wording: Wording
    lettered: bool
    restrictions_intro: str
    restrictions: Mapping[str, str]
    notice: str

    def clause(self, letter: str) -> str:
        """Return the exact wording of restriction ``letter``; raise ConfigError for an unknown letter."""
        try:
            return self.restrictions[letter]
        except KeyError:
            known = ", ".join(self.restrictions) or "none: rail states no restrictions for it"
            raise ConfigError(
                f"licence {self.id} has no restriction ({letter})", hint=f"use one of {known}"
            ) from None


def _licence(licence_id: str, entry: Mapping[str, Any]) -> Licence:
    listed = entry["restrictions"]
    lettered = isinstance(listed, Mapping)
    restrictions = dict(listed) if lettered else {str(i): text for i, text in enumerate(listed, 1)}
    return Licence(
        id=licence_id,
        name=entry["name"],
        date=str(entry["date"]) if entry.get("date") else None,
        url=entry["url"],
        source=entry["source"],
        wording=entry["wording"],
        lettered=lettered and bool(restrictions),
        restrictions_intro=entry["restrictions_intro"],
        restrictions=MappingProxyType(restrictions),
        notice=entry["notice"],
    )


@cache
def _catalogue() -> Mapping[str, Licence]:
    raw = yaml.safe_load((data_dir("rail.data") / "licences.yaml").read_text(encoding="utf-8"))
    return MappingProxyType({lid: _licence(lid, entry) for lid, entry in raw.items()})


def known_licences() -> tuple[str, ...]:
    """Return the ids of the licences in rail's catalogue."""
    return tuple(_catalogue())


def get_licence(licence_id: str) -> Licence:
    """Return the licence ``licence_id``; raise ConfigError naming the known ids if it is not one of them."""
    try:
        return _catalogue()[licence_id]
    except KeyError:
        raise ConfigError(
            f"unknown licence id '{licence_id}'", hint=f"known licences: {', '.join(known_licences())}"
        ) from None


def is_rail_licence(licence_id: object) -> bool:
    """Whether ``licence_id`` names a RAIL-family licence (use-restricted), known to rail or not."""
    return isinstance(licence_id, str) and "rail" in licence_id.lower()
