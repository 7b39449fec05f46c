"""The cell record: what the line did to every piece of material in one cell.

The genealogy says which materials went into the cell and which stretch of each roll (a sheet is cut from ``from_m``
to ``to_m`` of a slit coil; positions are coated-roll coordinates carried through calendering and slitting, so that
is the same stretch of the calendered and the coated roll). Here those stretches and step windows become statistics
of every process signal from InfluxDB:

- a roll (coated, calendered): every sample tagged with the roll's ID whose ``roll_position_m`` lies in the stretch
  (half-open, ``from_m <= x < to_m``: a sample on the cut belongs to one sheet only), all stations at once;
- a slurry batch, a slit coil (slitting, post-drying), a formation run: every sample of the step's station in the
  step's window (a formation run: of its cycler channel); a slurry batch whose coated stretch does not overlap the
  cell's stretch is listed as such and not summarised;
- assembly conditions: during the cell's assembly window, every series not tagged with a roll, batch or channel
  (the dry room's dew point, the assembly and filling stations), and the genealogy's dew-point figures.

One request carries one statement per roll and per window (``GROUP BY "signal", "lane"``: one statement per roll,
never one per signal); a second one the setpoint writes of the audit around the windows the stretch spent at the
stations, and the lab results of every ID in the cell. The whole record is blocking code for a worker thread; the
InfluxDB client has a timeout and a row cap, and the API puts a deadline around the thread.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ontology.store import QueryInputError
from twin.quality.influx import InfluxReader, Row
from twin.quality.stats import Summary

ROLL_TYPES = ("CoatedRoll", "CalenderedRoll")
WINDOW_TYPES = ("SlurryBatch", "SlitCoil", "FormationRun")
#: the twin's own measurements (not process signals) that an "every measurement" statement must not summarise
OWN_MEASUREMENTS = frozenset({"trace_events", "twin_predictions", "twin_audit", "lab"})
AUDIT_MEASUREMENT = "twin_audit"
LAB_MEASUREMENT = "lab"
#: predicted output -> the formation result it predicts (the twin's predictor names; the cycler result contract's)
PREDICTED_AS = {"capacity_Ah_cathode_limited": "discharge_capacity_Ah"}
_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_STATS = ('count("value") AS "n", mean("value") AS "mean", min("value") AS "min", max("value") AS "max", '
          'stddev("value") AS "std"')


def _ident(name: str) -> str:
    if not _IDENT.fullmatch(name):
        raise QueryInputError(f"{name!r} is not a measurement name the record can query ({_IDENT.pattern})")
    return f'"{name}"'


def iso_ns(text: Any) -> int | None:
    if text is None:
        return None
    if isinstance(text, datetime):
        t = text if text.tzinfo else text.replace(tzinfo=UTC)
    else:
        t = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
    return int(t.timestamp()) * 10**9 + t.microsecond * 1000


def ns_iso(ns: int) -> str:
    return datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 10**9:09d}Z"


@dataclass
class Material:
    """One piece of material in the cell and where its process data is."""

    id: str
    type: str
    basis: str  # "roll stretch" | "time window" | "not in this cell"
    roll_from_m: float | None = None
    roll_to_m: float | None = None
    via_sheet: str | None = None
    station: str | None = None
    step: str | None = None
    start_ns: int | None = None
    end_ns: int | None = None
    channel: str | None = None
    signals: dict[str, dict[str, Any]] = field(default_factory=dict)
    _summaries: dict[str, tuple[Summary, str | None]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "type": self.type, "basis": self.basis}
        if self.basis == "roll stretch":
            out.update(roll_id=self.id, from_m=self.roll_from_m, to_m=self.roll_to_m, via_sheet=self.via_sheet)
        elif self.start_ns is not None:
            out.update(step=self.step, station=self.station, start=ns_iso(self.start_ns),
                       end=ns_iso(self.end_ns or self.start_ns))
            if self.channel:
                out["channel"] = self.channel
        out["signals"] = self.signals
        return out


class CellRecords:
    """Builds cell records from a genealogy store and InfluxDB. Thread-safe as far as its parts are (the store is;
    give each thread its own InfluxReader or share one: httpx.Client is thread-safe)."""

    def __init__(self, store: Any, influx: InfluxReader | None, specs: Mapping[str, Any], *,
                 lab_stretch_overlap: bool = True) -> None:
        self.store = store
        self.influx = influx
        self.specs = specs
        self.lab_stretch_overlap = lab_stretch_overlap

    # -- the whole record -------------------------------------------------------------------------------------------
    def record(self, cell_id: str, line: str | None = None, *, genealogy: dict[str, Any] | None = None
               ) -> dict[str, Any]:
        g = genealogy if genealogy is not None else self.store.genealogy(cell_id, line)
        if g["type"] != "Cell":
            raise QueryInputError(f"{cell_id} is a {g['type']}, not a Cell: a record is made for a cell")
        line = g["line"]
        materials = self.materials(g)
        assembly = self._assembly_window(g)
        out: dict[str, Any] = {"cell": cell_id, "line": line, "genealogy": g}
        queries_before = self.influx.queries if self.influx is not None else 0
        requests_before = self.influx.requests if self.influx is not None else 0
        lab: list[dict[str, Any]] = []
        audit: list[dict[str, Any]] = []
        ambient: dict[str, dict[str, Any]] = {}
        if self.influx is not None:
            ambient = self._summarise(line, materials, assembly)
            audit, lab_rows = self._setpoint_changes(line, materials, self._lab_statement(line, g))
            lab = self._lab(lab_rows, materials)
        out["materials"] = [m.to_dict() for m in materials]
        cond = g.get("conditions") or {}
        out["assembly"] = {"window": cond.get("assembly_window"), "max_dew_point_C": cond.get("max_dew_point_C"),
                           "dew_point_source": cond.get("dew_point_source"), "signals": ambient}
        out["formation"] = g.get("formation", [])
        out["predicted_vs_measured"] = predicted_vs_measured(g)
        out["lab"] = lab
        out["setpoint_changes"] = audit
        out["audits"] = g.get("audits", [])
        out["influxdb"] = {"available": self.influx is not None,
                           "statements": (self.influx.queries - queries_before) if self.influx is not None else 0,
                           "requests": (self.influx.requests - requests_before) if self.influx is not None else 0}
        out["features"] = features(out)
        return out

    # -- which materials, which stretch ------------------------------------------------------------------------------
    def materials(self, g: Mapping[str, Any]) -> list[Material]:
        """The materials of the cell with their stretch (rolls) or window (batches, coils, formation runs)."""
        types = {e["id"]: e["type"] for e in g["entities"]}
        steps = {e["id"]: e.get("steps", []) for e in g["entities"]}
        parents: dict[str, list[dict[str, Any]]] = {}
        for edge in g["edges"]:
            parents.setdefault(edge["child"], []).append(edge)
        stretches: dict[str, tuple[float | None, float | None, str]] = {}
        for sheet in (i for i, t in types.items() if t == "ElectrodeSheet"):
            stack: list[tuple[str, float | None, float | None, int]] = [(sheet, None, None, 0)]
            while stack:
                node, a, b, depth = stack.pop()
                if types.get(node) in ROLL_TYPES and node not in stretches:
                    stretches[node] = (a, b, sheet)
                if depth > 8:
                    continue
                for e in parents.get(node, []):
                    if types.get(e["parent"]) in ("RawMaterialLot", "SlurryBatch"):
                        continue
                    # positions are coated-roll coordinates all the way: a stretch named further up (a slit coil
                    # made from 0..10 m of its roll) narrows nothing the sheet's own stretch did not
                    fa, fb = e.get("from_m"), e.get("to_m")
                    na = a if fa is None else (float(fa) if a is None else max(a, float(fa)))
                    nb = b if fb is None else (float(fb) if b is None else min(b, float(fb)))
                    stack.append((e["parent"], na, nb, depth + 1))
        out: list[Material] = []
        for roll_id in sorted(stretches, key=lambda r: (types[r], r)):
            a, b, sheet = stretches[roll_id]
            out.append(Material(roll_id, types[roll_id], "roll stretch", a, b, via_sheet=sheet))
        # formation runs come after the cell (not upstream): their window and cycler channel from the genealogy;
        # every series of that channel in the window, whatever the station is called
        for run in sorted(g.get("formation", []), key=lambda r: r["id"]):
            start, end = iso_ns(run.get("start")), iso_ns(run.get("end"))
            if start is not None and end is not None and run.get("channel"):
                out.append(Material(run["id"], "FormationRun", "time window", step="Formation", start_ns=start,
                                    end_ns=end, channel=run["channel"]))
        channels: dict[str, str] = {}
        for eid, etype in sorted(types.items(), key=lambda kv: (kv[1], kv[0])):
            if etype not in WINDOW_TYPES:
                continue
            if etype == "SlurryBatch" and not self._batch_in_stretch(eid, parents, types, stretches):
                out.append(Material(eid, etype, "not in this cell"))
                continue
            for st in steps.get(eid, []):
                start, end = iso_ns(st.get("start")), iso_ns(st.get("end"))
                if start is None or end is None or not st.get("station"):
                    continue
                out.append(Material(eid, etype, "time window", station=st["station"], step=st.get("step"),
                                    start_ns=start, end_ns=end, channel=channels.get(eid)))
        return out

    @staticmethod
    def _batch_in_stretch(batch: str, parents: Mapping[str, list[dict[str, Any]]], types: Mapping[str, str],
                          stretches: Mapping[str, tuple[float | None, float | None, str]]) -> bool:
        """Was any of the batch's coated stretch inside the cell's stretch of that roll? (True when unknown.)"""
        known = False
        for roll, (a, b, _) in stretches.items():
            if types.get(roll) != "CoatedRoll":
                continue
            for e in parents.get(roll, []):
                if e["parent"] != batch:
                    continue
                fa, fb = e.get("from_m"), e.get("to_m")
                if fa is None or fb is None or a is None or b is None:
                    return True
                known = True
                if float(fa) < b and a < float(fb):
                    return True
        return not known

    @staticmethod
    def _assembly_window(g: Mapping[str, Any]) -> tuple[int, int] | None:
        w = (g.get("conditions") or {}).get("assembly_window")
        if not w or not w.get("start") or not w.get("end"):
            return None
        return iso_ns(w["start"]), iso_ns(w["end"])  # type: ignore[return-value]

    # -- statistics --------------------------------------------------------------------------------------------------
    def _summarise(self, line: str, materials: list[Material], assembly: tuple[int, int] | None
                   ) -> dict[str, dict[str, Any]]:
        """One request: a statement per roll stretch, per window and for the assembly window; fills each
        material's ``signals`` and returns the assembly conditions'."""
        assert self.influx is not None
        statements: list[str] = []
        owners: list[Material | None] = []
        params: dict[str, Any] = {"line": line, "good": "good", "none": ""}
        for i, m in enumerate(materials):
            if m.basis == "roll stretch":
                where = ['"line" = $line', f'"roll_id" = $r{i}', '"quality" = $good']
                params[f"r{i}"] = m.id
                if m.roll_from_m is not None and m.roll_to_m is not None:
                    where += [f'"roll_position_m" >= $a{i}', f'"roll_position_m" < $b{i}']
                    params[f"a{i}"], params[f"b{i}"] = m.roll_from_m, m.roll_to_m
                statements.append(f"SELECT {_STATS} FROM /.*/ WHERE {' AND '.join(where)} "
                                  'GROUP BY "signal", "lane"')
                # first / last sample time of the stretch at each station: when the stretch was there (audit)
                statements.append(f'SELECT first("value") FROM /.*/ WHERE {" AND ".join(where)} '
                                  'GROUP BY "signal", "lane"')
                statements.append(f'SELECT last("value") FROM /.*/ WHERE {" AND ".join(where)} '
                                  'GROUP BY "signal", "lane"')
                owners += [m, m, m]
            elif m.basis == "time window" and m.start_ns is not None:
                meas = _ident(m.station.partition("/")[0]) if m.station else "/.*/"
                where = ['"line" = $line', '"quality" = $good', f"time >= $s{i}", f"time <= $e{i}"]
                params[f"s{i}"], params[f"e{i}"] = m.start_ns, m.end_ns
                if m.channel:
                    where.append(f'"channel" = $c{i}')
                    params[f"c{i}"] = m.channel
                statements.append(f"SELECT {_STATS} FROM {meas} WHERE {' AND '.join(where)} "
                                  'GROUP BY "signal", "lane"')
                owners.append(m)
        if assembly is not None:
            params["as"], params["ae"] = assembly
            statements.append(f"SELECT {_STATS} FROM /.*/ WHERE \"line\" = $line AND \"quality\" = $good AND "
                              "time >= $as AND time <= $ae AND \"roll_id\" = $none AND \"slurry_batch_id\" = $none "
                              "AND \"channel\" = $none GROUP BY \"signal\", \"lane\"")
            owners.append(None)
        if not statements:
            return {}
        results = self.influx.query(statements, params)
        ambient: dict[str, dict[str, Any]] = {}
        seen: dict[int, int] = {}
        for stmt, owner, rows in zip(statements, owners, results, strict=True):
            if 'first("value")' in stmt or 'last("value")' in stmt:
                key = "first" if "first(" in stmt else "last"
                for r in rows:
                    name = self._signal_key(r)
                    if name is not None and r.get("time") is not None and owner is not None:
                        owner.signals.setdefault(name, {})[f"{key}_time_ns"] = int(r["time"])
                continue
            seen[id(owner)] = seen.get(id(owner), 0) + 1
            for r in rows:
                name = self._signal_key(r, owner.channel if owner is not None else None)
                s = Summary.from_row(r)
                if name is None or s is None:
                    continue
                if owner is None:
                    ambient[name] = s.to_dict(self.specs.get(name))
                    continue
                if owner.basis == "time window" and not self._lane_fits(owner, r):
                    continue
                owner._summaries[name] = (s, None)
        for m in materials:
            for name, (s, unit) in m._summaries.items():
                times = m.signals.get(name, {})
                m.signals[name] = {**s.to_dict(self.specs.get(name), unit), **times}
            for name in [k for k, v in m.signals.items() if "n" not in v]:
                del m.signals[name]
        return ambient

    @staticmethod
    def _signal_key(row: Row, channel: str | None = None) -> str | None:
        """``<measurement>[/<lane>]/<signal>``; a cycler's channel is its station's lane (``Formation/CH-03``), left
        out so that every cell's formation signals share one name."""
        meas, signal = row.get("_measurement"), row.get("signal")
        if not signal or meas in OWN_MEASUREMENTS:
            return None
        lane = row.get("lane")
        return f"{meas}/{lane}/{signal}" if lane and lane != channel else f"{meas}/{signal}"

    @staticmethod
    def _lane_fits(m: Material, row: Row) -> bool:
        lane = (m.station or "").partition("/")[2]
        return not lane or not row.get("lane") or row.get("lane") == lane

    # -- setpoint changes that acted on the material ----------------------------------------------------------------
    def _setpoint_changes(self, line: str, materials: list[Material], extra: tuple[str, dict[str, Any]] | None
                          ) -> tuple[list[dict[str, Any]], list[Row]]:
        """Setpoint writes of the twin's audit while a roll stretch passed its stations (first to last sample of the
        stretch) or during a step window, and the last write before each window (the setpoint then in force); in the
        same request the `extra` statement (the lab results'), whose rows are returned beside."""
        assert self.influx is not None
        windows: list[tuple[Material, int, int]] = []
        for m in materials:
            if m.basis == "roll stretch":
                firsts = [v["first_time_ns"] for v in m.signals.values() if "first_time_ns" in v]
                lasts = [v["last_time_ns"] for v in m.signals.values() if "last_time_ns" in v]
                if firsts and lasts:
                    windows.append((m, min(firsts), max(lasts)))
            elif m.basis == "time window" and m.start_ns is not None and m.end_ns is not None:
                windows.append((m, m.start_ns, m.end_ns))
        statements: list[str] = []
        params: dict[str, Any] = {"line": line, "write": "write"}
        if extra is not None:
            statements.append(extra[0])
            params.update(extra[1])
        if not statements and not windows:
            return [], []
        for i, (_, a, b) in enumerate(windows):
            params[f"s{i}"], params[f"e{i}"] = a, b
            base = f'SELECT * FROM "{AUDIT_MEASUREMENT}" WHERE "line" = $line AND "action" = $write'
            statements.append(f"{base} AND time >= $s{i} AND time <= $e{i} ORDER BY time ASC LIMIT 100")
            statements.append(f"{base} AND time < $s{i} ORDER BY time DESC LIMIT 1")
        results = self.influx.query(statements, params, max_rows=50_000)
        extra_rows: list[Row] = []
        if extra is not None:
            extra_rows, results = results[0], results[1:]
        out: list[dict[str, Any]] = []
        for i, (m, a, b) in enumerate(windows):
            for when, rows in (("in force before", results[2 * i + 1]), ("during", results[2 * i])):
                for r in rows:
                    out.append({"material": m.id, "station": m.station, "window": [ns_iso(a), ns_iso(b)],
                                "relation": when, "time": ns_iso(int(r["time"])), "who": r.get("who"),
                                "target": r.get("target"), "before": r.get("before", r.get("before_text")),
                                "after": r.get("after", r.get("after_text")), "why": r.get("why"),
                                "recommendation_id": r.get("recommendation_id"), "loop": r.get("loop")})
        return out, extra_rows

    # -- lab results -------------------------------------------------------------------------------------------------
    @staticmethod
    def _lab_statement(line: str, g: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """The lab results of every ID in the cell's genealogy (at most 10 000)."""
        ids = sorted({e["id"] for e in g["entities"]})
        if not ids:
            return None
        params: dict[str, Any] = {"lab_line": line}
        conds = []
        for i, eid in enumerate(ids):
            params[f"lab{i}"] = eid
            conds.append(f'"trace_id" = $lab{i}')
        return (f'SELECT * FROM "{LAB_MEASUREMENT}" WHERE "line" = $lab_line AND ({" OR ".join(conds)}) '
                "ORDER BY time ASC LIMIT 10000"), params

    def _lab(self, rows: list[Row], materials: list[Material]) -> list[dict[str, Any]]:
        """The lab rows as the record lists them; a result on a roll stretch only when it overlaps the cell's
        stretch of that roll."""
        stretch = {m.id: (m.roll_from_m, m.roll_to_m) for m in materials if m.basis == "roll stretch"}
        out = []
        for r in rows:
            tid = r.get("trace_id")
            a, b = r.get("from_m"), r.get("to_m")
            if tid in stretch and a is not None and b is not None and self.lab_stretch_overlap:
                sa, sb = stretch[tid]
                if sa is not None and sb is not None and not (float(a) < sb and sa < float(b)):
                    continue
            out.append({"trace_id": tid, "trace_type": r.get("trace_type"), "quantity": r.get("quantity"),
                        "value": r.get("value"), "unit": r.get("unit"), "method": r.get("method"),
                        "operator": r.get("operator"), "time": ns_iso(int(r["time"])), "from_m": a, "to_m": b,
                        "sheet": r.get("sheet")})
        return out


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, (int, float)) and math.isfinite(v):
        return float(v)
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return 1.0 if v.lower() == "true" else 0.0
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def formation_results(g: Mapping[str, Any]) -> dict[str, float]:
    """The newest formation run's numeric results (booleans as 0 / 1)."""
    runs = sorted(g.get("formation", []), key=lambda r: str(r.get("time") or r.get("end") or ""))
    if not runs:
        return {}
    out: dict[str, float] = {}
    for key, res in runs[-1].get("results", {}).items():
        v = _number(res.get("value") if isinstance(res, dict) else res)
        if v is not None:
            out[key] = v
    return out


def predicted_vs_measured(g: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each predicted output of the cell next to the formation result it predicts (same name, or PREDICTED_AS)."""
    measured = formation_results(g)
    out = []
    for p in g.get("predictions", []):
        for key, o in p.get("outputs", {}).items():
            target = key if key in measured else PREDICTED_AS.get(key)
            if target is None or target not in measured:
                continue
            pv = _number(o.get("value"))
            mv = measured[target]
            out.append({"output": key, "measured_as": target, "model": p.get("model"),
                        "model_version": p.get("model_version"), "time": p.get("time"), "predicted": pv,
                        "std": o.get("std"), "measured": mv,
                        "error": (mv - pv) if pv is not None else None})
    return out


def features(record: Mapping[str, Any]) -> dict[str, float]:
    """One number per feature: ``<station>/<signal>:<stat>`` of each material (a signal seen on two materials of
    the cell is pooled), ``assembly:<station>/<signal>:<stat>``, ``formation:<result>``, ``lab:<quantity>``."""
    out: dict[str, float] = {}
    pooled: dict[str, Summary] = {}
    for m in record.get("materials", []):
        for name, s in m.get("signals", {}).items():
            cur = Summary(int(s["n"]), s["mean"], s["min"], s["max"], s["std"] or 0.0)
            pooled[name] = pooled[name].pooled(cur) if name in pooled else cur
    for name, s in pooled.items():
        out.update({f"{name}:mean": s.mean, f"{name}:min": s.min, f"{name}:max": s.max, f"{name}:std": s.std})
    for name, s in (record.get("assembly") or {}).get("signals", {}).items():
        out.update({f"assembly:{name}:{k}": s[k] for k in ("mean", "min", "max", "std") if s.get(k) is not None})
    dew = _number((record.get("assembly") or {}).get("max_dew_point_C"))
    if dew is not None:
        out["assembly:max_dew_point_C"] = dew
    for key, v in formation_results(record.get("genealogy", {})).items():
        out[f"formation:{key}"] = v
    for lab in record.get("lab", []):
        lv = _number(lab.get("value"))
        if lv is not None:
            out[f"lab:{lab.get('trace_type')}:{lab.get('quantity')}"] = lv
    return out
