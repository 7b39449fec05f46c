"""Turn one checked trace event into RDF triples (pure: no store, no I/O).

Instance IRIs are minted from the trace IDs under a configurable base, percent-encoded so that no ID, station or
equipment name can escape its path segment. Every instance carries its project class *and* the BattINFO / EMMO
classes directly above it, so genealogy queries need no reasoner (ontologies.md section 8). Raw samples are never
copied into the graph: a step points at the InfluxDB series (measurement = station, tag line) and its time window.

Triples are made of pyoxigraph terms: the production store is Oxigraph, and building its terms directly (constant
IRIs created once, no rdflib term validation, no per-term conversion) is what lets a plant history of 100 000 cells
load in minutes. The rdflib-facing helpers (`types_of`, the IRI minting methods) keep returning rdflib terms for
callers and tests; `to_rdflib` converts a triple for the in-memory and remote backends.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache
from importlib import resources
from typing import Any, Final
from urllib.parse import quote

import pyoxigraph as ox
from rdflib import RDFS, Graph, Literal, URIRef

from ontology import iris
from ontology.events import Input, TraceEvent
from ontology.iris import EMMO, PL

Term = ox.NamedNode | ox.BlankNode | ox.Literal
Triple = tuple[ox.NamedNode | ox.BlankNode, ox.NamedNode, Term]

_STAT_SET: Final = frozenset(iris.STATISTICS)
# Steps implied by the type when an event names none (docs/traceability.md: lots are "received", formation runs come
# from Formation).
_DEFAULT_STEP: Final = {"RawMaterialLot": "Receiving", "FormationRun": "Formation"}

_XSD = "http://www.w3.org/2001/XMLSchema#"
XSD_STRING: Final = ox.NamedNode(_XSD + "string")
XSD_DOUBLE: Final = ox.NamedNode(_XSD + "double")
XSD_INTEGER: Final = ox.NamedNode(_XSD + "integer")
XSD_DATETIME: Final = ox.NamedNode(_XSD + "dateTime")
XSD_BOOLEAN: Final = ox.NamedNode(_XSD + "boolean")
RDF_TYPE: Final = ox.NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#type")
RDF_VALUE: Final = ox.NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#value")


class _OxNamespace:
    """`P.step` -> the pyoxigraph IRI `<vocab#step>`, created once (attribute access afterwards is a dict lookup)."""

    def __init__(self, base: str) -> None:
        self._base = base

    def __getattr__(self, name: str) -> ox.NamedNode:
        if name.startswith("__"):
            raise AttributeError(name)
        node = ox.NamedNode(self._base + name)
        setattr(self, name, node)
        return node

    def __getitem__(self, name: str) -> ox.NamedNode:
        return getattr(self, name)


P: Final = _OxNamespace(str(PL))
E: Final = _OxNamespace(str(EMMO))


@cache
def node(iri: str) -> ox.NamedNode:
    """A constant IRI (class, unit, quantity kind) as a pyoxigraph term, created once."""
    return ox.NamedNode(iri)


@lru_cache(maxsize=1)
def vocabulary() -> Graph:
    """The project TBox (ontology/vocab.ttl), parsed once."""
    graph = Graph()
    graph.parse(source=str(resources.files("ontology") / "vocab.ttl"), format="turtle")
    return graph


@cache
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


@cache
def _types(name: str) -> tuple[ox.NamedNode, ...]:
    """types_of(pl:name) as pyoxigraph terms."""
    return tuple(ox.NamedNode(str(t)) for t in types_of(PL[name]))


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


@lru_cache(maxsize=4096)
def _key_terms(key: str) -> tuple[ox.Literal, ox.NamedNode | None, ox.Literal | None, ox.NamedNode | None,
                                  ox.Literal | None]:
    """(key literal, quantity class, statistic, EMMO unit, unit code) of a parameter/property name, worked out once."""
    stem, unit, stat = split_key(key)
    qcls = quantity_class(stem)
    uiri = unit_iri(unit)
    return (ox.Literal(key), node(str(qcls)) if qcls is not None else None, ox.Literal(stat) if stat else None,
            node(str(uiri)) if uiri is not None else None, ox.Literal(unit) if unit is not None else None)


def _dt(value: datetime) -> ox.Literal:
    return ox.Literal(value.isoformat().replace("+00:00", "Z"), datatype=XSD_DATETIME)


def _num(value: float) -> ox.Literal:
    # the lexical form rdflib writes for Literal(float, datatype=xsd:double): Python's shortest repr
    return ox.Literal(repr(float(value)), datatype=XSD_DOUBLE)


def _int(value: int) -> ox.Literal:
    return ox.Literal(str(int(value)), datatype=XSD_INTEGER)


def _text(value: str | bool) -> ox.Literal:
    if isinstance(value, bool):
        return ox.Literal("true" if value else "false", datatype=XSD_BOOLEAN)
    return ox.Literal(value)


def to_rdflib(term: Term) -> Any:
    """A pyoxigraph term as rdflib writes it (plain literals without an explicit xsd:string, as rdflib compares)."""
    from rdflib import BNode

    if isinstance(term, ox.NamedNode):
        return URIRef(term.value)
    if isinstance(term, ox.BlankNode):
        return BNode(term.value)
    if term.language:
        return Literal(term.value, lang=term.language)
    if term.datatype == XSD_STRING:
        return Literal(term.value)
    return Literal(term.value, datatype=URIRef(term.datatype.value))


def to_ox(term: Any) -> Term:
    """An rdflib term as a pyoxigraph term (the inverse of to_rdflib)."""
    from rdflib import BNode

    if isinstance(term, URIRef):
        return ox.NamedNode(str(term))
    if isinstance(term, BNode):
        return ox.BlankNode(str(term))
    if isinstance(term, Literal):
        if term.language:
            return ox.Literal(str(term), language=term.language)
        return ox.Literal(str(term), datatype=ox.NamedNode(str(term.datatype)) if term.datatype else None)
    raise ValueError(f"not an RDF term: {term!r}")


def vocabulary_triples() -> list[Triple]:
    return [(to_ox(s), to_ox(p), to_ox(o)) for s, p, o in vocabulary()]  # type: ignore[misc]


@dataclass(frozen=True)
class GraphBuilder:
    """Mints IRIs under `base_iri` and produces the triples of events, predictions and audits."""

    base_iri: str = iris.DEFAULT_BASE_IRI

    def __post_init__(self) -> None:
        if (not self.base_iri.startswith(("http://", "https://", "urn:"))
                or any(c in self.base_iri for c in "<> \"{}|\\^`")):
            raise ValueError(f"base IRI must be an absolute http(s) or urn IRI without spaces, got {self.base_iri!r}")
        if not self.base_iri.endswith(("/", "#", ":")):
            object.__setattr__(self, "base_iri", self.base_iri + "/")

    # ---------------------------------------------------------------- IRIs (rdflib, for callers)
    def entity(self, line: str, entity_id: str) -> URIRef:
        return URIRef(self._entity(line, entity_id))

    def process(self, line: str, seq: int | str) -> URIRef:
        return URIRef(self._process(line, seq))

    def receiving(self, line: str, lot_id: str) -> URIRef:
        return URIRef(self._receiving(line, lot_id))

    def equipment(self, line: str, name: str) -> URIRef:
        return URIRef(self._equipment(line, name))

    # ---------------------------------------------------------------- IRIs (text and pyoxigraph, for the triples)
    def _entity(self, line: str, entity_id: str) -> str:
        return f"{self.base_iri}{quote(line, safe='')}/{quote(entity_id, safe='')}"

    def _process(self, line: str, seq: int | str) -> str:
        """`seq` is the event's seq, or `<seq>-<digest>` (event_ref) for an event whose seq another event had taken."""
        part = str(int(seq)) if isinstance(seq, int) else quote(seq, safe="")
        return f"{self.base_iri}{quote(line, safe='')}/event/{part}"

    def _receiving(self, line: str, lot_id: str) -> str:
        return f"{self.base_iri}{quote(line, safe='')}/receiving/{quote(lot_id, safe='')}"

    def _equipment(self, line: str, name: str) -> str:
        return f"{self.base_iri}{quote(line, safe='')}/equipment/{quote(name, safe='')}"

    def entity_node(self, line: str, entity_id: str) -> ox.NamedNode:
        return ox.NamedNode(self._entity(line, entity_id))

    def process_node(self, line: str, seq: int | str) -> ox.NamedNode:
        return ox.NamedNode(self._process(line, seq))

    def receiving_node(self, line: str, lot_id: str) -> ox.NamedNode:
        return ox.NamedNode(self._receiving(line, lot_id))

    def process_of(self, event: TraceEvent, variant: str | None = None) -> ox.NamedNode:
        """A formation run *is* its formation-cycling process, so it gets the entity IRI; other steps get the event's
        (`event/<seq>`, or `event/<seq>-<variant>` when another event had taken that seq: see event_ref)."""
        if event.type == "FormationRun" and event.kind == "created":
            return self.entity_node(event.line, event.id)
        return self.process_node(event.line, event_ref(event.seq, variant))

    # ---------------------------------------------------------------- pieces
    def entity_triples(self, line: str, entity_id: str, entity_type: str,
                       node_: ox.NamedNode | None = None) -> list[Triple]:
        subject = node_ if node_ is not None else self.entity_node(line, entity_id)
        cls = iris.ENTITY_CLASSES[entity_type]
        polarity = polarity_of(entity_id)
        if entity_type == "ElectrodeSheet":
            if polarity == "positive":
                cls = "PositiveElectrodeSheet"
            elif polarity == "negative":
                cls = "NegativeElectrodeSheet"
        out: list[Triple] = [(subject, RDF_TYPE, t) for t in _types(cls)]
        out += [
            (subject, P.traceId, ox.Literal(entity_id)),
            (subject, P.line, ox.Literal(line)),
            (subject, P.traceType, ox.Literal(entity_type)),
        ]
        if polarity and entity_type not in ("RawMaterialLot", "Cell", "CellStack", "FormationRun"):
            out.append((subject, P.polarity, ox.Literal(polarity)))
        return out

    def received_lot_triples(self, line: str, lot_id: str, time: datetime) -> list[Triple]:
        """A raw-material lot first seen as an input: it entered the line by receiving, which needs no event."""
        lot = self.entity_node(line, lot_id)
        proc = self.receiving_node(line, lot_id)
        out = self.entity_triples(line, lot_id, "RawMaterialLot", lot)
        out += [(proc, RDF_TYPE, t) for t in _types("Receiving")]
        out += [
            (proc, P.step, ox.Literal("Receiving")),
            (proc, P.hasOutput, lot),
            (proc, P.eventTime, _dt(time)),
            (proc, P.line, ox.Literal(line)),
        ]
        return out

    def quantity_triples(self, owner: ox.NamedNode, link: ox.NamedNode, node_: ox.NamedNode, cls: ox.NamedNode,
                         key: str, value: Any, *, std: float | None = None) -> list[Triple]:
        key_lit, qcls, stat, uiri, unit = _key_terms(key)
        out: list[Triple] = [(owner, link, node_), (node_, RDF_TYPE, cls), (node_, P.key, key_lit)]
        if qcls is not None:
            out.append((node_, RDF_TYPE, qcls))
        if stat is not None:
            out.append((node_, P.statistic, stat))
        if isinstance(value, (bool, str)):
            out.append((node_, RDF_VALUE, _text(value)))
            return out
        number = ox.NamedNode(node_.value + "/value")
        out += [
            (node_, E.EMMO_8ef3cd6d_ae58_4a8d_9fc0_ad8f49015cd0, number),  # hasNumericalPart
            (number, RDF_TYPE, node(str(iris.EMMO_REAL_DATA))),
            (number, node(str(iris.EMMO_HAS_NUMBER_VALUE)), _num(value)),
        ]
        if uiri is not None:
            out.append((node_, node(str(iris.EMMO_HAS_MEASUREMENT_UNIT)), uiri))
        if unit is not None:
            out.append((node_, P.unitCode, unit))
        if std is not None:
            out.append((node_, P.standardDeviation, _num(std)))
        return out

    # ---------------------------------------------------------------- events
    def event_triples(
        self,
        event: TraceEvent,
        producers: Mapping[str, ox.NamedNode | None],
        electrode_sources: tuple[Iterable[ox.NamedNode], Iterable[ox.NamedNode]] | None = None,
        *,
        digest: str | None = None,
        variant: str | None = None,
    ) -> list[Triple]:
        """The triples of one placed event.

        `producers` maps input IDs to the process that made them (for emmo:precedes between steps);
        `electrode_sources` gives, for a cell, the positive and negative sheets of its stack; `digest` is the event's
        content digest (kept on its step: with line and seq, the event's identity); `variant` names the step
        `event/<seq>-<variant>` instead of `event/<seq>` when another event had already taken the seq.
        """
        line = event.line
        subject = self.entity_node(line, event.id)
        proc = self.process_of(event, variant)
        proc_iri = proc.value
        step = event.step or _DEFAULT_STEP.get(event.type, event.kind.capitalize())
        line_lit = ox.Literal(line)
        out: list[Triple] = []
        if event.kind == "created":
            out += self.entity_triples(line, event.id, event.type, subject)
            out.append((subject, P.createdBySeq, _int(event.seq)))
            if variant is not None and proc != subject:
                out.append((subject, P.createdByEvent, ox.Literal(event_ref(event.seq, variant))))
        # the step
        out += [(proc, RDF_TYPE, c) for c in _step_classes(step, event.kind, event.type)]
        out += [
            (proc, P.step, ox.Literal(step)),
            (proc, P.kind, ox.Literal(event.kind)),
            (proc, P.seq, _int(event.seq)),
            (proc, P.line, line_lit),
            (proc, P.eventTime, _dt(event.time)),
        ]
        if digest is not None:
            out.append((proc, P.eventDigest, ox.Literal(digest)))
        if event.start is not None:
            out.append((proc, P.startTime, _dt(event.start)))
        if event.end is not None:
            out.append((proc, P.endTime, _dt(event.end)))
        if event.station:
            out.append((proc, P.station, ox.Literal(event.station)))
            window = ox.NamedNode(proc_iri + "/raw")
            out += [
                (proc, P.hasRawData, window),
                (window, RDF_TYPE, P.SeriesWindow),
                (window, RDF_TYPE, node(str(iris.EMMO_DATASET))),
                (window, P.influxMeasurement, ox.Literal(event.station)),
                (window, P.line, line_lit),
                (window, P.startTime, _dt(event.start or event.time)),
                (window, P.endTime, _dt(event.end or event.time)),
            ]
        if event.equipment:
            equipment = ox.NamedNode(self._equipment(line, event.equipment))
            out += [(equipment, RDF_TYPE, t) for t in _types(iris.EQUIPMENT_CLASS_BY_STEP.get(step, "Equipment"))]
            out += [(proc, P.usedEquipment, equipment), (equipment, P.name, ox.Literal(event.equipment))]
        # what the step worked on
        if event.kind == "created":
            if proc != subject:
                out.append((proc, P.hasOutput, subject))
        elif event.kind == "processed":
            out += [(proc, P.hasInput, subject), (proc, P.hasOutput, subject)]
        else:  # consumed
            out += [(proc, P.hasInput, subject), (subject, P.consumedAt, _dt(event.time))]
        positives: list[ox.NamedNode] = []
        negatives: list[ox.NamedNode] = []
        for i, used in enumerate(event.inputs):
            source = self.entity_node(line, used.id)
            out += self._input_triples(event, proc, subject, i, used, source, producers)
            if used.type == "ElectrodeSheet":
                (positives if polarity_of(used.id) == "positive" else negatives).append(source)
        if event.kind == "created" and event.type == "CellStack":
            out += [(subject, P.hasPositiveElectrodeSource, s) for s in positives]
            out += [(subject, P.hasNegativeElectrodeSource, s) for s in negatives]
        if event.kind == "created" and event.type == "Cell" and electrode_sources is not None:
            out += [(subject, P.hasPositiveElectrodeSource, s) for s in electrode_sources[0]]
            out += [(subject, P.hasNegativeElectrodeSource, s) for s in electrode_sources[1]]
        if event.kind == "created" and event.type == "RollSegment":
            for used in event.inputs:
                if used.type == "CoatedRoll":
                    roll = self.entity_node(line, used.id)
                    out += [(subject, P.segmentOf, roll), (roll, P.hasSegment, subject)]
                    if used.from_m is not None and used.to_m is not None:
                        out += [(subject, P.fromM, _num(used.from_m)), (subject, P.toM, _num(used.to_m))]
        if "length_m" in event.properties and not isinstance(event.properties["length_m"], (str, bool)):
            out.append((subject, P.lengthM, _num(float(event.properties["length_m"]))))
        for key, value in event.parameters.items():
            out += self.quantity_triples(proc, P.hasParameter,
                                         ox.NamedNode(f"{proc_iri}/parameter/{quote(key, safe='')}"),
                                         P.ParameterValue, key, value)
        if event.properties:
            measurement = ox.NamedNode(proc_iri + "/measurement")
            out += [(proc, P.hasMeasurement, measurement), (measurement, RDF_TYPE, P.Measurement),
                    (measurement, RDF_TYPE, E.EMMO_463bcfda_867b_41d9_a967_211d4d437cfb),
                    (measurement, P.hasInput, subject)]
            for key, value in event.properties.items():
                out += self.quantity_triples(subject, P.hasMeasured,
                                             ox.NamedNode(f"{proc_iri}/property/{quote(key, safe='')}"),
                                             P.MeasuredValue, key, value)
        return out

    def _input_triples(self, event: TraceEvent, proc: ox.NamedNode, subject: ox.NamedNode, i: int, used: Input,
                       source: ox.NamedNode, producers: Mapping[str, ox.NamedNode | None]) -> list[Triple]:
        out: list[Triple] = [(proc, P.hasInput, source)]
        if event.kind == "created" and proc != subject and event.type != "RollSegment":
            out.append((subject, P.derivedFrom, source))
        producer = producers.get(used.id)
        if producer is not None and producer != proc:
            out.append((producer, P.precedes, proc))
        if used.from_m is not None and used.to_m is not None:
            usage = ox.NamedNode(f"{proc.value}/input/{i}")
            out += [
                (proc, P.hasQualifiedInput, usage),
                (usage, RDF_TYPE, P.InputUsage),
                (usage, P.usedEntity, source),
                (usage, P.fromM, _num(used.from_m)),
                (usage, P.toM, _num(used.to_m)),
            ]
        return out

    # ---------------------------------------------------------------- predictions and audits
    def prediction_triples(self, line: str, entity_id: str, model_name: str, model_version: str,
                           outputs: Mapping[str, float], std: Mapping[str, float], time: datetime,
                           run_key: str) -> list[Triple]:
        entity_iri = self._entity(line, entity_id)
        run = ox.NamedNode(f"{entity_iri}/prediction/{quote(run_key, safe='')}")
        out: list[Triple] = [(run, RDF_TYPE, t) for t in _types("PredictionRun")]
        out += [
            (run, P.predictionFor, ox.NamedNode(entity_iri)),
            (run, P.modelName, ox.Literal(model_name)),
            (run, P.modelVersion, ox.Literal(model_version)),
            (run, P.eventTime, _dt(time)),
            (run, P.line, ox.Literal(line)),
        ]
        for key, value in outputs.items():
            out += self.quantity_triples(run, P.hasPredicted,
                                         ox.NamedNode(f"{run.value}/output/{quote(key, safe='')}"),
                                         P.PredictedValue, key, value, std=std.get(key))
        return out

    def audit_triples(self, line: str, target_entity: str | None, setpoint: str | None, who: str, when: datetime,
                      before: Any, after: Any, why: str, model_version: str | None, run_key: str) -> list[Triple]:
        record = ox.NamedNode(f"{self.base_iri}{quote(line, safe='')}/audit/{quote(run_key, safe='')}")
        out: list[Triple] = [
            (record, RDF_TYPE, P.AuditRecord),
            (record, P.line, ox.Literal(line)),
            (record, P.who, ox.Literal(who)),
            (record, P.eventTime, _dt(when)),
            (record, P.why, ox.Literal(why)),
            (record, P.before, _json_literal(before)),
            (record, P.after, _json_literal(after)),
        ]
        if target_entity is not None:
            out.append((record, P.auditedEntity, self.entity_node(line, target_entity)))
        if setpoint is not None:
            out.append((record, P.setpoint, ox.Literal(setpoint)))
        if model_version is not None:
            out.append((record, P.modelVersion, ox.Literal(model_version)))
        return out


@cache
def _step_classes(step: str, kind: str, entity_type: str) -> tuple[ox.NamedNode, ...]:
    """The classes of a step's process node (sorted by IRI, as before), worked out once per combination."""
    step_cls = iris.STEP_CLASSES.get(step, "ProcessStep")
    classes = set(types_of(PL[step_cls]))
    if kind == "created" and step in ("Assembly",) and entity_type in iris.ASSEMBLY_SUBSTEP_BY_OUTPUT:
        classes.update(types_of(PL[iris.ASSEMBLY_SUBSTEP_BY_OUTPUT[entity_type]]))
    if entity_type == "FormationRun" and kind == "created":
        classes.update(types_of(PL.FormationRun))
    return tuple(ox.NamedNode(str(c)) for c in sorted(classes))


def _json_literal(value: Any) -> ox.Literal:
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
        return ox.Literal(json.dumps(value, sort_keys=True))
    if isinstance(value, (int, float)):
        return _num(float(value))
    return ox.Literal(str(value))


def event_digest(event: TraceEvent) -> str:
    """The event's content as 16 hex digits of SHA-256 over a canonical form of the parsed event (so a replay that
    spells a time or a number differently is still the same event). With (line, seq) it is the event's identity."""
    def t(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    def values(d: Mapping[str, Any]) -> list[tuple[str, str]]:
        return sorted((k, repr(v)) for k, v in d.items())

    canonical = [event.seq, event.line, t(event.time), event.kind, event.id, event.type, event.step, event.station,
                 event.equipment, t(event.start), t(event.end),
                 [(i.id, i.type, repr(i.from_m), repr(i.to_m)) for i in event.inputs],
                 values(event.parameters), values(event.properties)]
    return hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode("utf-8")).hexdigest()[:16]


def event_ref(seq: int, variant: str | None) -> int | str:
    """What names an event's step: its seq, or `<seq>-<variant>` (variant = its digest) for an event that reused a seq
    another event had taken first (both are kept, each as its own step)."""
    return seq if variant is None else f"{int(seq)}-{variant}"


def polarity_of(entity_id: str) -> str | None:
    """`ES-C-000001` -> positive, `CR-A-000002` -> negative (docs/traceability.md ID patterns); None when the ID has
    no code."""
    parts = entity_id.split("-")
    if len(parts) >= 3:
        return iris.POLARITY_BY_CODE.get(parts[1])
    return None
