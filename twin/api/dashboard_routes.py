"""What the dashboard's pages ask InfluxDB for, aggregated in the database so every answer stays small however long
the range and however large the store: trends over a chosen range (mean / min / max per time bucket, with spec limits
and the twin's setpoint writes), the rolls a gauge saw, and a roll's 2-D map (machine direction x cross-web tracks)
with its segment boundaries.

Why here and not in routes.py: these are the dashboard's reads, bounded by construction (at most ``MAX_SIGNALS``
signals x ``MAX_POINTS`` buckets, ``MAX_BINS`` x ``MAX_TRACKS`` cells, ``MAX_ROLLS`` rolls), and built only from
bound parameters plus identifiers checked against a strict pattern (the measurement, the profile signal's name).
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query

from connectors.records import ns_to_iso
from twin.api.deps import clean_json as _clean
from twin.api.deps import ctx_of, viewer
from twin.api.deps import time_ns_param as _time_ns
from twin.auth import Principal
from twin.context import TwinContext
from twin.store.lineproto import measurement_of

router = APIRouter(tags=["dashboard"])  # included by twin.api.routes, under its /api
Ctx = Annotated[TwinContext, Depends(ctx_of)]
Viewer = Annotated[Principal, Depends(viewer)]

MAX_SIGNALS = 8        # signals in one trend request
MAX_POINTS = 1000      # time buckets per signal
MAX_BINS = 400         # machine-direction bins of a roll map
MAX_TRACKS = 1000      # cross-web tracks of a roll map (the simulator's --profile-points is at most 1000)
MAX_ROLLS = 200        # rolls listed per gauge
MAX_MARKS = 500        # setpoint writes marked on a trend
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
STATION_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(/[A-Za-z0-9][A-Za-z0-9_-]*)?$")
TRACK_RE = re.compile(r"\.P(\d{3,4})$")


def _split(key: str) -> tuple[str, str, str]:
    """``Drying/Cathode/MassLoading`` -> (station, measurement, signal), checked against the strict patterns."""
    if "/" not in key:
        raise HTTPException(422, f"signal {key!r} must be '<station>/<signal>', e.g. Drying/Cathode/MassLoading")
    station, signal = key.rsplit("/", 1)
    if not STATION_RE.fullmatch(station) or not signal or len(signal) > 100:
        raise HTTPException(422, f"signal {key!r}: station must match {STATION_RE.pattern}")
    return station, measurement_of(station)[0], signal


def _query(ctx: TwinContext) -> Any:
    if ctx.influx is None:
        raise HTTPException(503, "no store configured: trends and roll maps need InfluxDB (influx: in the config)")
    return ctx.influx()


async def _run(q: Any, statement: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    from twin.store.query import QueryError

    try:
        rows: list[dict[str, Any]] = await q.influxql(statement, params)
    except QueryError as exc:
        status = 503 if "unreachable" in str(exc) or "HTTP 5" in str(exc) else 422
        raise HTTPException(status, str(exc)) from None
    return rows


def _where(station: str, line: str, extra: list[str], params: dict[str, Any]) -> str:
    meas, lane = measurement_of(station)
    if not NAME_RE.fullmatch(meas):
        raise HTTPException(422, f"station {station!r}: measurement {meas!r} must match {NAME_RE.pattern}")
    where = ['"line" = $line', *extra]
    params["line"] = line
    if lane:
        where.append('"lane" = $lane')
        params["lane"] = lane
    return f'FROM "{meas}" WHERE ' + " AND ".join(where)


def _bucket_s(start_ns: int, end_ns: int, points: int) -> int:
    return max(1, math.ceil((end_ns - start_ns) / 1e9 / points))


def _setpoint_signals(ctx: TwinContext) -> dict[str, str]:
    """Setpoint node -> the signal that measures its actual value (every product's loops)."""
    out: dict[str, str] = {}
    for product in ctx.settings.control.products.values():
        for loop in product.loops.values():
            for m in loop.manipulated:
                out[m.setpoint_node] = m.actual_signal
    return out


@router.get("/trend")
async def trend(ctx: Ctx, _: Viewer,
                signal: Annotated[list[str], Query(description="<station>/<signal>, repeated (at most 8)")],
                start: str | None = Query(None, description="RFC 3339 or ns; default: end - 1 h"),
                end: str | None = Query(None, description="RFC 3339 or ns; default: now"),
                points: int = Query(300, ge=10, le=MAX_POINTS, description="time buckets per signal")) -> Any:
    """Signals over a chosen range, aggregated in InfluxDB: per time bucket the mean, min, max and count (so a week
    costs as little as an hour), each with its spec limits, and the twin's setpoint writes in the range (from the
    audit in InfluxDB, ``twin_audit``) with the signal they act on."""
    if not signal or len(signal) > MAX_SIGNALS:
        raise HTTPException(422, f"give 1 to {MAX_SIGNALS} signal= parameters")
    hs = ctx.settings.http
    end_ns = _time_ns(end, time.time_ns(), "end")
    start_ns = _time_ns(start, end_ns - 3600 * 10**9, "start")
    if start_ns >= end_ns:
        raise HTTPException(422, "start must be before end")
    if (end_ns - start_ns) / 1e9 > hs.max_history_window_s:
        raise HTTPException(422, f"the window exceeds the maximum of {hs.max_history_window_s:.0f} s; narrow it")
    q = _query(ctx)
    bucket = _bucket_s(start_ns, end_ns, points)
    series = []
    for key in signal:
        station, _meas, name = _split(key)
        params: dict[str, Any] = {"signal": name, "start": start_ns, "end": end_ns}
        src = _where(station, ctx.line, ['"signal" = $signal', "time >= $start", "time < $end"], params)
        rows = await _run(q, f'SELECT mean("value") AS "mean", min("value") AS "min", max("value") AS "max", '
                             f'count("value") AS "n" {src} GROUP BY time({bucket}s) fill(none)', params)
        spec = ctx.settings.live.specs.get(key)
        latest = ctx.live.value(key)
        series.append({"signal": key, "unit": latest.unit if latest is not None else None,
                       "spec": spec.model_dump() if spec else None,
                       "points": [[r["time"], r.get("mean"), r.get("min"), r.get("max"), r.get("n")] for r in rows]})
    acts_on = _setpoint_signals(ctx)
    marks = []
    rows = await _run(q, 'SELECT "who", "why", "target", "before", "after", "recommendation_id" FROM "twin_audit" '
                         'WHERE "line" = $line AND "action" = $action AND time >= $start AND time < $end '
                         f"ORDER BY time ASC LIMIT {MAX_MARKS}",
                      {"line": ctx.line, "action": "write", "start": start_ns, "end": end_ns})
    for r in rows:
        target = r.get("target") or ""
        marks.append({"time_ns": r["time"], "setpoint": target, "signal": acts_on.get(target), "who": r.get("who"),
                      "why": r.get("why"), "before": r.get("before"), "after": r.get("after"),
                      "recommendation_id": r.get("recommendation_id")})
    return _clean({"start": ns_to_iso(start_ns), "end": ns_to_iso(end_ns), "start_ns": start_ns, "end_ns": end_ns,
                   "bucket_s": bucket, "series": series, "setpoint_changes": marks,
                   "setpoint_changes_truncated": len(rows) >= MAX_MARKS})


@router.get("/rolls")
async def rolls(ctx: Ctx, _: Viewer,
                signal: str = Query(..., max_length=200, description="<station>/<signal> of a gauge"),
                end: str | None = Query(None, description="RFC 3339 or ns; default: now"),
                days: float = Query(7.0, gt=0, le=31, description="how far back from end"),
                limit: int = Query(50, ge=1, le=MAX_ROLLS)) -> Any:
    """The rolls a gauge (or its cross-web tracks) measured, newest first, with their first / last sample time,
    position range and count."""
    station, _meas, name = _split(signal)
    end_ns = _time_ns(end, time.time_ns(), "end")
    start_ns = end_ns - int(days * 86400e9)
    q = _query(ctx)
    rows: list[dict[str, Any]] = []
    for cond in ('"signal" = $signal', f'"signal" =~ /^{name}\\.P000$/'):
        if cond.startswith('"signal" =~') and not NAME_RE.fullmatch(name):
            break
        params: dict[str, Any] = {"start": start_ns, "end": end_ns}
        if "$signal" in cond:
            params["signal"] = name
        src = _where(station, ctx.line, [cond, "time >= $start", "time < $end"], params)
        rows = await _run(q, f'SELECT count("value") AS "n", min("roll_position_m") AS "from_m", '
                             f'max("roll_position_m") AS "to_m" {src} GROUP BY "roll_id"', params)
        if rows:
            break
    if not rows:
        return {"signal": signal, "rolls": [], "count": 0}
    firsts = await _run(q, f'SELECT first("value") {src} GROUP BY "roll_id"', params)
    lasts = await _run(q, f'SELECT last("value") {src} GROUP BY "roll_id"', params)
    t0 = {r.get("roll_id"): r["time"] for r in firsts}
    t1 = {r.get("roll_id"): r["time"] for r in lasts}
    out = [{"roll": r["roll_id"], "n": r.get("n"), "from_m": r.get("from_m"), "to_m": r.get("to_m"),
            "first_ns": t0.get(r["roll_id"]), "last_ns": t1.get(r["roll_id"])} for r in rows if r.get("roll_id")]
    out.sort(key=lambda r: r["last_ns"] or 0, reverse=True)
    return _clean({"signal": signal, "rolls": out[:limit], "count": len(out)})


@router.get("/rollmap2d")
async def rollmap2d(ctx: Ctx, _: Viewer,
                    signal: str = Query(..., max_length=200, description="<station>/<signal> of the gauge; its "
                                        "cross-web tracks are the series <signal>.P000, .P001 ..."),
                    roll: str = Query(..., max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"),
                    bins: int = Query(200, ge=10, le=MAX_BINS, description="machine-direction bins")) -> Any:
    """A roll's 2-D map: machine direction (roll position, m) x cross-web track, the mean of each cell from InfluxDB;
    without cross-web tracks, the gauge itself as one track. Segment boundaries are the roll's RollSegment trace
    events (their input's from_m / to_m on this roll)."""
    station, _meas, name = _split(signal)
    if not NAME_RE.fullmatch(name):
        raise HTTPException(422, f"signal name {name!r} must match {NAME_RE.pattern}")
    q = _query(ctx)
    # the tracks: <signal>.Pnnn, matched by a regular expression built from the checked name only; without tracks,
    # the gauge itself is the one track
    tracks_cond = f'"signal" =~ /^{name}\\.P[0-9]+$/'
    cond, source = tracks_cond, "cross-web tracks"
    params: dict[str, Any] = {"roll": roll}
    src = _where(station, ctx.line, [cond, '"roll_id" = $roll'], params)
    span = await _run(q, f'SELECT count("value") AS "n", min("roll_position_m") AS "from_m", '
                         f'max("roll_position_m") AS "to_m" {src}', params)
    if not span or not span[0].get("n"):
        cond, source = '"signal" = $signal', "the gauge (no cross-web tracks)"
        params = {"roll": roll, "signal": name}
        src = _where(station, ctx.line, [cond, '"roll_id" = $roll'], params)
        span = await _run(q, f'SELECT count("value") AS "n", min("roll_position_m") AS "from_m", '
                             f'max("roll_position_m") AS "to_m" {src}', params)
    if not span or not span[0].get("n"):
        raise HTTPException(404, f"no sample of {signal} (nor of its cross-web tracks {signal}.Pnnn) on roll "
                                 f"{roll!r} in the store")
    first = await _run(q, f'SELECT first("value") {src}', params)
    last = await _run(q, f'SELECT last("value") {src}', params)
    spec = ctx.settings.live.specs.get(signal)
    t0, t1 = int(first[0]["time"]), int(last[0]["time"]) + 1
    bucket_ns = max(1, math.ceil((t1 - t0) / bins))
    params_b = {**params, "start": t0, "end": t1}
    src_b = f"{src} AND time >= $start AND time < $end"
    rows = await _run(q, f'SELECT mean("value") AS "v", mean("roll_position_m") AS "x" {src_b} '
                         f'GROUP BY time({bucket_ns}ns), "signal" fill(none)', params_b)
    if source == "cross-web tracks":
        tracks = sorted({r["signal"] for r in rows if TRACK_RE.search(r.get("signal") or "")},
                        key=lambda s: int(TRACK_RE.search(s).group(1)))[:MAX_TRACKS]  # type: ignore[union-attr]
    else:
        tracks = [name]
    # machine direction: the mean roll position of each time bin over the tracks
    xs: dict[int, list[float]] = {}
    for r in rows:
        if r.get("x") is not None:
            xs.setdefault(r["time"], []).append(r["x"])
    x_of = {t: sum(v) / len(v) for t, v in xs.items()}
    index = {s: i for i, s in enumerate(tracks)}
    times = sorted(x_of)
    col = {t: i for i, t in enumerate(times)}
    grid: list[list[float | None]] = [[None] * len(times) for _ in tracks]
    for r in rows:
        i, j = index.get(r.get("signal", "")), col.get(r["time"])
        if i is not None and j is not None:
            grid[i][j] = r.get("v")
    segments = await _segments(q, ctx.line, roll, t0)
    return _clean({"signal": signal, "roll": roll, "source": source, "spec": spec.model_dump() if spec else None,
                   "tracks": tracks, "x_m": [x_of[t] for t in times], "values": grid,
                   "n": span[0].get("n"), "from_m": span[0].get("from_m"), "to_m": span[0].get("to_m"),
                   "first_ns": t0, "last_ns": t1, "segments": segments})


async def _segments(q: Any, line: str, roll: str, since_ns: int) -> list[dict[str, Any]]:
    """The roll's segments: RollSegment trace events made from it (created when the roll is complete, so after its
    first gauge sample), at most 1 000 events read."""
    rows = await _run(q, 'SELECT "json" FROM "trace_events" WHERE "line" = $line AND "type" = $type AND '
                         '"kind" = $kind AND time >= $start ORDER BY time ASC LIMIT 1000',
                      {"line": line, "type": "RollSegment", "kind": "created", "start": since_ns})
    out = []
    for r in rows:
        try:
            ev = json.loads(r["json"])
        except (TypeError, ValueError):
            continue
        for inp in ev.get("inputs") or []:
            if inp.get("id") == roll and inp.get("from_m") is not None and inp.get("to_m") is not None:
                out.append({"id": ev.get("id"), "from_m": inp["from_m"], "to_m": inp["to_m"],
                            "properties": ev.get("properties") or {}})
    return sorted(out, key=lambda s: s["from_m"])
