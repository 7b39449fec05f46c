"""The placement rules: where a trace event, prediction or audit goes in the graph, or why it waits in the quarantine.

Why one module: the rules are the genealogy's contract with the line, and an engineer reading a quarantine reason
should find the rule that wrote it here, next to the others. In order, for a trace event: malformed -> quarantined;
seq implausibly far ahead -> held until the line gets there (held.py); a replay -> counted, nothing changes; a
`created` event for an ID that exists, or any other event for one that does not (yet), or inputs of the wrong type
-> quarantined; inputs not created yet -> waiting, placed automatically once they are (a raw material lot is received
on first use instead). Placing an event releases whatever waited for what it created. Predictions and audits wait
for the entity they are about.

`Placer.place` runs on the placer thread only (worker.py) and produces triples; it never writes.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ontology.builder import GraphBuilder, Triple, event_digest, event_ref, polarity_of
from ontology.events import ID_PATTERN, EventError, TraceEvent, parse_event
from ontology.iris import PL
from ontology.quarantine import Entry, Quarantine
from ontology.seqwindow import Seen
from ontology.store.backend import GraphBackend
from ontology.store.config import Counters, StoreConfig
from ontology.store.held import HeldEvents, held_key
from ontology.store.identity import EventIdentity
from ontology.store.index import EntityIndex, entity_key
from ontology.store.seqstate import SeqState


def plain(payload: Any) -> Any:
    """Something JSON can hold, whatever the caller sent (the quarantine keeps it verbatim where possible; a parsed
    trace event as its JSON, so that a release parses it again like any received event)."""
    if isinstance(payload, TraceEvent):
        return payload.to_json()
    try:
        json.dumps(payload, allow_nan=True)
        return payload
    except (TypeError, ValueError):
        return repr(payload)


def _digest(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


@dataclass(eq=False)
class Placer:
    """Applies the rules; the other parts hold the state they read and change."""

    config: StoreConfig
    builder: GraphBuilder
    backend: GraphBackend
    index: EntityIndex
    seqs: SeqState
    identity: EventIdentity
    held: HeldEvents
    quarantine: Quarantine
    counters: Counters
    # a stack's electrode sheets (pyoxigraph IRIs) by "line\0stack id", for the cells assembled from it
    sources: OrderedDict[str, tuple[tuple[Any, ...], tuple[Any, ...]]] = field(default_factory=OrderedDict)

    def place(self, what: str, payload: Any, out: list[Triple]) -> list[Entry]:
        """Place one work item ("event", "prediction", "audit"; an event may be "retry-event" or "recheck-event"),
        adding its triples to `out`; returns the quarantine entries it released."""
        mode, _, kind = what.rpartition("-")
        if kind == "event":
            return self._place_event(payload, out, mode or "new")
        if kind == "prediction":
            return self._place_prediction(payload, out)
        if kind == "audit":
            return self._place_audit(payload, out)
        raise ValueError(f"unknown work item {what!r}")

    def _reject(self, reason: str, payload: Any, what: str = "event", waiting_for: list[str] | None = None,
                identity: str | None = None) -> list[Entry]:
        self.quarantine.add(reason, plain(payload), what=what, waiting_for=waiting_for, identity=identity)
        self.counters.quarantined += 1
        return []

    def _place_event(self, raw: Any, out: list[Triple], mode: str) -> list[Entry]:
        """mode: "new" (received now), "retry" (released from the quarantine: judged when received), "recheck" (an
        implausible event the line caught up with: judged now, received before)."""
        if mode == "new":
            self.counters.received += 1
        try:
            event = parse_event(raw)
        except EventError as exc:
            return self._reject(f"malformed: {exc}", raw)
        line = event.line
        digest = event_digest(event)
        identity = f"{line}\x00{event.seq}\x00{digest}"
        released: list[Entry] = []
        if mode != "retry":
            seqs = self.seqs.line(line)
            jump = self.config.max_seq_jump
            reference: int | None = seqs.highest
            if not self.seqs.ready.is_set():  # recounting: the figures of the last batch before the stop, if any
                stale = self.seqs.stale_highest.get(line)
                reference = max(seqs.highest, stale) if stale is not None else None
            if jump and reference is not None and event.seq - reference > jump:
                self.counters.implausible_seq += 1
                at = event.seq - jump
                entry = self.quarantine.add(
                    f"implausible seq: {event.seq} is {event.seq - reference} ahead of the highest seq seen on "
                    f"line {line} ({reference}; max_seq_jump {jump}); held here, placed when the line reaches seq "
                    f"{at}", plain(raw), waiting_for=[held_key(line, at)])
                self.counters.quarantined += 1
                self.held.hold(line, at, entry.qid)
                return []
            seen = self.identity.judge(event, digest)
            if seen is Seen.SAME:
                self.counters.duplicates += 1  # at-least-once delivery: the same event again
                return []
            if seen is Seen.REUSED:
                self.counters.seq_reused += 1
            self.identity.record(event, digest, seen)
            highest = self.seqs.lines[line].highest if line in self.seqs.lines else 0
            released += self.held.release(line, highest, self.quarantine)
        own_key = entity_key(line, event.id)
        known = self.index.lookup(line, event.id)
        if event.kind == "created":
            if known is not None:
                if known[0] != event.type:
                    return released + self._reject(
                        f"duplicate ID with conflicting type: {event.id} is already a {known[0]} (created by event "
                        f"{known[1]}), this event says {event.type}", raw, identity=identity)
                return released + self._reject(f"duplicate ID: {event.id} ({event.type}) was already created by "
                                               f"event {known[1]}", raw, identity=identity)
        elif known is None:
            return released + self._reject(f"unknown ID {event.id}: a '{event.kind}' event needs the {event.type} to "
                                           "exist; placed automatically when it is created", raw,
                                           waiting_for=[own_key], identity=identity)
        elif known[0] != event.type:
            return released + self._reject(f"conflicting type: {event.id} is a {known[0]}, this event says "
                                           f"{event.type}", raw, identity=identity)
        missing: list[str] = []
        received: list[str] = []
        for used in event.inputs:
            found = self.index.lookup(line, used.id)
            if found is None:
                if used.type == "RawMaterialLot":
                    received.append(used.id)
                else:
                    missing.append(used.id)
            elif found[0] != used.type:
                return released + self._reject(f"conflicting input type: {used.id} is a {found[0]}, the event lists "
                                               f"it as {used.type}", raw, identity=identity)
        if missing:
            return released + self._reject(f"unknown input ID(s) {', '.join(missing)}: placed automatically when they "
                                           "are created", raw, waiting_for=[entity_key(line, m) for m in missing],
                                           identity=identity)
        for lot in dict.fromkeys(received):
            out += self.builder.received_lot_triples(line, lot, event.time)
            self.index.add_entity(entity_key(line, lot), ("RawMaterialLot", 0))
        variant = self.identity.variant(event, digest)
        producers = {used.id: self._producer(line, used.id) for used in event.inputs}
        sources = self._cell_sources(event) if event.type == "Cell" and event.kind == "created" else None
        out += self.builder.event_triples(event, producers, sources, digest=digest, variant=variant)
        self.counters.placed += 1
        self.index.lines.add(line)
        if event.kind == "created":
            self.index.add_entity(own_key, (event.type, event_ref(event.seq, variant)))
            if event.type == "CellStack":
                self._remember_sources(line, event)
            released += self.quarantine.release_waiting(own_key)
            released += self.quarantine.release_waiting(entity_key("*", event.id))
        for lot in received:
            released += self.quarantine.release_waiting(entity_key(line, lot))
        return released

    def _producer(self, line: str, entity_id: str) -> Any:
        found = self.index.lookup(line, entity_id)
        if found is None:
            return None
        entity_type, ref = found
        if ref == 0:
            return self.builder.receiving_node(line, entity_id)
        if entity_type == "FormationRun":
            return self.builder.entity_node(line, entity_id)
        return self.builder.process_node(line, ref)

    def _remember_sources(self, line: str, event: TraceEvent) -> None:
        pos = tuple(self.builder.entity_node(line, i.id) for i in event.inputs
                    if i.type == "ElectrodeSheet" and polarity_of(i.id) == "positive")
        neg = tuple(self.builder.entity_node(line, i.id) for i in event.inputs
                    if i.type == "ElectrodeSheet" and polarity_of(i.id) == "negative")
        self.sources[entity_key(line, event.id)] = (pos, neg)
        while len(self.sources) > self.config.source_cache:
            self.sources.popitem(last=False)

    def _cell_sources(self, event: TraceEvent) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        pos: list[Any] = []
        neg: list[Any] = []
        for used in event.inputs:
            if used.type == "ElectrodeSheet":
                side = pos if polarity_of(used.id) == "positive" else neg
                side.append(self.builder.entity_node(event.line, used.id))
            if used.type != "CellStack":
                continue
            cached = self.sources.get(entity_key(event.line, used.id))
            if cached is None:
                stack = self.builder.entity(event.line, used.id)
                stored = self.backend.objects_ox(stack, PL.hasPositiveElectrodeSource, PL.hasNegativeElectrodeSource)
                cached = (stored[0], stored[1])
            pos += cached[0]
            neg += cached[1]
        return tuple(pos), tuple(neg)

    def _place_prediction(self, p: dict[str, Any], out: list[Triple]) -> list[Entry]:
        line = self.index.resolve_line(p["entity_id"], p.get("line"))
        if line is None:
            return self._reject(f"unknown entity {p['entity_id']} for a prediction: placed automatically when it is "
                                "created", p, "prediction", [entity_key(p.get("line") or "*", p["entity_id"])])
        run_key = _digest(p["model_name"], p["model_version"], p["time"], json.dumps(p["outputs"], sort_keys=True))
        out += self.builder.prediction_triples(line, p["entity_id"], p["model_name"], p["model_version"], p["outputs"],
                                               p["std"], datetime.fromisoformat(p["time"]), run_key)
        self.counters.predictions += 1
        return []

    def _place_audit(self, a: dict[str, Any], out: list[Triple]) -> list[Entry]:
        target = a["target"]
        entity = None
        setpoint = target
        line = a.get("line")
        if ID_PATTERN.match(target) and len(target) <= 64:
            resolved = self.index.resolve_line(target, line)
            if resolved is None:
                return self._reject(f"unknown entity {target} for an audit record: placed automatically when it is "
                                    "created", a, "audit", [entity_key(line or "*", target)])
            entity, setpoint, line = target, None, resolved
        line = line or (sorted(self.index.lines)[0] if len(self.index.lines) == 1 else "plant")
        run_key = _digest(target, a["who"], a["when"], json.dumps([a["before"], a["after"]], sort_keys=True))
        out += self.builder.audit_triples(line, entity, setpoint, a["who"], datetime.fromisoformat(a["when"]),
                                          a["before"], a["after"], a["why"], a["model_version"], run_key)
        self.counters.audits += 1
        return []
