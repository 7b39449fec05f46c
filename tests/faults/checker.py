"""Every value the simulator recorded against what InfluxDB holds: lost, duplicated, mis-tagged, and genealogy.

The simulator's ``--record`` is the ground truth, independent of ingest. The rules of what *could* be had (the rest
must be in InfluxDB exactly once, with the value and the trace IDs the record says were current):

- OPC UA: a value published before the first value of its node that reached InfluxDB in a run was published before
  any subscription of ours existed (a freshly started server): not counted. Neither are the last
  ``UNPUBLISHED_STEPS`` steps of a run (the server stopped before a publish cycle followed them), nor, in a run ended
  by SIGKILL, the values after the newest instant InfluxDB holds from that run (one publish response carries every
  node's changes up to an instant; the rest never left the killed server: ``unsent``).
- A run ended by SIGKILL: MQTT messages (telemetry, results, trace events) after the last one InfluxDB holds had
  not left the simulator's client (paho queues them; the broker's TCP stream is in order): counted as ``unsent``,
  not lost. A gap *before* the last stored one is loss.
- Trace IDs: for each sample, every ID variable of its station (``RollId``, ``RollPosition``, ``BatchId`` ...) as
  the record says it was at the sample's source time (the latest value at or before it). A sample older than the
  first stored value of an ID node (e.g. an unchanged setpoint's initial value at a run's first instant, when the
  roll position of that instant was superseded before the subscription existed) may carry no such tag, never a
  wrong one.
- Genealogy: every cell the record's trace events created has all its ancestors (the closure of the ``inputs`` of
  the ``created`` events) in the genealogy the caller hands in (the twin's API, or a store built from the stored
  trace events).

Counts, never a first-failure assert, so a fault schedule reports everything it broke at once.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from connectors.records import iso_to_ns
from tests.ingest.conftest import IdTimeline, Record, station_signal

#: the line's ID variables -> the trace key a sample of the same station must carry (the checker's own table)
ID_VARS: dict[str, str] = {
    "RollId": "roll_id", "BatchId": "slurry_batch_id", "SlurryBatchId": "slurry_batch_id",
    "SourceRollId": "source_roll_id", "RollPosition": "roll_position_m", "CellId": "cell_id",
}
EXAMPLES = 5


@dataclass
class Run:
    """One simulator process's record and how it ended (``stopped``: SIGTERM, record complete; ``killed``)."""

    record: Record
    ended: str = "stopped"
    tick_s: float = 5.0


@dataclass
class Report:
    opcua_checked: int = 0
    opcua_lost: int = 0
    opcua_duplicated: int = 0
    opcua_wrong_value: int = 0
    opcua_mis_tagged: int = 0
    opcua_unsent: int = 0  # after the newest instant a SIGKILLed server had published
    mis_tagged_by_key: Counter[str] = field(default_factory=Counter)
    mqtt_checked: int = 0
    mqtt_lost: int = 0
    mqtt_duplicated: int = 0
    mqtt_mis_tagged: int = 0
    mqtt_unsent: int = 0
    trace_checked: int = 0
    trace_lost: int = 0
    trace_duplicated: int = 0
    trace_unsent: int = 0
    series_with_two_units: int = 0
    cells: int = 0
    genealogy_checked: bool = False
    genealogy_incomplete: int = 0
    genealogy_unknown: int = 0
    ids_reused: int = 0  # (line, ID) created twice (a restarted simulator has its own line ID: should be 0)
    first_stored_median_s: float = 0.0  # line time from a run's start to a node's first stored value (median)
    examples: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))

    @property
    def lost(self) -> int:
        return self.opcua_lost + self.mqtt_lost + self.trace_lost

    @property
    def duplicated(self) -> int:
        return self.opcua_duplicated + self.mqtt_duplicated + self.trace_duplicated

    @property
    def mis_tagged(self) -> int:
        return self.opcua_mis_tagged + self.mqtt_mis_tagged

    def example(self, kind: str, what: Any) -> None:
        if len(self.examples[kind]) < EXAMPLES:
            self.examples[kind].append(what)

    def summary(self) -> str:
        lines = [
            (f"lost {self.lost}, duplicated {self.duplicated}, mis-tagged {self.mis_tagged}, wrong value "
             f"{self.opcua_wrong_value}, genealogy incomplete {self.genealogy_incomplete} / unknown "
             f"{self.genealogy_unknown} of {self.cells} cells"
             + ("" if self.genealogy_checked else " (genealogy not checked)")),
            (f"  OPC UA: {self.opcua_checked} checked, {self.opcua_lost} lost, {self.opcua_duplicated} duplicated, "
             f"{self.opcua_mis_tagged} mis-tagged {dict(self.mis_tagged_by_key)}, {self.opcua_wrong_value} wrong "
             f"value, {self.opcua_unsent} unsent at a simulator kill"),
            (f"  MQTT: {self.mqtt_checked} messages, {self.mqtt_lost} lost, {self.mqtt_duplicated} duplicated, "
             f"{self.mqtt_mis_tagged} mis-tagged, {self.mqtt_unsent} unsent at a simulator kill"),
            (f"  trace events: {self.trace_checked}, {self.trace_lost} lost, {self.trace_duplicated} duplicated, "
             f"{self.trace_unsent} unsent at a simulator kill; IDs reused by a simulator restart: {self.ids_reused}"),
            (f"  series with two units: {self.series_with_two_units}; first stored value per node (median, line "
             f"time after the run's start): {self.first_stored_median_s:.0f} s"),
        ]
        for kind, ex in self.examples.items():
            lines.append(f"  e.g. {kind}: " + "; ".join(str(e)[:300] for e in ex))
        return "\n".join(lines)

    def clean(self) -> bool:
        return (self.lost == 0 and self.duplicated == 0 and self.mis_tagged == 0 and self.opcua_wrong_value == 0
                and self.series_with_two_units == 0 and self.genealogy_incomplete == 0
                and self.genealogy_unknown == 0)


def _run_range(run: Record) -> tuple[int, int]:
    ts = [t for vals in run.opcua.values() for t, _, _ in vals]
    return min(ts), max(ts)


def _same_value(recorded: Any, status: str, row: dict[str, Any]) -> bool:
    if status and status.startswith("Bad"):
        return row.get("quality") == "bad"
    if isinstance(recorded, bool):
        return row.get("value_bool") in (recorded, None) or row.get("value") == float(recorded)
    if isinstance(recorded, int | float):
        v = row.get("value")
        return v is not None and math.isclose(v, float(recorded), rel_tol=1e-12, abs_tol=1e-12)
    if isinstance(recorded, str):
        return row.get("value_str", "") == recorded or (recorded == "" and row.get("value_str") is None)
    return True  # arrays and other shapes: presence is what is checked


def _tag_matches(key: str, want: Any, got: Any) -> bool:
    if key == "roll_position_m":
        if want is None:
            return got is None
        return got is not None and math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-9)
    return got == want


def check_opcua(runs: list[Run], rows: list[dict[str, Any]], report: Report) -> None:
    stored: dict[tuple[str, str, str], dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["_measurement"] != "trace_events" and r.get("protocol") is None and r.get("signal") is not None:
            stored[(r["_measurement"], r.get("lane") or "", r["signal"])][r["time"]].append(r)
    first_gaps: list[int] = []
    for run in runs:
        rec = run.record
        if not rec.opcua:
            continue
        lo, hi = _run_range(rec)
        tail_from = hi - int(UNPUBLISHED_STEPS * run.tick_s * 1e9)
        if run.ended == "killed":
            # one publish response carries every node's changes up to an instant: what came after the newest
            # instant that reached InfluxDB was still in the killed server
            recorded = {t for values in rec.opcua.values() for t, _, _ in values}
            newest = max((t for key in {station_signal(p) for p in rec.opcua} for t in stored[key]
                          if lo <= t <= hi and t in recorded), default=lo)
            report.opcua_unsent += sum(1 for values in rec.opcua.values() for t, _, _ in values if t > newest)
            tail_from = newest
        timelines = {p: IdTimeline(v) for p, v in rec.opcua.items() if p.rsplit(".", 1)[-1] in ID_VARS}
        first_seen: dict[str, int] = {}  # per node: its first value that reached InfluxDB in this run
        for path, values in rec.opcua.items():
            recorded_times = {t for t, _, _ in values}
            matched_t = [t for t in stored[station_signal(path)] if lo <= t <= hi and t in recorded_times]
            if matched_t:
                first_seen[path] = min(matched_t)
        for path, values in rec.opcua.items():
            mine = {t: rs for t, rs in stored[station_signal(path)].items() if lo <= t <= hi}
            recorded_times = {t for t, _, _ in values}
            matched = [t for t in mine if t in recorded_times]
            if not matched:
                n = sum(1 for t, _, _ in values if t <= tail_from)
                report.opcua_lost += n
                report.opcua_checked += n
                if n:
                    report.example("OPC UA node never stored in a run", (path, n))
                continue
            t_first = min(matched)
            first_gaps.append(t_first - lo)
            station = path.rsplit(".", 1)[0] if "." in path else ""
            id_paths = [(f"{station}.{var}", key) for var, key in ID_VARS.items()
                        if f"{station}.{var}" in timelines]
            for t, value, status in values:
                if t < t_first or t > tail_from:
                    continue
                report.opcua_checked += 1
                rs = mine.get(t)
                if not rs:
                    report.opcua_lost += 1
                    steps_before_end = (hi - t) / (run.tick_s * 1e9)
                    report.example("lost OPC UA", (path, t, f"{steps_before_end:.0f} steps before the run's end"))
                    continue
                if len(rs) > 1:
                    report.opcua_duplicated += len(rs) - 1
                    report.example("duplicated OPC UA", (path, t, [_tags(r) for r in rs]))
                if not any(_same_value(value, status, r) for r in rs):
                    report.opcua_wrong_value += 1
                    report.example("wrong value", (path, t, value, [r.get("value") for r in rs]))
                wrong = []
                for id_path, key in id_paths:
                    want = timelines[id_path].at(t)
                    # an ID value superseded before our subscription existed was never observable: "unknown" (no
                    # tag) is right for samples older than the ID node's first stored value, a wrong ID is not
                    unobservable = t < first_seen.get(id_path, hi + 1)
                    if not any(_tag_matches(key, want, r.get(key)) or unobservable and r.get(key) is None
                               for r in rs):
                        wrong.append((key, want, rs[0].get(key)))
                if wrong:
                    report.opcua_mis_tagged += 1
                    report.mis_tagged_by_key.update(k for k, _, _ in wrong)
                    report.example("mis-tagged OPC UA", (path, t, wrong))
    if first_gaps:
        report.first_stored_median_s = sorted(first_gaps)[len(first_gaps) // 2] / 1e9


UNPUBLISHED_STEPS = 3  # at 24 steps per wall second and a 100 ms publishing interval, 2-3 steps go unpublished


def _tags(r: dict[str, Any]) -> dict[str, Any]:
    return {k: r.get(k) for k in ("roll_id", "slurry_batch_id", "roll_position_m", "cell_id", "quality")}


def check_mqtt(runs: list[Run], rows: list[dict[str, Any]], report: Report) -> None:
    """Cycler messages: each (channel, seq, time) stored, once per signal, with the cell the message names."""
    per_msg: dict[tuple[str, int, int], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["_measurement"] == "Formation" and r.get("protocol") == "mqtt" and r.get("seq") is not None:
            per_msg[(r.get("lane") or "", int(r["seq"]), r["time"])].append(r)
    for run in runs:
        keys = [(topic.split("/")[3], int(msg["seq"]), iso_to_ns(msg["time"]), msg) for topic, msg in run.record.mqtt]
        last_stored = max((i for i, k in enumerate(keys) if k[:3] in per_msg), default=-1)
        for i, (ch, seq, t, msg) in enumerate(keys):
            rs = per_msg.get((ch, seq, t))
            if not rs:
                if run.ended == "killed" and i > last_stored:
                    report.mqtt_unsent += 1
                    continue
                report.mqtt_checked += 1
                report.mqtt_lost += 1
                report.example("lost MQTT", (ch, seq, msg.get("time")))
                continue
            report.mqtt_checked += 1
            per_signal = Counter(r.get("signal") for r in rs)
            dup = sum(n - 1 for n in per_signal.values() if n > 1)
            if dup:
                report.mqtt_duplicated += dup
                report.example("duplicated MQTT", (ch, seq, dict(per_signal)))
            cell = msg.get("cell_id")
            if cell is not None and any(r.get("cell_id") != cell for r in rs):
                report.mqtt_mis_tagged += 1
                report.example("mis-tagged MQTT", (ch, seq, cell, {r.get("cell_id") for r in rs}))


def stored_trace_events(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [json.loads(r["json"]) for r in rows if r["_measurement"] == "trace_events"]


def check_trace_events(runs: list[Run], rows: list[dict[str, Any]], report: Report) -> None:
    stored = Counter((e.get("line"), e["seq"], e["id"], e["kind"], e["time"]) for e in stored_trace_events(rows))
    for run in runs:
        keys = [(ev.get("line"), ev["seq"], ev["id"], ev["kind"], ev["time"]) for ev in run.record.trace]
        last_stored = max((i for i, k in enumerate(keys) if k in stored), default=-1)
        for i, k in enumerate(keys):
            n = stored.get(k, 0)
            if n == 0 and run.ended == "killed" and i > last_stored:
                report.trace_unsent += 1
                continue
            report.trace_checked += 1
            if n == 0:
                report.trace_lost += 1
                report.example("lost trace event", k)
            elif n > 1:
                report.trace_duplicated += n - 1
                report.example("duplicated trace event", k)


def check_units(rows: list[dict[str, Any]], report: Report) -> None:
    units: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for r in rows:
        if r["_measurement"] != "trace_events" and r.get("signal") is not None:
            units[(r["_measurement"], r.get("lane") or "", r["signal"])].add(r.get("unit") or "")
    two = {k: u for k, u in units.items() if len(u) > 1}
    report.series_with_two_units = len(two)
    for k, u in list(two.items())[:EXAMPLES]:
        report.example("series with two units", (k, sorted(u)))


def expected_ancestors(events: Iterable[dict[str, Any]]) -> tuple[dict[tuple[str, str], set[str]], int]:
    """(line, cell ID) -> every ID upstream of it (the closure of the ``created`` events' inputs on that line), and
    how many (line, ID) were created more than once (then both histories are expected)."""
    inputs: dict[tuple[str, str], set[str]] = defaultdict(set)
    created: Counter[tuple[str, str]] = Counter()
    cells: set[tuple[str, str]] = set()
    for ev in events:
        if ev.get("kind") != "created":
            continue
        key = (str(ev.get("line", "")), ev["id"])
        created[key] += 1
        inputs[key].update(i["id"] if isinstance(i, dict) else str(i) for i in ev.get("inputs") or [])
        if ev.get("type") == "Cell":
            cells.add(key)
    out: dict[tuple[str, str], set[str]] = {}
    for line, cell in cells:
        seen: set[str] = set()
        todo = list(inputs[(line, cell)])
        while todo:
            x = todo.pop()
            if x not in seen:
                seen.add(x)
                todo.extend(inputs.get((line, x), ()))
        out[(line, cell)] = seen
    return out, sum(1 for n in created.values() if n > 1)


Upstream = Callable[[str, str], set[str] | None]


def check_genealogy(runs: list[Run], upstream_of: Upstream, report: Report) -> None:
    """``upstream_of(cell, line)`` -> the IDs the genealogy has upstream of the cell, or None if it does not know
    it."""
    events = [ev for run in runs for ev in run.record.trace]
    want, reused = expected_ancestors(events)
    report.cells = len(want)
    report.ids_reused = reused
    report.genealogy_checked = True
    for (line, cell), ancestors in sorted(want.items()):
        got = upstream_of(cell, line)
        if got is None:
            report.genealogy_unknown += 1
            report.example("cell unknown to the genealogy", (line, cell))
            continue
        missing = ancestors - got
        if missing:
            report.genealogy_incomplete += 1
            report.example("incomplete genealogy", (line, cell, sorted(missing)[:8]))


def check_all(runs: list[Run], rows: list[dict[str, Any]], upstream_of: Upstream | None = None) -> Report:
    report = Report()
    check_opcua(runs, rows, report)
    check_mqtt(runs, rows, report)
    check_trace_events(runs, rows, report)
    check_units(rows, report)
    if upstream_of is not None:
        check_genealogy(runs, upstream_of, report)
    return report
