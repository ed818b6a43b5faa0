"""The use restrictions of the RAIL licences rail knows, keyed by hub licence id.

Example id: ``bigscience-bloom-rail-1.0``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType

import yaml

from rail.errors import ConfigError
from rail.resources import data_dir


@dataclass(frozen=True)
class Licence:
    """A RAIL licence: id, name, exact use-restriction wording by clause letter, redistribution notice."""

    id: str
    name: str
    date: str
    url: str
    restrictions_intro: str
    restrictions: Mapping[str, str]
    notice: str

    def clause(self, letter: str) -> str:
        """Return the exact wording of restriction ``letter``; raise ConfigError for an unknown letter."""
        try:
            return self.restrictions[letter]
        except KeyError:
            raise ConfigError(f"licence {self.id} has no restriction ({letter})",
                              hint=f"use one of {', '.join(self.restrictions)}") from None


@cache
def _catalogue() -> Mapping[str, Licence]:
    raw = yaml.safe_load((data_dir("rail.data") / "licences.yaml").read_text(encoding="utf-8"))
    return MappingProxyType({
        lid: Licence(id=lid, name=v["name"], date=str(v["date"]), url=v["url"],
                     restrictions_intro=v["restrictions_intro"],
                     restrictions=MappingProxyType(dict(v["restrictions"])), notice=v["notice"])
        for lid, v in raw.items()
    })


def known_licences() -> tuple[str, ...]:
    """Return the ids of the licences whose restrictions rail ships."""
    return tuple(_catalogue())


def get_licence(licence_id: str) -> Licence:
    """Return the licence ``licence_id``; raise ConfigError naming the known ids if it is not one of them."""
    try:
        return _catalogue()[licence_id]
    except KeyError:
        raise ConfigError(f"unknown licence id '{licence_id}'",
                          hint=f"known licences: {', '.join(known_licences())}") from None


def is_rail_licence(licence_id: str | None) -> bool:
    """Whether ``licence_id`` names a RAIL-family licence (use-restricted), known to rail or not."""
    return licence_id is not None and "rail" in licence_id.lower()
