"""Line protocol and queries against a real influxd 1.x; the v2 write path against a real VictoriaMetrics."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
import urllib.parse
import urllib.request
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.records import Sample, TraceEvent
from deploy.localstack import Influxd, VictoriaMetrics
from twin.store.influx import InfluxV1Writer, InfluxV2Writer, WriteError
from twin.store.lineproto import encode, sample_line
from twin.store.query import InfluxQuery, QueryError

_db = itertools.count()
T0 = 1_790_000_000_000_000_000


def new_db(prefix: str = "store") -> str:
    return f"{prefix}_{int(time.time())}_{next(_db)}"


tag_text = st.text(st.characters(min_codepoint=33, max_codepoint=0x24F, exclude_characters="\\"), min_size=1,
                   max_size=12)
str_values = st.text(st.characters(min_codepoint=32, max_codepoint=0x24F, exclude_characters="\\\n\r"), max_size=30)


@st.composite
def stored_samples(draw: Any) -> Sample:
    value = draw(st.one_of(st.floats(-1e12, 1e12, allow_nan=False), st.integers(-10**9, 10**9), st.booleans(),
                           str_values))
    trace: dict[str, Any] = {"roll_id": draw(st.from_regex(r"\ACR-[CA]-[0-9]{6}\Z"))}
    if draw(st.booleans()):
        trace["roll_position_m"] = draw(st.floats(0, 5000, allow_nan=False))
    if draw(st.booleans()):
        trace["cell_id"] = draw(st.from_regex(r"\ACELL-[0-9]{6}\Z"))
    return Sample(T0 + draw(st.integers(0, 10**12)), "PL1", "Coating/" + draw(st.sampled_from(["Cathode", "Anode"])),
                  draw(st.from_regex(r"\A[A-Z][A-Za-z0-9]{0,10}\Z")), value, draw(st.sampled_from(["um", "m/min"])),
                  draw(st.sampled_from(["good", "uncertain", "bad"])), "src", trace,
                  tags={"machine": draw(tag_text)})


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(stored_samples(), min_size=1, max_size=20, unique_by=lambda s: (s.time_ns, s.signal)))
def test_line_protocol_round_trips_through_influxd(influxd: Influxd, samples: list[Sample]) -> None:
    db = new_db("lp")

    async def go() -> list[dict[str, Any]]:
        w = InfluxV1Writer(influxd.url, db)
        data, n = encode(samples)
        assert n == len(samples)
        await w.write(data)
        await w.close()
        async with InfluxQuery(influxd.url, db) as q:
            return await q.samples_in_window(T0, T0 + 10**13)

    rows = run(go())
    assert len(rows) == len(samples)
    by_key = {(r["time"], r["signal"]): r for r in rows}
    for s in samples:
        r = by_key[(s.time_ns, s.signal)]
        meas, lane = s.station.split("/")
        assert r["_measurement"] == meas and r["lane"] == lane and r["line"] == "PL1"
        assert r["unit"] == s.unit and r["quality"] == s.quality and r["roll_id"] == s.trace["roll_id"]
        assert r["machine"] == s.tags["machine"]
        if isinstance(s.value, bool):
            assert r["value_bool"] is s.value
        elif isinstance(s.value, int | float):
            assert math.isclose(r["value"], float(s.value), rel_tol=1e-15, abs_tol=0)
        else:
            assert r["value_str"] == s.value
        if "roll_position_m" in s.trace:
            assert math.isclose(r["roll_position_m"], s.trace["roll_position_m"], rel_tol=1e-15, abs_tol=1e-300)
        assert r.get("cell_id") == s.trace.get("cell_id")


def test_bad_sample_without_value_is_stored_as_bad(influxd: Influxd) -> None:
    db = new_db()
    s = Sample(T0, "PL1", "DryRoom", "DewPoint", math.nan, "Cel", "bad", "ns=2;s=x")
    assert "bad=true" in sample_line(s)

    async def go() -> list[dict[str, Any]]:
        w = InfluxV1Writer(influxd.url, db)
        await w.write(encode([s])[0])
        await w.close()
        async with InfluxQuery(influxd.url, db) as q:
            return await q.signal_history("DryRoom", "DewPoint", T0, T0 + 1)

    rows = run(go())
    assert len(rows) == 1 and rows[0]["quality"] == "bad" and rows[0]["bad"] is True and rows[0].get("value") is None


def test_replay_overwrites_instead_of_duplicating(influxd: Influxd) -> None:
    db = new_db()
    samples = [Sample(T0 + i, "PL1", "Coating/Cathode", "WebSpeed", 1.0 + i, "m/min", trace={"roll_id": "CR-C-000001"})
               for i in range(100)]

    async def go() -> int:
        w = InfluxV1Writer(influxd.url, db)
        data, _ = encode(samples)
        for _ in range(3):
            await w.write(data)
        await w.close()
        async with InfluxQuery(influxd.url, db) as q:
            return await q.count("Coating/Cathode")

    assert run(go()) == 100


def test_trace_events_are_stored_and_read_back(influxd: Influxd) -> None:
    db = new_db()
    base = {"schema": "pilotline.trace.v1", "line": "PL1", "time": "2026-11-21T10:00:00.000000Z", "kind": "consumed",
            "type": "SlurryBatch", "step": "Coating", "station": "Coating/Cathode", "equipment": "X",
            "inputs": [], "parameters": {}, "properties": {}}
    events = [TraceEvent.from_json({**base, "seq": i, "id": f"SB-C-{i:06d}"}) for i in range(1, 6)]  # same instant

    async def go() -> list[TraceEvent]:
        w = InfluxV1Writer(influxd.url, db)
        await w.write(encode(events)[0])
        await w.write(encode(events)[0])  # replay
        await w.close()
        async with InfluxQuery(influxd.url, db) as q:
            assert [e.id for e in await q.trace_events(trace_id="SB-C-000003")] == ["SB-C-000003"]
            return await q.trace_events()

    assert run(go()) == events


def test_queries_bind_values_and_refuse_bad_identifiers(influxd: Influxd) -> None:
    db = new_db()
    s = Sample(T0, "PL1", "Coating/Cathode", "WebSpeed", 1.0, "m/min", trace={"roll_id": "CR-C-000001"})
    evil = "CR-C-000001' OR '1'='1"

    async def go() -> None:
        w = InfluxV1Writer(influxd.url, db)
        await w.write(encode([s])[0])
        await w.close()
        async with InfluxQuery(influxd.url, db) as q:
            assert len(await q.samples_for_trace_id("roll_id", "CR-C-000001")) == 1
            assert await q.samples_for_trace_id("roll_id", evil) == []  # bound: a value, not InfluxQL
            assert await q.signal_history("Coating/Cathode", 'WebSpeed" OR 1=1 --', T0, T0 + 1) == []
            with pytest.raises(QueryError, match="measurement"):
                await q.signal_history('Coating"; DROP DATABASE x', "WebSpeed", T0, T0 + 1)
            with pytest.raises(QueryError, match="trace_key"):
                await q.samples_for_trace_id("roll_id = '' OR 1", "x")
            with pytest.raises(QueryError, match="before"):
                await q.signal_history("Coating/Cathode", "WebSpeed", T0 + 5, T0)
            with pytest.raises(QueryError, match="InfluxDB"):
                await q.influxql("SELEKT nonsense")

    run(go())


def test_write_errors_are_classified(influxd: Influxd) -> None:
    async def go() -> None:
        w = InfluxV1Writer(influxd.url, new_db())
        with pytest.raises(WriteError) as e:
            await w.write(b"not line protocol at all\n")
        assert not e.value.retryable and e.value.status == 400
        down = InfluxV1Writer("http://127.0.0.1:1", "x", timeout_s=1)
        with pytest.raises(WriteError) as e2:
            await down.write(b"m v=1 1\n")
        assert e2.value.retryable
        await w.close()
        await down.close()

    run(go())
    with pytest.raises(ValueError, match="database"):
        InfluxV1Writer(influxd.url, 'x"; DROP')


def test_v2_write_path_against_victoria_metrics(victoria_metrics: VictoriaMetrics) -> None:
    """VictoriaMetrics implements /api/v2/write: the influxdb-client path meets a real server."""
    samples = [Sample(T0 + i * 10**9, "PL1", "Coating/Cathode", "WebSpeed", 1.0 + i, "m/min",
                      trace={"roll_id": "CR-C-000001"}) for i in range(50)]

    async def go() -> None:
        w = InfluxV2Writer(victoria_metrics.url, "pilotline", "pilotline", "token")
        await w.write(encode(samples)[0])
        await w.close()

    run(go())
    httpx.get(f"{victoria_metrics.url}/internal/force_flush", timeout=10)
    q = urllib.parse.urlencode({"match[]": '{__name__="Coating_value",signal="WebSpeed"}',
                                "start": str(T0 // 10**9 - 10), "end": str(T0 // 10**9 + 100)})
    deadline = time.monotonic() + 10
    values: list[Any] = []
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{victoria_metrics.url}/api/v1/export?{q}", timeout=5) as r:  # noqa: S310
            lines = [json.loads(x) for x in r.read().decode().splitlines() if x.strip()]
        values = [v for line in lines for v in line["values"]]
        if len(values) == 50:
            break
        time.sleep(0.3)
    assert sorted(values) == [1.0 + i for i in range(50)]
    assert lines[0]["metric"]["roll_id"] == "CR-C-000001" and lines[0]["metric"]["lane"] == "Cathode"


def test_v2_write_to_a_dead_server_is_retryable() -> None:
    async def go() -> None:
        w = InfluxV2Writer("http://127.0.0.1:1", "b", "o", "t", timeout_s=1)
        with pytest.raises(WriteError) as e:
            await w.write(b"m v=1 1\n")
        assert e.value.retryable
        await w.close()

    run(go())


def test_an_unreadable_stored_trace_event_is_left_out_not_fatal(influxd: Influxd) -> None:
    """A row an older, laxer version stored (a line with a space and a slash) no longer fails the whole read."""
    db = new_db()
    good = TraceEvent.from_json({"schema": "pilotline.trace.v1", "line": "PL1", "time": "2026-11-21T10:00:00Z",
                                 "seq": 1, "kind": "consumed", "type": "SlurryBatch", "id": "SB-C-000001",
                                 "step": "Coating", "station": "Coating/Cathode", "inputs": []})
    old = json.dumps({**good.to_json(), "seq": 2, "line": "PL 1/A"}, separators=(",", ":")).replace('"', '\\"')

    async def go() -> tuple[list[TraceEvent], list[str]]:
        w = InfluxV1Writer(influxd.url, db)
        await w.write(encode([good])[0])
        await w.write(f'trace_events,line=PL1 seq=2i,json="{old}" 1795600000000000000\n'.encode())
        await w.close()
        unreadable: list[str] = []
        async with InfluxQuery(influxd.url, db) as q:
            return await q.trace_events(unreadable=unreadable), unreadable

    events, unreadable = run(go())
    assert events == [good]
    assert len(unreadable) == 1 and "line" in unreadable[0], unreadable


def test_audit_lines_keep_awkward_text(influxd: Influxd) -> None:
    """The twin's own lines use the store's one escaping: quotes, backslashes, commas and spaces in an audit's reason
    and a space in a loop name (a tag) reach InfluxDB as written, in one point; a line break, which line protocol has
    no way to carry in a value, is kept as the two characters backslash-n (the audit writer used to drop it)."""
    from twin.audit import AuditEntry, audit_line_protocol

    db = new_db()
    why = 'operator said "hold", path C:\\line 2,\nnext shift'
    entry = AuditEntry(id=7, time_ns=1_795_600_000_000_000_000, action="rejected", who="olga", why=why,
                       loop="cathode coating", target="Coating/Cathode/PumpFlowRate", before=696.0, after="n/a")

    async def go() -> list[dict[str, Any]]:
        w = InfluxV1Writer(influxd.url, db)
        await w.write((audit_line_protocol(entry, "PL1") + "\n").encode())
        await w.close()
        async with InfluxQuery(influxd.url, db) as q:
            return await q.influxql('SELECT * FROM "twin_audit"')

    rows = run(go())
    assert len(rows) == 1
    row = rows[0]
    assert row["why"] == why.replace("\n", "\\n") and row["loop"] == "cathode coating" and row["after_text"] == "n/a"
    assert row["before"] == 696.0 and row["who"] == "olga"
