"""Read back what ingest stored: InfluxQL with bound parameters (``params=`` on ``/query``), never string-built.

Values (IDs, signal names, times) are always bound (``$signal``). Identifiers cannot be bound in InfluxQL, so the
measurement and the trace key are checked against a strict pattern / a fixed list before they are quoted into the
statement; anything else is a ``QueryError`` that says what is allowed.

InfluxDB 2.x / 3.x answer the same statements on their v1-compatible ``/query`` endpoint with a token
(``Authorization: Token ...``); the database is the bucket (2.x needs a DBRP mapping for it, 3.x does not).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import httpx

from connectors.records import TRACE_KEYS, RecordError, TraceEvent
from twin.store.lineproto import TRACE_MEASUREMENT, measurement_of

log = logging.getLogger(__name__)

MEASUREMENT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
Row = dict[str, Any]


class QueryError(ValueError):
    """A query cannot be run as asked (bad name, bad window, database error); the message says why."""


def _quote_ident(name: str) -> str:
    if not MEASUREMENT_RE.fullmatch(name):
        raise QueryError(f"{name!r} is not a valid measurement / key name ({MEASUREMENT_RE.pattern})")
    return f'"{name}"'


def _source(station: str | None, where: list[str], params: dict[str, Any]) -> str:
    """The FROM clause of a station (its measurement, plus a bound lane condition added to ``where``), or every
    measurement when no station is given."""
    if not station:
        return "/.*/"
    meas, lane = measurement_of(station)
    if lane:
        where.append('"lane" = $lane')
        params["lane"] = lane
    return _quote_ident(meas)


class InfluxQuery:
    def __init__(self, url: str, database: str, *, version: int = 1, token: str = "", username: str = "",
                 password: str = "", timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.database = database
        headers = {"Authorization": f"Token {token}"} if version == 2 and token else {}
        auth = (username, password) if username else None
        self._client = httpx.AsyncClient(timeout=timeout_s, headers=headers, auth=auth)

    async def close(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> InfluxQuery:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def influxql(self, statement: str, params: dict[str, Any] | None = None) -> list[Row]:
        """Run one statement with bound parameters; rows are dicts (``time`` in ns, tags included)."""
        data = {"q": statement, "db": self.database, "epoch": "ns"}
        if params:
            data["params"] = json.dumps(params)
        try:
            r = await self._client.post(f"{self.url}/query", data=data)
        except httpx.HTTPError as exc:
            raise QueryError(f"InfluxDB at {self.url} unreachable: {exc}") from None
        if r.status_code != 200:
            raise QueryError(f"InfluxDB answered HTTP {r.status_code}: {r.text[:300]}")
        body = r.json()
        rows: list[Row] = []
        for res in body.get("results", []):
            if "error" in res:
                raise QueryError(f"InfluxDB: {res['error']}")
            for series in res.get("series", []):
                cols = series["columns"]
                tags = series.get("tags", {})
                name = series.get("name")
                for values in series["values"]:
                    row = dict(zip(cols, values, strict=True))
                    row.update(tags)
                    row["_measurement"] = name
                    rows.append(row)
        return rows

    # -- the queries later issues call -----------------------------------------------------------------------------
    async def signal_history(self, station: str, signal: str, start_ns: int, end_ns: int, *, line: str | None = None,
                             limit: int = 100_000) -> list[Row]:
        """Every stored sample of one signal of one station in ``[start_ns, end_ns)``, oldest first."""
        if end_ns < start_ns:
            raise QueryError(f"end {end_ns} is before start {start_ns}")
        meas, lane = measurement_of(station)
        where = ['"signal" = $signal', "time >= $start", "time < $end"]
        params: dict[str, Any] = {"signal": signal, "start": start_ns, "end": end_ns}
        if lane:
            where.append('"lane" = $lane')
            params["lane"] = lane
        if line:
            where.append('"line" = $line')
            params["line"] = line
        q = f"SELECT * FROM {_quote_ident(meas)} WHERE {' AND '.join(where)} ORDER BY time ASC LIMIT {int(limit)}"
        return await self.influxql(q, params)

    async def samples_in_window(self, start_ns: int, end_ns: int, *, station: str | None = None,
                                line: str | None = None, limit: int = 1_000_000) -> list[Row]:
        """All samples of one station (or of every station) in ``[start_ns, end_ns)``."""
        if end_ns < start_ns:
            raise QueryError(f"end {end_ns} is before start {start_ns}")
        where = ["time >= $start", "time < $end"]
        params: dict[str, Any] = {"start": start_ns, "end": end_ns}
        source = _source(station, where, params)
        if line:
            where.append('"line" = $line')
            params["line"] = line
        q = f"SELECT * FROM {source} WHERE {' AND '.join(where)} ORDER BY time ASC LIMIT {int(limit)}"
        return await self.influxql(q, params)

    async def samples_for_trace_id(self, trace_key: str, trace_id: str, *, station: str | None = None,
                                   start_ns: int | None = None, end_ns: int | None = None,
                                   limit: int = 1_000_000) -> list[Row]:
        """All samples taken while ``trace_key`` (``roll_id``, ``cell_id`` ...) was ``trace_id``."""
        if trace_key not in TRACE_KEYS or trace_key in ("roll_position_m", "seq"):
            id_keys = [k for k in TRACE_KEYS if k not in ("roll_position_m", "seq")]
            raise QueryError(f"trace_key must be one of the ID keys {id_keys}")
        where = [f"{_quote_ident(trace_key)} = $id"]
        params: dict[str, Any] = {"id": trace_id}
        if start_ns is not None:
            where.append("time >= $start")
            params["start"] = start_ns
        if end_ns is not None:
            where.append("time < $end")
            params["end"] = end_ns
        source = _source(station, where, params)
        q = f"SELECT * FROM {source} WHERE {' AND '.join(where)} ORDER BY time ASC LIMIT {int(limit)}"
        return await self.influxql(q, params)

    async def trace_events(self, *, start_ns: int | None = None, end_ns: int | None = None,
                           trace_id: str | None = None, line: str | None = None,
                           unreadable: list[str] | None = None) -> list[TraceEvent]:
        """Stored trace events (oldest first), optionally in a window or of one ID.

        A row the contract's parser refuses (stored by an older, laxer version, or written by hand) does not make
        the whole answer fail: it is left out, logged, and its reason appended to ``unreadable`` when given."""
        where: list[str] = []
        params: dict[str, Any] = {}
        if start_ns is not None:
            where.append("time >= $start")
            params["start"] = start_ns
        if end_ns is not None:
            where.append("time < $end")
            params["end"] = end_ns
        if trace_id is not None:
            where.append('"id" = $id')
            params["id"] = trace_id
        if line is not None:
            where.append('"line" = $line')
            params["line"] = line
        cond = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self.influxql(f'SELECT "json" FROM "{TRACE_MEASUREMENT}"{cond} ORDER BY time ASC', params)
        events: list[TraceEvent] = []
        for r in rows:
            try:
                events.append(TraceEvent.from_json(json.loads(r["json"])))
            except (RecordError, ValueError, TypeError) as exc:
                reason = f"stored trace event at {r.get('time')} is unreadable: {exc}"
                log.warning("%s", reason)
                if unreadable is not None:
                    unreadable.append(reason)
        return events

    async def count(self, station: str, *, signal: str | None = None) -> int:
        meas, lane = measurement_of(station)
        where: list[str] = []
        params: dict[str, Any] = {}
        if signal:
            where.append('"signal" = $signal')
            params["signal"] = signal
        if lane:
            where.append('"lane" = $lane')
            params["lane"] = lane
        cond = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self.influxql(f"SELECT count(*) FROM {_quote_ident(meas)}{cond}", params)
        if not rows:
            return 0
        return max(int(v) for k, v in rows[0].items() if k.startswith("count_") and v is not None)
