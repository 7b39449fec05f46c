"""From a source's own names to the twin's vocabulary: which station, signal, unit and range a source item is.

A vendor's ``Machines/SlotDieCoater_01/Monitoring/WetFilmThickness`` must become ``Coating/Cathode`` +
``WetFilmThickness``: the twin's signal names are the vocabulary its models, SPC and loops use, so a value that does
not land on them is stored and nothing else. Every source kind (OPC UA browse paths and NodeIds, MQTT topics and JSON
paths, Sparkplug B ``edge_node/device/metric`` names) is mapped by the same ordered rules, first match wins, so a line
description reads the same whatever the wire.

A rule's ``match`` is a glob over the item's path (``*`` one level, ``**`` any number of levels, ``?`` one character,
``[...]`` a set) or, when it starts with ``ns=`` / ``nsu=``, an exact NodeId. ``signal`` may use ``{name}`` (the last
path element) and ``{1}``, ``{2}`` ... (what the first, second ... wildcard of any kind matched), so one rule maps a
folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from connectors.settings import SignalRule

__all__ = ["Mapped", "SignalRule", "glob_regex", "matches_any", "resolve"]


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
            out.append("([^/])")
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j]
                out.append("([" + ("^" + re.escape(body[1:]) if body.startswith("!") else re.escape(body)) + "])")
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
