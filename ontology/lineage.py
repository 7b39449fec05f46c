"""The lineage walk: from an entity back to the stretches of the coated rolls it was made from, as the events said.

Why beside the graph: the genealogy store places events in the background, in batches, so its graph answers for an
event some milliseconds to seconds after it arrived; a prediction for a cell is made the moment the cell's event
arrives and needs its electrodes' roll stretches then. So the store keeps this bounded in-memory record of what each
created entity was made from, fed as events are handed to it (`GenealogyStore.add_event`), and the twin's predictor
walks it through the store (`GenealogyStore.lineage`); without a genealogy the predictor keeps one of its own. It
records what the line said, before the store judged it, which is what a prediction of the line's product is about.

The walk follows the same rules as the genealogy's queries (ontology/queries/segments.rq): positions on a roll are roll
coordinates, carried unchanged through calendering and slitting (docs/traceability.md), so a stretch named anywhere
on the way (a sheet cut from 6-7 m of a slit coil) is that stretch of the coated roll; raw material lots and slurry
batches are not walked (they precede the coating).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Final

from contract.records import TraceEvent, TraceInput

COATED_ROLL: Final = "CoatedRoll"
NOT_WALKED: Final = frozenset({"RawMaterialLot", "SlurryBatch"})
MAX_IDS: Final = 200_000

Stretch = tuple[str, "float | None", "float | None"]
"""(coated roll ID, from_m, to_m); None: the whole roll as far as the events say."""


class Lineage:
    """Inputs (and numeric step parameters) of the last `max_ids` entities created, per line; thread-safe."""

    def __init__(self, max_ids: int = MAX_IDS) -> None:
        self.max_ids = max_ids
        self._made_from: OrderedDict[tuple[str, str], tuple[str, tuple[TraceInput, ...]]] = OrderedDict()
        self._params: dict[tuple[str, str], dict[str, float]] = {}
        self._lock = threading.Lock()

    def add(self, ev: TraceEvent) -> None:
        """Record a created entity's type, inputs and numeric parameters (other kinds of events change nothing)."""
        if ev.kind != "created":
            return
        key = (ev.line, ev.id)
        with self._lock:
            self._made_from[key] = (ev.type, ev.inputs)
            if ev.parameters:
                self._params[key] = {k: float(v) for k, v in ev.parameters.items()
                                     if isinstance(v, (int, float)) and not isinstance(v, bool)}
            while len(self._made_from) > self.max_ids:
                old, _ = self._made_from.popitem(last=False)
                self._params.pop(old, None)

    def parameters(self, line: str, entity_id: str) -> Mapping[str, float]:
        """The numeric parameters of the step that created the entity ({} if unknown or none)."""
        return self._params.get((line, entity_id), {})

    def __len__(self) -> int:
        return len(self._made_from)

    def coated_stretches(self, line: str, entity_id: str, depth: int = 8) -> list[Stretch]:
        """(coated roll ID, from_m, to_m) of every coated roll reached from the entity within `depth` steps back,
        each with the narrowest stretch named on the way (positions are carried unchanged, so a sheet cut from 4-6 m
        of a coil slit from the whole 0-10 m of a roll is 4-6 m of that roll, not 0-10 m)."""
        out: list[Stretch] = []
        made_from = self._made_from

        def walk(eid: str, etype: str | None, a: float | None, b: float | None, d: int) -> None:
            if etype == COATED_ROLL:
                out.append((eid, a, b))
                return
            if d == 0:
                return
            found = made_from.get((line, eid))
            for p in found[1] if found is not None else ():
                if p.type in NOT_WALKED:
                    continue
                walk(p.id, p.type, *_narrowest(a, b, p.from_m, p.to_m), d - 1)

        root = made_from.get((line, entity_id))
        walk(entity_id, root[0] if root is not None else None, None, None, depth)
        return out


def _narrowest(a: float | None, b: float | None, from_m: float | None,
               to_m: float | None) -> tuple[float | None, float | None]:
    """The stretch named further down (a, b) within the one an input names (from_m, to_m): their intersection. An
    empty intersection (events that contradict each other) keeps the stretch named further down."""
    lo = from_m if a is None else a if from_m is None else max(a, from_m)
    hi = to_m if b is None else b if to_m is None else min(b, to_m)
    if lo is not None and hi is not None and lo >= hi:
        return a if a is not None else from_m, b if b is not None else to_m
    return lo, hi
