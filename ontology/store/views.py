"""The genealogy's answers as JSON (and RDF): upstream trace of an entity, downstream track, cells assembled above a
dew point.

Why apart: these turn rows of the store's queries (ontology/queries/*.rq) into the documents the API and the CLI
return (docs/traceability.md shows them), and only read; they share nothing with placing and writing but the backend.
Every argument from outside is checked here, with a `QueryInputError` that says what is wrong.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final

from rdflib import XSD, Graph, Literal, URIRef

from ontology import iris
from ontology.builder import GraphBuilder
from ontology.events import EventError, check_id, check_number, parse_time
from ontology.iris import PL
from ontology.store.backend import GraphBackend
from ontology.store.config import DewPointPort
from ontology.store.errors import QueryInputError, UnknownIdError

ROLL_TYPES: Final = ("CoatedRoll", "CalenderedRoll", "SlitCoil")

_FIELD_NAMES: Final = {
    str(PL.polarity): "polarity", str(PL.lengthM): "length_m", str(PL.step): "step", str(PL.kind): "kind",
    str(PL.seq): "seq", str(PL.eventTime): "time", str(PL.startTime): "start", str(PL.endTime): "end",
    str(PL.station): "station", str(PL.name): "equipment", str(PL.key): "key", str(PL.unitCode): "unit",
    str(PL.statistic): "statistic", "http://www.w3.org/1999/02/22-rdf-syntax-ns#type": "type",
    "http://www.w3.org/1999/02/22-rdf-syntax-ns#value": "value", str(iris.EMMO_HAS_MEASUREMENT_UNIT): "unit_iri",
    str(iris.EMMO_HAS_NUMBER_VALUE): "value", str(PL.fromM): "from_m", str(PL.toM): "to_m",
    str(PL.setpoint): "setpoint", str(PL.before): "before", str(PL.after): "after",
    str(PL.modelVersion): "model_version",
}
# upstream.rq columns -> genealogy JSON fields (of an entity, of one of its steps)
_ENTITY_FIELDS: Final = (("polarity", "polarity"), ("length", "length_m"))
_STEP_FIELDS: Final = (("step", "step"), ("kind", "kind"), ("seq", "seq"), ("time", "time"), ("start", "start"),
                       ("end", "end"), ("station", "station"), ("equipment", "equipment"))
_GENERIC_VALUE_TYPES: Final = {str(PL.MeasuredValue), str(PL.ParameterValue), str(PL.PredictedValue)}


def _aware(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return parse_time(str(value), "time")


def _unjson(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class GenealogyViews:
    """The read side of the genealogy; `dew_point_port` (optional) answers dew points from the time-series store."""

    def __init__(self, backend: GraphBackend, builder: GraphBuilder, dew_point_port: DewPointPort | None) -> None:
        self.backend = backend
        self.builder = builder
        self.dew_point_port = dew_point_port

    def _select(self, name: str, **bindings: Any) -> list[dict[str, Any]]:
        return self.backend.select(name, **bindings)

    def find(self, entity_id: str, line: str | None = None) -> tuple[URIRef, str, str]:
        """(IRI, line, type) of a trace ID; UnknownIdError if absent, QueryInputError if the ID is malformed."""
        try:
            check_id(entity_id, "id")
        except EventError as exc:
            raise QueryInputError(str(exc)) from None
        if line is not None and (not isinstance(line, str) or not line or len(line) > 64):
            raise QueryInputError(f"line must be a non-empty string, got {line!r}")
        bindings: dict[str, Any] = {"id": Literal(entity_id)}
        if line is not None:
            bindings["line"] = Literal(line)
        rows = self._select("find_entity", **bindings)
        if not rows:
            where = f" on line {line}" if line else ""
            raise UnknownIdError(f"no entity with trace ID {entity_id}{where} in the genealogy graph")
        if len(rows) > 1:
            lines = sorted(r["line"] for r in rows)
            raise QueryInputError(f"trace ID {entity_id} exists on several lines ({', '.join(lines)}); pass line=")
        row = rows[0]
        return URIRef(str(row["entity"])), row["line"], row["type"]

    def _root(self, entity_id: str, line: str) -> dict[str, URIRef]:
        """Bind the root by IRI: binding its ID and line literals lets the planner start from every `pl:line` triple."""
        return {"root": self.builder.entity(line, entity_id)}

    def genealogy(self, entity_id: str, line: str | None = None) -> dict[str, Any]:
        """Upstream trace of an entity (normally a cell): the whole tree with steps, equipment, parameters, measured
        values, raw-data windows, roll segments under its sheets, formation, predictions, audits and the dry-room
        dew point during its assembly."""
        iri, line, entity_type = self.find(entity_id, line)
        root = self._root(entity_id, line)
        entities: dict[str, dict[str, Any]] = {}
        steps: dict[tuple[str, str], dict[str, Any]] = {}
        for row in self._select("upstream", **root):
            item = entities.get(row["id"])
            if item is None:
                item = entities[row["id"]] = {"id": row["id"], "type": row["type"], "iri": str(row["entity"]),
                                              "steps": [], "parameters": {}, "measured": {}}
                item.update((name, row[var]) for var, name in _ENTITY_FIELDS if var in row)
            if (row["id"], str(row["proc"])) not in steps:
                step = steps[(row["id"], str(row["proc"]))] = {"iri": str(row["proc"])}
                step.update((name, row[var]) for var, name in _STEP_FIELDS if var in row)
                item["steps"].append(step)
        for item in entities.values():
            item["steps"].sort(key=lambda s: (s.get("seq") or 0))
        quantities: dict[str, dict[str, Any]] = {}
        for row in self._select("upstream_values", **root):
            q = quantities.setdefault(str(row["q"]), {"id": row["id"], "step": None, "proc": row.get("proc")})
            name = _FIELD_NAMES.get(str(row["p"]), str(row["p"]))
            if name == "type":
                if str(row["value"]) not in _GENERIC_VALUE_TYPES:
                    q["quantity_iri"] = str(row["value"])
            elif name == "unit_iri":
                q["unit_iri"] = str(row["value"])
            else:
                q[name] = row["value"]
        proc_steps = {s["iri"]: s.get("step") for s in steps.values()}
        for q in quantities.values():
            item = entities.get(q.pop("id"))
            if item is None or "key" not in q:
                continue
            proc = q.pop("proc")
            q.pop("step")
            key = q.pop("key")
            if proc is not None:
                item["parameters"].setdefault(proc_steps.get(str(proc)) or "?", {})[key] = q
            else:
                item["measured"][key] = q
        edge_map: dict[tuple[str, str], dict[str, Any]] = {}
        for r in self._select("upstream_edges", **root):
            edge = edge_map.setdefault((r["childId"], r["parentId"]), {"child": r["childId"], "parent": r["parentId"]})
            if "usage" in r:
                edge[_FIELD_NAMES.get(str(r["p"]), str(r["p"]))] = r["value"]
        raw = [{"id": r["id"], "step": r["step"], "influxdb": {"measurement": r["measurement"],
                                                               "tags": {"line": r["line"]},
                                                               "start": r["start"], "end": r["end"]}}
               for r in self._select("raw_data", **root)]
        seg_rows = self._select("segments", **root)
        seg_values: dict[tuple[str, str, str], dict[str, Any]] = {}
        for r in seg_rows:
            field_name = "unit" if str(r["p"]) == str(PL.unitCode) else "value"
            seg_values.setdefault((r["sheetId"], r["segmentId"], str(r["q"])), {})[field_name] = r["value"]
        segments: dict[tuple[str, str], dict[str, Any]] = {}
        for r in seg_rows:
            value = seg_values[(r["sheetId"], r["segmentId"], str(r["q"]))]
            if "value" not in value:
                continue  # a quantity without a number (as before: only numeric measurements are listed)
            seg = segments.setdefault((r["sheetId"], r["segmentId"]), {
                "sheet": r["sheetId"], "segment": r["segmentId"], "roll": r["rollId"],
                "from_m": r["segFrom"], "to_m": r["segTo"], "measured": {}})
            seg["measured"][r["key"]] = {"value": value["value"], "unit": value.get("unit")}
        formation: dict[str, dict[str, Any]] = {}
        results: dict[str, dict[str, Any]] = {}
        for r in self._select("formation", **root):
            run = formation.setdefault(r["runId"], {"id": r["runId"], "channel": None, "results": {}})
            name = _FIELD_NAMES.get(str(r["p"]), str(r["p"]))
            if "q" in r:
                results.setdefault(str(r["q"]), {"run": r["runId"]})[name] = r["value"]
            elif name == "equipment":
                run["channel"] = r["value"]
            else:
                run[name] = r["value"]
        for res in results.values():
            if "key" in res:
                formation[res.pop("run")]["results"][res.pop("key")] = res
        predictions: dict[str, dict[str, Any]] = {}
        for r in self._select("predictions", **root):
            pred = predictions.setdefault(str(r["run"]), {"model": r["model"], "model_version": r["version"],
                                                          "time": r["time"], "outputs": {}})
            pred["outputs"][r["key"]] = {"value": r.get("value"), "std": r.get("std"), "unit": r.get("unit")}
        audit_map: dict[str, dict[str, Any]] = {}
        for r in self._select("audits", **root):
            rec = audit_map.setdefault(str(r["record"]), {"who": r["who"], "time": r["time"], "why": r["why"],
                                                          "setpoint": None, "before": None, "after": None,
                                                          "model_version": None})
            name = _FIELD_NAMES.get(str(r["p"]), str(r["p"]))
            rec[name] = _unjson(r["value"]) if name in ("before", "after") else r["value"]
        by_type: dict[str, list[str]] = {}
        equipment: set[str] = set()
        for item in entities.values():
            by_type.setdefault(item["type"], []).append(item["id"])
            equipment.update(s["equipment"] for s in item["steps"] if "equipment" in s)
        sheets = [i for i in entities.values() if i["type"] == "ElectrodeSheet"]
        return {
            "id": entity_id,
            "line": line,
            "type": entity_type,
            "iri": str(iri),
            "positive_electrode": sorted(i["id"] for i in sheets if i.get("polarity") == "positive"),
            "negative_electrode": sorted(i["id"] for i in sheets if i.get("polarity") == "negative"),
            "slurry_batches": sorted(by_type.get("SlurryBatch", [])),
            "raw_material_lots": sorted(by_type.get("RawMaterialLot", [])),
            "by_type": {k: sorted(v) for k, v in sorted(by_type.items())},
            "equipment": sorted(equipment),
            "conditions": self._conditions(root, line),
            "entities": sorted(entities.values(), key=lambda e: (e["type"], e["id"])),
            "edges": sorted(edge_map.values(), key=lambda e: (e["child"], e["parent"])),
            "raw_data": sorted(raw, key=lambda r: (r["influxdb"]["start"], r["id"])),
            "segments": sorted(segments.values(), key=lambda s: (s["sheet"], s["segment"])),
            "formation": sorted(formation.values(), key=lambda r: r["id"]),
            "predictions": sorted(predictions.values(), key=lambda p: p["time"]),
            "audits": sorted(audit_map.values(), key=lambda a: a["time"]),
        }

    def _conditions(self, root: dict[str, URIRef], line: str) -> dict[str, Any]:
        rows = self._select("assembly_conditions", **root)
        row = rows[0] if rows else {}
        dew = self._select("dew_point_summary", **root)
        stored = dew[0].get("maxDewPoint") if dew else None
        out: dict[str, Any] = {
            "assembly_window": {"start": row.get("from"), "end": row.get("to")} if row.get("from") else None,
            "max_dew_point_C": stored,
            "dew_point_source": "trace-event summary" if stored is not None else None,
            "stored_max_dew_point_C": stored,
        }
        if self.dew_point_port is not None and row.get("from") and row.get("to"):
            try:
                live = self.dew_point_port(line, _aware(row["from"]), _aware(row["to"]))
            except Exception as exc:  # the time-series store may be down; the genealogy still answers
                out["dew_point_port_error"] = repr(exc)
            else:
                if live is not None:
                    out["influxdb_max_dew_point_C"] = float(live)
                    out["max_dew_point_C"], out["dew_point_source"] = float(live), "influxdb samples"
        return out

    def genealogy_graph(self, entity_id: str, line: str | None = None) -> Graph:
        """The genealogy as RDF: every triple about the nodes genealogy_nodes.rq and genealogy_root_nodes.rq find
        (a bounded description). `pl:precedes` links to steps outside the genealogy are left out: the receiving step
        of a separator lot precedes every stacking step that used the lot (tens of thousands at 100 000 cells)."""
        _, line, _ = self.find(entity_id, line)
        root = self._root(entity_id, line)
        nodes = {row["node"] for name in ("genealogy_nodes", "genealogy_root_nodes")
                 for row in self._select(name, **root)}
        out = Graph()
        for prefix, ns in (("pl", PL), ("emmo", iris.EMMO), ("echem", iris.ECHEM), ("battery", iris.BATTERY),
                           ("mfg", iris.MFG)):
            out.bind(prefix, ns)
        self.backend.describe(nodes, out, inside_only=PL.precedes)
        return out

    def downstream(self, entity_id: str, from_m: float | None = None, to_m: float | None = None,
                   line: str | None = None) -> dict[str, Any]:
        """Downstream track: cells (and all entities) made from an entity; with from_m/to_m, only cells whose sheets
        were cut from that stretch of a roll. For a slurry batch coated on a known stretch of a roll, only the cells
        from that stretch count."""
        if (from_m is None) != (to_m is None):
            raise QueryInputError("give both from_m and to_m, or neither")
        if from_m is not None:
            try:
                from_m, to_m = check_number(from_m, "from_m"), check_number(to_m, "to_m")
            except EventError as exc:
                raise QueryInputError(str(exc)) from None
            if from_m < 0 or to_m <= from_m:
                raise QueryInputError(f"need 0 <= from_m < to_m, got {from_m}..{to_m}")
        _, line, entity_type = self.find(entity_id, line)
        result: dict[str, Any] = {"id": entity_id, "line": line, "type": entity_type}
        if from_m is not None:
            if entity_type not in ROLL_TYPES:
                raise QueryInputError(f"positions apply to rolls ({', '.join(ROLL_TYPES)}); {entity_id} is a "
                                      f"{entity_type}")
            rows = self._range(entity_id, line, from_m, to_m)  # type: ignore[arg-type]
            sheets = sorted({(r["sheetId"], r["carrierId"], r["f"], r["t"]) for r in rows})
            result.update(from_m=from_m, to_m=to_m, method="roll positions",
                          cells=sorted({r["cellId"] for r in rows}),
                          sheets=[{"sheet": s, "cut_from": c, "from_m": f, "to_m": t} for s, c, f, t in sheets])
            result["count"] = len(result["cells"])
            return result
        everything = self._select("downstream", **self._root(entity_id, line))
        cells = {r["id"] for r in everything if r["type"] == "Cell"}
        method = "genealogy closure"
        if entity_type == "SlurryBatch":
            stretches = self._select("coating_stretches", **self._root(entity_id, line))
            if stretches:
                method = "coated stretches of the rolls"
                for s in stretches:
                    roll_cells = {r["id"] for r in self._select("downstream", **self._root(s["rollId"], line))
                                  if r["type"] == "Cell"}
                    in_range = {r["cellId"] for r in self._range(s["rollId"], line, s["fromM"], s["toM"])}
                    cells -= roll_cells - in_range
                result["coated_stretches"] = [{"roll": s["rollId"], "from_m": s["fromM"], "to_m": s["toM"]}
                                              for s in stretches]
        result.update(method=method, cells=sorted(cells), count=len(cells),
                      entities=sorted(({"id": r["id"], "type": r["type"]} for r in everything),
                                      key=lambda e: (e["type"], e["id"])))
        return result

    def _range(self, entity_id: str, line: str, from_m: float, to_m: float) -> list[dict[str, Any]]:
        return self._select("downstream_range", **self._root(entity_id, line),
                            fromM=Literal(float(from_m), datatype=XSD.double),
                            toM=Literal(float(to_m), datatype=XSD.double))

    def cells_dew_point_above(self, limit_C: float, *, check_samples: bool = False,
                              max_port_calls: int = 10_000) -> dict[str, Any]:
        """Cells assembled while the dry-room dew point exceeded `limit_C` (degC).

        Uses the dew-point summaries stored from trace events; with `check_samples` and a dew-point port, cells
        without a summary are checked against the samples (at most `max_port_calls` windows)."""
        try:
            limit = check_number(limit_C, "limit_C")
        except EventError as exc:
            raise QueryInputError(str(exc)) from None
        rows = self._select("cells_dew_point_above", limit=Literal(limit, datatype=XSD.double))
        cells = {(r["line"], r["cellId"]): {"id": r["cellId"], "line": r["line"], "max_dew_point_C": r["maxDewPoint"],
                                            "source": "trace-event summary"} for r in rows}
        checked, truncated = 0, False
        if check_samples and self.dew_point_port is not None:
            for w in self._select("assembly_windows"):
                key = (w["line"], w["cellId"])
                if key in cells:
                    continue
                if checked >= max_port_calls:
                    truncated = True
                    break
                checked += 1
                value = self.dew_point_port(w["line"], _aware(w["from"]), _aware(w["to"]))
                if value is not None and value > limit:
                    cells[key] = {"id": w["cellId"], "line": w["line"], "max_dew_point_C": float(value),
                                  "source": "influxdb samples"}
        found = sorted(cells.values(), key=lambda c: (-c["max_dew_point_C"], c["id"]))
        return {"limit_C": limit, "cells": found, "count": len(found), "windows_checked_in_influxdb": checked,
                "truncated": truncated}
