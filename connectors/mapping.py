"""From a source's own names to the twin's vocabulary: which station, signal, unit and range a source item is.

A vendor's ``Machines/SlotDieCoater_01/Monitoring/WetFilmThickness`` must become ``Coating/Cathode`` +
``WetFilmThickness``: the twin's signal names are the vocabulary its models, SPC and loops use, so a value that does
not land on them is stored and nothing else. Every source kind (OPC UA browse paths and NodeIds, MQTT topics and JSON
paths, Sparkplug B ``edge_node/device/metric`` names) is mapped by the same ordered rules, first match wins, so a line
description reads the same whatever the wire.

A rule's ``match`` is a glob over the item's path (``*`` one level, ``**`` any number of levels, ``?`` one character,
``[...]`` a set) or, when it starts with ``ns=`` / ``nsu=``, an exact NodeId. ``signal`` may use ``{name}`` (the last
path element) and ``{1}``, ``{2}`` ... (what the first, second ... wildcard matched), so one rule maps a folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connectors.settings import DeadbandConfig


class SignalRule(BaseModel):
    """One mapping rule of a line description's ``signals:`` list."""

    model_config = ConfigDict(extra="forbid")

    match: str = Field(description='Glob over the item\'s path (e.g. "Machines/SlotDieCoater_01/Monitoring/*", '
                                   '"**/Temperature"), or an exact NodeId ("ns=2;i=1017", "nsu=urn:vendor:coater;i=1017")')
    station: str = Field(description='The twin\'s station (and lane) the item belongs to, e.g. "Coating/Cathode", '
                                     '"DryRoom", "Formation/CH-01"')
    signal: str = Field(default="{name}", description='The twin\'s signal name; "{name}" = the last path element, '
                                                      '"{1}" = what the first wildcard matched')
    unit: str = Field(default="", description="UCUM unit; empty = what the source says (OPC UA EngineeringUnits, the "
                                              "payload's unit field)")
    min: float | None = Field(default=None, description="Lowest physically possible value; null = the source's "
                                                        "EURange low, else the twin's range for the signal name")
    max: float | None = Field(default=None, description="Highest physically possible value; null = the source's "
                                                        "EURange high, else the twin's range for the signal name")
    deadband: DeadbandConfig | None = Field(default=None, description="OPC UA data-change filter; null = the "
                                                                      "source's default")
    sampling_interval_ms: float | None = Field(default=None, ge=0, description="OPC UA sampling interval; null = "
                                                                                 "the source's default")
    ignore: bool = Field(default=False, description="Matching items are not subscribed (noise, diagnostics)")

    @field_validator("match")
    @classmethod
    def _match(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("match must not be empty")
        return v.strip()

    @model_validator(mode="after")
    def _range(self) -> SignalRule:
        if self.min is not None and self.max is not None and not self.min < self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        return self

    @property
    def is_node_id(self) -> bool:
        return self.match.startswith(("ns=", "nsu=", "i=", "s=", "g=", "b="))


@dataclass(frozen=True, slots=True)
class Mapped:
    """Where one source item lands in the twin."""

    station: str
    signal: str
    unit: str  # "" = the source's
    low: float | None
    high: float | None
    rule: SignalRule


@lru_cache(maxsize=1024)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """``*`` = one path level, ``**`` = any number (also none), ``?`` one character, ``[..]`` a set; ``/`` separates
    levels (a ``.`` too, for vendors that name nodes ``Monitoring.WetFilmThickness``: written as is in the glob)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:(.*)/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append("(.*)")
            i += 2
            continue
        if c == "*":
            out.append("([^/]*)")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j]
                out.append("[" + ("^" + re.escape(body[1:]) if body.startswith("!") else re.escape(body)) + "]")
                i = j + 1
                continue
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("^" + "".join(out) + "$")


def _fill(template: str, name: str, groups: Sequence[str | None]) -> str:
    out = template.replace("{name}", name)
    for k, g in enumerate(groups, start=1):
        out = out.replace("{" + str(k) + "}", (g or "").strip("/").replace("/", "."))
    return out


def resolve(rules: Iterable[SignalRule], path: str, node_ids: Sequence[str] = ()) -> Mapped | None:
    """The first rule that matches ``path`` (or, for NodeId rules, one of ``node_ids``: the item's id written with
    its namespace index and with its URI); None when none does or the rule says ``ignore``. ``path`` uses ``/``
    between levels."""
    name = path.rsplit("/", 1)[-1]
    for rule in rules:
        if rule.is_node_id:
            if rule.match not in node_ids:
                continue
            groups: Sequence[str | None] = ()
        else:
            m = glob_regex(rule.match).match(path)
            if m is None:
                continue
            groups = m.groups()
        if rule.ignore:
            return None
        return Mapped(rule.station, _fill(rule.signal, name, groups), rule.unit, rule.min, rule.max, rule)
    return None


def matches_any(rules: Iterable[SignalRule], path: str, node_ids: Sequence[str] = ()) -> bool:
    """Whether some rule (an ``ignore`` one included) names the item."""
    for rule in rules:
        if rule.is_node_id:
            if rule.match in node_ids:
                return True
        elif glob_regex(rule.match).match(path):
            return True
    return False
