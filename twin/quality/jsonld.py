"""The cell record as BattINFO-typed JSON-LD: the genealogy's own RDF description of the cell (every upstream entity
with its steps, inputs and the project's types with their EMMO / BattINFO superclasses asserted) plus the record's
figures as ``pl:MeasuredValue`` nodes on the material they describe.

Each statistic is its own measured value (``pl:key`` = ``<station>/<signal>``, ``pl:statistic`` = mean / min / max /
std / n / cpk, the number as EMMO RealData under hasNumericalPart, as the genealogy writes every quantity), with the
roll stretch it covers (``pl:fromM`` / ``pl:toM``) or the window (``pl:startTime`` / ``pl:endTime``). Lab results are
measured values of the entity they name. The graph conforms to ontology/shapes.ttl (tests validate it with pyshacl).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from rdflib import RDF, XSD, Graph, Literal, URIRef

from ontology import iris
from ontology.builder import types_of
from ontology.iris import PL

HAS_NUMERICAL_PART = iris.EMMO.EMMO_8ef3cd6d_ae58_4a8d_9fc0_ad8f49015cd0
STATS = ("mean", "min", "max", "std", "n", "cpk")


def _dt(text: str) -> Literal:
    return Literal(text, datatype=XSD.dateTime)


def _value(g: Graph, owner: URIRef, node: URIRef, key: str, stat: str | None, value: float,
           unit: str | None = None) -> None:
    g.add((owner, PL.hasMeasured, node))
    for t in types_of(PL.MeasuredValue):
        g.add((node, RDF.type, t))
    g.add((node, PL.key, Literal(key, datatype=XSD.string)))
    if stat:
        g.add((node, PL.statistic, Literal(stat, datatype=XSD.string)))
    number = URIRef(str(node) + "/value")
    g.add((node, HAS_NUMERICAL_PART, number))
    g.add((number, RDF.type, iris.EMMO_REAL_DATA))
    g.add((number, iris.EMMO_HAS_NUMBER_VALUE, Literal(float(value), datatype=XSD.double)))
    if unit:
        g.add((node, PL.unitCode, Literal(unit, datatype=XSD.string)))


def record_graph(store: Any, record: Mapping[str, Any]) -> Graph:
    g = store.genealogy_graph(record["cell"], record["line"])
    iri = {e["id"]: URIRef(e["iri"]) for e in record["genealogy"]["entities"]}
    cell = URIRef(record["genealogy"]["iri"])
    iri.setdefault(record["cell"], cell)
    for m in record["materials"]:
        owner = iri.get(m["id"])
        if owner is None:
            continue
        where = (f"{m['from_m']}-{m['to_m']}" if m["basis"] == "roll stretch"
                 else f"{m.get('step')}-{m.get('start')}")
        for name, s in m.get("signals", {}).items():
            for stat in STATS:
                v = s.get(stat)
                if v is None or not math.isfinite(float(v)):
                    continue
                node = URIRef(f"{owner}/record/{quote(where, safe='')}/{quote(name, safe='')}/{stat}")
                _value(g, owner, node, name, stat, float(v), s.get("unit"))
                if m["basis"] == "roll stretch" and m.get("from_m") is not None:
                    g.add((node, PL.fromM, Literal(float(m["from_m"]), datatype=XSD.double)))
                    g.add((node, PL.toM, Literal(float(m["to_m"]), datatype=XSD.double)))
                elif m.get("start"):
                    g.add((node, PL.startTime, _dt(m["start"])))
                    g.add((node, PL.endTime, _dt(m["end"])))
    window = (record.get("assembly") or {}).get("window") or {}
    for name, s in (record.get("assembly") or {}).get("signals", {}).items():
        for stat in STATS:
            v = s.get(stat)
            if v is None or not math.isfinite(float(v)):
                continue
            node = URIRef(f"{cell}/record/assembly/{quote(name, safe='')}/{stat}")
            _value(g, cell, node, name, stat, float(v), s.get("unit"))
            if window.get("start"):
                g.add((node, PL.startTime, _dt(str(window["start"]))))
                g.add((node, PL.endTime, _dt(str(window["end"]))))
    for k, lab in enumerate(record.get("lab", [])):
        owner = iri.get(lab["trace_id"])
        v = lab.get("value")
        if owner is None or not isinstance(v, (int, float)):
            continue
        node = URIRef(f"{owner}/lab/{k}-{quote(str(lab.get('quantity')), safe='')}")
        _value(g, owner, node, f"lab:{lab.get('quantity')}", None, float(v), lab.get("unit"))
        g.add((node, PL.eventTime, _dt(lab["time"])))
    return g


def record_jsonld(store: Any, record: Mapping[str, Any]) -> str:
    g = record_graph(store, record)
    for prefix, ns in (("pl", PL), ("emmo", iris.EMMO), ("echem", iris.ECHEM), ("battery", iris.BATTERY),
                       ("mfg", iris.MFG)):
        g.bind(prefix, ns)
    return g.serialize(format="json-ld", auto_compact=True)
