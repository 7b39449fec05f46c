"""The dataset export: one row per cell, one column per feature (the cell record's features), as CSV or Parquet.

Why not a record per cell: a roll carries hundreds of cells, and asking InfluxDB once per cell for the same roll's
stretches costs a round trip and a scan per cell. Here each roll is read once over the union of the selected cells'
stretches (one statement per roll, ``GROUP BY "signal", "lane"``, the raw values with their positions) and every
cell's summary is cut from it in memory; the windows (slurry batches, coils, formation, assembly) are aggregated by
InfluxDB as in the record, many statements per request. The features are the same as ``record.features`` gives
(tests/quality/test_record.py compares them), so a data scientist's table and an engineer's record agree.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from twin.quality.influx import InfluxReader
from twin.quality.record import _STATS, LAB_MEASUREMENT, CellRecords, Material, _ident, features, ns_iso
from twin.quality.stats import Summary

ROLLS_PER_REQUEST = 20
WINDOWS_PER_REQUEST = 60


class DatasetBuilder:
    def __init__(self, records: CellRecords, *, max_cells: int = 20_000,
                 deadline: Callable[[], None] | None = None) -> None:
        self.records = records
        self.max_cells = max_cells
        self.deadline = deadline or (lambda: None)  # raises when the caller's time is up

    @property
    def influx(self) -> InfluxReader | None:
        return self.records.influx

    def features(self, cell_ids: Sequence[str], line: str | None = None) -> list[tuple[str, dict[str, float]]]:
        """(cell, features) for every cell, in the order given; unknown cells raise LookupError."""
        if len(cell_ids) > self.max_cells:
            raise ValueError(f"{len(cell_ids)} cells is more than {self.max_cells} in one export "
                             "(quality.dataset_max_cells); narrow the selection")
        recs: list[dict[str, Any]] = []
        mats: list[list[Material]] = []
        for cid in cell_ids:
            self.deadline()
            g = self.records.store.genealogy(cid, line)
            if g["type"] != "Cell":
                raise ValueError(f"{cid} is a {g['type']}, not a Cell")
            ms = self.records.materials(g)
            cond = g.get("conditions") or {}
            recs.append({"cell": cid, "line": g["line"], "genealogy": g, "materials": ms,
                         "assembly": {"window": cond.get("assembly_window"),
                                      "max_dew_point_C": cond.get("max_dew_point_C"), "signals": {}},
                         "lab": []})
            mats.append(ms)
        if self.influx is not None and recs:
            self._rolls(recs)
            self._windows(recs)
            self._lab(recs)
        out = []
        for r in recs:
            r["materials"] = [m.to_dict() for m in r["materials"]]
            out.append((r["cell"], features(r)))
        return out

    # -- roll stretches: one read per roll ------------------------------------------------------------------------
    def _rolls(self, recs: list[dict[str, Any]]) -> None:
        assert self.influx is not None
        by_roll: dict[tuple[str, str], list[Material]] = {}
        for r in recs:
            for m in r["materials"]:
                if m.basis == "roll stretch":
                    by_roll.setdefault((r["line"], m.id), []).append(m)
        keys = sorted(by_roll)
        for k in range(0, len(keys), ROLLS_PER_REQUEST):
            self.deadline()
            chunk = keys[k:k + ROLLS_PER_REQUEST]
            statements: list[str] = []
            params: dict[str, Any] = {"good": "good"}
            for i, (line, roll) in enumerate(chunk):
                ms = by_roll[(line, roll)]
                where = [f'"line" = $l{i}', f'"roll_id" = $r{i}', '"quality" = $good']
                params[f"l{i}"], params[f"r{i}"] = line, roll
                froms = [m.roll_from_m for m in ms if m.roll_from_m is not None]
                tos = [m.roll_to_m for m in ms if m.roll_to_m is not None]
                if len(froms) == len(tos) == len(ms):
                    params[f"a{i}"], params[f"b{i}"] = min(froms), max(tos)
                    where += [f'"roll_position_m" >= $a{i}', f'"roll_position_m" < $b{i}']
                statements.append(f'SELECT "value", "roll_position_m" FROM /.*/ WHERE {" AND ".join(where)} '
                                  'GROUP BY "signal", "lane"')
            results = self.influx.query(statements, params)
            for (line, roll), rows in zip(chunk, results, strict=True):
                series: dict[str, list[tuple[float, float]]] = {}
                for row in rows:
                    name = CellRecords._signal_key(row)
                    v, x = row.get("value"), row.get("roll_position_m")
                    if name is None or v is None or x is None:
                        continue
                    series.setdefault(name, []).append((float(x), float(v)))
                arrays = {}
                for name, pts in series.items():
                    a = np.asarray(pts, dtype=float)
                    order = np.argsort(a[:, 0], kind="stable")
                    arrays[name] = (a[order, 0], a[order, 1])
                for m in by_roll[(line, roll)]:
                    for name, (xs, vs) in arrays.items():
                        if m.roll_from_m is None or m.roll_to_m is None:
                            sel = vs
                        else:
                            lo = np.searchsorted(xs, m.roll_from_m, side="left")
                            hi = np.searchsorted(xs, m.roll_to_m, side="left")
                            sel = vs[lo:hi]
                        s = Summary.of(sel)
                        if s is not None:
                            m.signals[name] = s.to_dict(self.records.specs.get(name))

    # -- windows: aggregated by InfluxDB, many statements per request ----------------------------------------------
    def _windows(self, recs: list[dict[str, Any]]) -> None:
        assert self.influx is not None
        jobs: list[tuple[str, dict[str, Any], Callable[[list[dict[str, Any]]], None]]] = []
        for r in recs:
            for m in r["materials"]:
                if m.basis == "time window" and m.start_ns is not None:
                    jobs.append(self._window_job(r["line"], m))
            w = r["assembly"]["window"]
            if w and w.get("start") and w.get("end"):
                jobs.append(self._assembly_job(r))
        for k in range(0, len(jobs), WINDOWS_PER_REQUEST):
            self.deadline()
            chunk = jobs[k:k + WINDOWS_PER_REQUEST]
            params: dict[str, Any] = {"good": "good", "none": ""}
            statements = []
            for i, (stmt, p, _) in enumerate(chunk):
                statements.append(stmt.replace("$", f"$w{i}_").replace(f"$w{i}_good", "$good")
                                  .replace(f"$w{i}_none", "$none"))
                params.update({f"w{i}_{key}": v for key, v in p.items()})
            for (_, _, done), rows in zip(chunk, self.influx.query(statements, params), strict=True):
                done(rows)

    def _window_job(self, line: str, m: Material) -> tuple[str, dict[str, Any], Callable[[list[dict[str, Any]]], None]]:
        meas = _ident(m.station.partition("/")[0]) if m.station else "/.*/"
        where = ['"line" = $line', '"quality" = $good', "time >= $s", "time <= $e"]
        p: dict[str, Any] = {"line": line, "s": m.start_ns, "e": m.end_ns}
        if m.channel:
            where.append('"channel" = $c')
            p["c"] = m.channel
        stmt = f"SELECT {_STATS} FROM {meas} WHERE {' AND '.join(where)} GROUP BY \"signal\", \"lane\""

        def done(rows: list[dict[str, Any]]) -> None:
            for row in rows:
                name = CellRecords._signal_key(row, m.channel)
                s = Summary.from_row(row)
                if name is not None and s is not None and CellRecords._lane_fits(m, row):
                    m.signals[name] = s.to_dict(self.records.specs.get(name))
        return stmt, p, done

    def _assembly_job(self, r: dict[str, Any]) -> tuple[str, dict[str, Any], Callable[[list[dict[str, Any]]], None]]:
        from twin.quality.record import iso_ns

        w = r["assembly"]["window"]
        p = {"line": r["line"], "s": iso_ns(w["start"]), "e": iso_ns(w["end"])}
        stmt = (f"SELECT {_STATS} FROM /.*/ WHERE \"line\" = $line AND \"quality\" = $good AND time >= $s AND "
                "time <= $e AND \"roll_id\" = $none AND \"slurry_batch_id\" = $none AND \"channel\" = $none "
                "GROUP BY \"signal\", \"lane\"")

        def done(rows: list[dict[str, Any]]) -> None:
            for row in rows:
                name = CellRecords._signal_key(row)
                s = Summary.from_row(row)
                if name is not None and s is not None:
                    r["assembly"]["signals"][name] = s.to_dict(self.records.specs.get(name))
        return stmt, p, done

    # -- lab -------------------------------------------------------------------------------------------------------
    def _lab(self, recs: list[dict[str, Any]]) -> None:
        assert self.influx is not None
        wanted: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in recs:
            for e in r["genealogy"]["entities"]:
                wanted.setdefault((r["line"], e["id"]), []).append(r)
        keys = sorted(wanted)
        found: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for k in range(0, len(keys), 200):
            self.deadline()
            chunk = keys[k:k + 200]
            params: dict[str, Any] = {}
            conds = []
            for i, (line, tid) in enumerate(chunk):
                params[f"l{i}"], params[f"t{i}"] = line, tid
                conds.append(f'("line" = $l{i} AND "trace_id" = $t{i})')
            q = f'SELECT * FROM "{LAB_MEASUREMENT}" WHERE {" OR ".join(conds)}'
            for row in self.influx.query([q], params)[0]:
                found.setdefault((row["line"], row["trace_id"]), []).append(row)
        for key, rows in found.items():
            for r in wanted.get(key, []):
                stretch = {m.id: (m.roll_from_m, m.roll_to_m) for m in r["materials"] if m.basis == "roll stretch"}
                for row in rows:
                    a, b = row.get("from_m"), row.get("to_m")
                    tid = row["trace_id"]
                    if tid in stretch and a is not None and b is not None:
                        sa, sb = stretch[tid]
                        if sa is not None and sb is not None and not (float(a) < sb and sa < float(b)):
                            continue
                    r["lab"].append({"trace_id": tid, "trace_type": row.get("trace_type"),
                                     "quantity": row.get("quantity"), "value": row.get("value"),
                                     "time": ns_iso(int(row["time"]))})


def table(rows: Iterable[tuple[str, dict[str, float]]]) -> tuple[list[str], list[list[Any]]]:
    """Columns (``cell`` first, then every feature any cell has, sorted) and the rows (None where a cell lacks one)."""
    rows = list(rows)
    cols = sorted({k for _, f in rows for k in f})
    return ["cell", *cols], [[cid, *(f.get(c) for c in cols)] for cid, f in rows]


def to_csv(columns: list[str], rows: list[list[Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if v is None else v for v in r])
    return buf.getvalue().encode()


def to_parquet(columns: list[str], rows: list[list[Any]]) -> bytes:
    """Parquet through pyarrow (pinned in pyproject); ImportError says how to install it."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is a pinned dependency
        raise ImportError("Parquet export needs pyarrow (pip install pyarrow; pinned in pyproject.toml)") from exc
    data = {c: [r[i] for r in rows] for i, c in enumerate(columns)}
    schema = pa.schema([pa.field("cell", pa.string())] + [pa.field(c, pa.float64()) for c in columns[1:]])
    buf = io.BytesIO()
    pq.write_table(pa.table(data, schema=schema), buf)
    return buf.getvalue()
