"""Turn one checked trace event into RDF triples (pure: no store, no I/O).

Instance IRIs are minted from the trace IDs under a configurable base, percent-encoded so that no ID, station or
equipment name can escape its path segment. Every instance carries its project class *and* the BattINFO / EMMO
classes directly above it, so genealogy queries need no reasoner (ontologies.md section 8). Raw samples are never
copied into the graph: a step points at the InfluxDB series (measurement = station, tag line) and its time window.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib import resources
from typing import Any, Final
from urllib.parse import quote

from rdflib import RDF, RDFS, XSD, Graph, Literal, URIRef

from ontology import iris
from ontology.events import Input, TraceEvent
from ontology.iris import EMMO, PL

Triple = tuple[URIRef, URIRef, URIRef | Literal]

_STAT_SET: Final = frozenset(iris.STATISTICS)
# Steps implied by the type when an event names none (README: lots are "received", formation runs come from Formation).
_DEFAULT_STEP: Final = {"RawMaterialLot": "Receiving", "FormationRun": "Formation"}


@lru_cache(maxsize=1)
def vocabulary() -> Graph:
    """The project TBox (ontology/vocab.ttl), parsed once."""
    graph = Graph()
    graph.parse(source=str(resources.files("ontology") / "vocab.ttl"), format="turtle")
    return graph


@lru_cache(maxsize=None)
def types_of(cls: URIRef) -> tuple[URIRef, ...]:
    """The class and all its superclasses known to the vocabulary (project classes plus their external parents)."""
    graph = vocabulary()
    seen: list[URIRef] = []
    todo = [cls]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.append(current)
        if str(current).startswith(str(PL)):
            todo.extend(o for o in graph.objects(current, RDFS.subClassOf) if isinstance(o, URIRef))
    return tuple(seen)


def split_key(key: str) -> tuple[str, str | None, str | None]:
    """`mass_loading_mg_cm2_mean` -> ("mass_loading", "mg_cm2", "mean"): the project's names carry their unit."""
    tokens = key.split("_")
    stat = None
    if len(tokens) > 1 and tokens[-1] in _STAT_SET and "_".join(tokens[-2:]) not in iris.UNIT_SUFFIXES:
        stat = tokens.pop()
    unit = None
    for width in (2, 1):
        if len(tokens) > width and "_".join(tokens[-width:]) in iris.UNIT_SUFFIXES:
            unit = "_".join(tokens[-width:])
            tokens = tokens[:-width]
            break
    if unit and tokens and tokens[-1] == "per":  # e.g. dry_porosity_exp_per_mg_cm2 is 1/(mg/cm2): no EMMO unit
        tokens.pop()
        unit = f"1/{unit}"
    return "_".join(tokens), unit, stat


def quantity_class(stem: str) -> URIRef | None:
    for needle, cls in iris.QUANTITY_BY_STEM:
        if needle in stem:
            return URIRef(cls)
    return None


def unit_iri(unit: str | None) -> URIRef | None:
    if unit is None:
        return iris.UNIT_ONE
    name = iris.UNIT_SUFFIXES.get(unit)
    return EMMO[name] if name else None


def _dt(value: datetime) -> Literal:
    return Literal(value.isoformat().replace("+00:00", "Z"), datatype=XSD.dateTime)


def _num(value: float) -> Literal:
    return Literal(float(value), datatype=XSD.double)


@dataclass(frozen=True)
class GraphBuilder:
    """Mints IRIs under `base_iri` and produces the triples of events, predictions and audits."""

    base_iri: str = iris.DEFAULT_BASE_IRI

    def __post_init__(self) -> None:
        if not self.base_iri.startswith(("http://", "https://", "urn:")) or any(c in self.base_iri for c in "<> \"{}|\\^`"):
            raise ValueError(f"base IRI must be an absolute http(s) or urn IRI without spaces, got {self.base_iri!r}")
        if not self.base_iri.endswith(("/", "#", ":")):
            object.__setattr__(self, "base_iri", self.base_iri + "/")

    # ---------------------------------------------------------------- IRIs
    def entity(self, line: str, entity_id: str) -> URIRef:
        return URIRef(f"{self.base_iri}{quote(line, safe='')}/{quote(entity_id, safe='')}")

    def process(self, line: str, seq: int) -> URIRef:
        return URIRef(f"{self.base_iri}{quote(line, safe='')}/event/{int(seq)}")

    def receiving(self, line: str, lot_id: str) -> URIRef:
        return URIRef(f"{self.base_iri}{quote(line, safe='')}/receiving/{quote(lot_id, safe='')}")

    def equipment(self, line: str, name: str) -> URIRef:
        return URIRef(f"{self.base_iri}{quote(line, safe='')}/equipment/{quote(name, safe='')}")

    def process_of(self, event: TraceEvent) -> URIRef:
        """A formation run *is* its formation-cycling process, so it gets the entity IRI; other steps get the event's."""
        if event.type == "FormationRun" and event.kind == "created":
            return self.entity(event.line, event.id)
        return self.process(event.line, event.seq)

    # ---------------------------------------------------------------- pieces
    def entity_triples(self, line: str, entity_id: str, entity_type: str) -> list[Triple]:
        node = self.entity(line, entity_id)
        cls = PL[iris.ENTITY_CLASSES[entity_type]]
        if entity_type == "ElectrodeSheet":
            polarity = polarity_of(entity_id)
            if polarity == "positive":
                cls = PL.PositiveElectrodeSheet
            elif polarity == "negative":
                cls = PL.NegativeElectrodeSheet
        out: list[Triple] = [(node, RDF.type, t) for t in types_of(cls)]
        out += [
            (node, PL.traceId, Literal(entity_id)),
            (node, PL.line, Literal(line)),
            (node, PL.traceType, Literal(entity_type)),
        ]
        polarity = polarity_of(entity_id)
        if polarity and entity_type not in ("RawMaterialLot", "Cell", "CellStack", "FormationRun"):
            out.append((node, PL.polarity, Literal(polarity)))
        return out

    def received_lot_triples(self, line: str, lot_id: str, time: datetime) -> list[Triple]:
        """A raw-material lot first seen as an input: it entered the line by receiving, which needs no event."""
        lot = self.entity(line, lot_id)
        proc = self.receiving(line, lot_id)
        out = self.entity_triples(line, lot_id, "RawMaterialLot")
        out += [(proc, RDF.type, t) for t in types_of(PL.Receiving)]
        out += [
            (proc, PL.step, Literal("Receiving")),
            (proc, PL.hasOutput, lot),
            (proc, PL.eventTime, _dt(time)),
            (proc, PL.line, Literal(line)),
        ]
        return out

    def quantity_triples(self, owner: URIRef, link: URIRef, node: URIRef, cls: URIRef, key: str, value: Any,
                         *, std: float | None = None) -> list[Triple]:
        stem, unit, stat = split_key(key)
        out: list[Triple] = [(owner, link, node), (node, RDF.type, cls), (node, PL.key, Literal(key))]
        qcls = quantity_class(stem)
        if qcls is not None:
            out.append((node, RDF.type, qcls))
        if stat:
            out.append((node, PL.statistic, Literal(stat)))
        if isinstance(value, bool) or isinstance(value, str):
            out.append((node, RDF.value, Literal(value)))
            return out
        number = URIRef(f"{node}/value")
        out += [
            (node, EMMO.EMMO_8ef3cd6d_ae58_4a8d_9fc0_ad8f49015cd0, number),  # hasNumericalPart
            (number, RDF.type, iris.EMMO_REAL_DATA),
            (number, iris.EMMO_HAS_NUMBER_VALUE, _num(value)),
        ]
        uiri = unit_iri(unit)
        if uiri is not None:
            out.append((node, iris.EMMO_HAS_MEASUREMENT_UNIT, uiri))
        if unit is not None:
            out.append((node, PL.unitCode, Literal(unit)))
        if std is not None:
            out.append((node, PL.standardDeviation, _num(std)))
        return out

    # ---------------------------------------------------------------- events
    def event_triples(
        self,
        event: TraceEvent,
        producers: Mapping[str, URIRef],
        electrode_sources: tuple[Iterable[URIRef], Iterable[URIRef]] | None = None,
    ) -> list[Triple]:
        """The triples of one placed event.

        `producers` maps input IDs to the process that made them (for emmo:precedes between steps);
        `electrode_sources` gives, for a cell, the positive and negative sheets of its stack.
        """
        line = event.line
        node = self.entity(line, event.id)
        proc = self.process_of(event)
        step = event.step or _DEFAULT_STEP.get(event.type, event.kind.capitalize())
        out: list[Triple] = []
        if event.kind == "created":
            out += self.entity_triples(line, event.id, event.type)
            out.append((node, PL.createdBySeq, Literal(event.seq, datatype=XSD.integer)))
        # the step
        step_cls = PL[iris.STEP_CLASSES[step]] if step in iris.STEP_CLASSES else PL.ProcessStep
        classes = set(types_of(step_cls))
        if event.kind == "created" and step in ("Assembly",) and event.type in iris.ASSEMBLY_SUBSTEP_BY_OUTPUT:
            classes.update(types_of(PL[iris.ASSEMBLY_SUBSTEP_BY_OUTPUT[event.type]]))
        if event.type == "FormationRun" and event.kind == "created":
            classes.update(types_of(PL.FormationRun))
        out += [(proc, RDF.type, c) for c in sorted(classes)]
        out += [
            (proc, PL.step, Literal(step)),
            (proc, PL.kind, Literal(event.kind)),
            (proc, PL.seq, Literal(event.seq, datatype=XSD.integer)),
            (proc, PL.line, Literal(line)),
            (proc, PL.eventTime, _dt(event.time)),
        ]
        if event.start is not None:
            out.append((proc, PL.startTime, _dt(event.start)))
        if event.end is not None:
            out.append((proc, PL.endTime, _dt(event.end)))
        if event.station:
            out.append((proc, PL.station, Literal(event.station)))
            window = URIRef(f"{proc}/raw")
            out += [
                (proc, PL.hasRawData, window),
                (window, RDF.type, PL.SeriesWindow),
                (window, RDF.type, iris.EMMO_DATASET),
                (window, PL.influxMeasurement, Literal(event.station)),
                (window, PL.line, Literal(line)),
                (window, PL.startTime, _dt(event.start or event.time)),
                (window, PL.endTime, _dt(event.end or event.time)),
            ]
        if event.equipment:
            equipment = self.equipment(line, event.equipment)
            eq_cls = PL[iris.EQUIPMENT_CLASS_BY_STEP[step]] if step in iris.EQUIPMENT_CLASS_BY_STEP else PL.Equipment
            out += [(equipment, RDF.type, t) for t in types_of(eq_cls)]
            out += [(proc, PL.usedEquipment, equipment), (equipment, PL.name, Literal(event.equipment))]
        # what the step worked on
        if event.kind == "created":
            if proc != node:
                out.append((proc, PL.hasOutput, node))
        elif event.kind == "processed":
            out += [(proc, PL.hasInput, node), (proc, PL.hasOutput, node)]
        else:  # consumed
            out += [(proc, PL.hasInput, node), (node, PL.consumedAt, _dt(event.time))]
        positives: list[URIRef] = []
        negatives: list[URIRef] = []
        for i, used in enumerate(event.inputs):
            out += self._input_triples(event, proc, node, i, used, producers)
            if used.type == "ElectrodeSheet":
                (positives if polarity_of(used.id) == "positive" else negatives).append(self.entity(line, used.id))
        if event.kind == "created" and event.type == "CellStack":
            out += [(node, PL.hasPositiveElectrodeSource, s) for s in positives]
            out += [(node, PL.hasNegativeElectrodeSource, s) for s in negatives]
        if event.kind == "created" and event.type == "Cell" and electrode_sources is not None:
            out += [(node, PL.hasPositiveElectrodeSource, s) for s in electrode_sources[0]]
            out += [(node, PL.hasNegativeElectrodeSource, s) for s in electrode_sources[1]]
        if event.kind == "created" and event.type == "RollSegment":
            for used in event.inputs:
                if used.type == "CoatedRoll":
                    roll = self.entity(line, used.id)
                    out += [(node, PL.segmentOf, roll), (roll, PL.hasSegment, node)]
                    if used.from_m is not None and used.to_m is not None:
                        out += [(node, PL.fromM, _num(used.from_m)), (node, PL.toM, _num(used.to_m))]
        if "length_m" in event.properties and not isinstance(event.properties["length_m"], (str, bool)):
            out.append((node, PL.lengthM, _num(float(event.properties["length_m"]))))
        for key, value in event.parameters.items():
            out += self.quantity_triples(proc, PL.hasParameter, URIRef(f"{proc}/parameter/{quote(key, safe='')}"),
                                         PL.ParameterValue, key, value)
        if event.properties:
            measurement = URIRef(f"{proc}/measurement")
            out += [(proc, PL.hasMeasurement, measurement), (measurement, RDF.type, PL.Measurement),
                    (measurement, RDF.type, iris.EMMO.EMMO_463bcfda_867b_41d9_a967_211d4d437cfb),
                    (measurement, PL.hasInput, node)]
            for key, value in event.properties.items():
                out += self.quantity_triples(node, PL.hasMeasured,
                                             URIRef(f"{proc}/property/{quote(key, safe='')}"),
                                             PL.MeasuredValue, key, value)
        return out

    def _input_triples(self, event: TraceEvent, proc: URIRef, node: URIRef, i: int, used: Input,
                       producers: Mapping[str, URIRef]) -> list[Triple]:
        source = self.entity(event.line, used.id)
        out: list[Triple] = [(proc, PL.hasInput, source)]
        if event.kind == "created" and proc != node and event.type != "RollSegment":
            out.append((node, PL.derivedFrom, source))
        producer = producers.get(used.id)
        if producer is not None and producer != proc:
            out.append((producer, PL.precedes, proc))
        if used.from_m is not None and used.to_m is not None:
            usage = URIRef(f"{proc}/input/{i}")
            out += [
                (proc, PL.hasQualifiedInput, usage),
                (usage, RDF.type, PL.InputUsage),
                (usage, PL.usedEntity, source),
                (usage, PL.fromM, _num(used.from_m)),
                (usage, PL.toM, _num(used.to_m)),
            ]
        return out

    # ---------------------------------------------------------------- predictions and audits
    def prediction_triples(self, line: str, entity_id: str, model_name: str, model_version: str,
                           outputs: Mapping[str, float], std: Mapping[str, float], time: datetime,
                           run_key: str) -> list[Triple]:
        entity = self.entity(line, entity_id)
        run = URIRef(f"{entity}/prediction/{quote(run_key, safe='')}")
        out: list[Triple] = [(run, RDF.type, t) for t in types_of(PL.PredictionRun)]
        out += [
            (run, PL.predictionFor, entity),
            (run, PL.modelName, Literal(model_name)),
            (run, PL.modelVersion, Literal(model_version)),
            (run, PL.eventTime, _dt(time)),
            (run, PL.line, Literal(line)),
        ]
        for key, value in outputs.items():
            out += self.quantity_triples(run, PL.hasPredicted, URIRef(f"{run}/output/{quote(key, safe='')}"),
                                         PL.PredictedValue, key, value, std=std.get(key))
        return out

    def audit_triples(self, line: str, target_entity: str | None, setpoint: str | None, who: str, when: datetime,
                      before: Any, after: Any, why: str, model_version: str | None, run_key: str) -> list[Triple]:
        record = URIRef(f"{self.base_iri}{quote(line, safe='')}/audit/{quote(run_key, safe='')}")
        out: list[Triple] = [
            (record, RDF.type, PL.AuditRecord),
            (record, PL.line, Literal(line)),
            (record, PL.who, Literal(who)),
            (record, PL.eventTime, _dt(when)),
            (record, PL.why, Literal(why)),
            (record, PL.before, _json_literal(before)),
            (record, PL.after, _json_literal(after)),
        ]
        if target_entity is not None:
            out.append((record, PL.auditedEntity, self.entity(line, target_entity)))
        if setpoint is not None:
            out.append((record, PL.setpoint, Literal(setpoint)))
        if model_version is not None:
            out.append((record, PL.modelVersion, Literal(model_version)))
        return out


def _json_literal(value: Any) -> Literal:
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
        return Literal(json.dumps(value, sort_keys=True))
    if isinstance(value, (int, float)):
        return _num(float(value))
    return Literal(str(value))


def polarity_of(entity_id: str) -> str | None:
    """`ES-C-000001` -> positive, `CR-A-000002` -> negative (README ID patterns); None when the ID has no code."""
    parts = entity_id.split("-")
    if len(parts) >= 3:
        return iris.POLARITY_BY_CODE.get(parts[1])
    return None
