"""The connector's store path under combined faults, against the line's own history (hypothesis).

A line runs on a clock six hours behind the server's (ServerTimestamp): RollId, RollPosition and two measurements
per step, the subscription's initial values first (an empty RollId with the server's creation time as its
SourceTimestamp, a waiting RollPosition and measurement with no timestamps at all). The steps reach the connector in
publish responses of any size (a catch-up after a hung server brings many at once), in any order inside a response.
Between responses, at random: the pipeline makes what it has durable (acknowledgements), the watchdog saves the state
(and trims the history, to a tiny ``trace_history_s``), or the process crashes: what was handed over but not durable
is lost, a new connector starts from the state file, the server republishes every message whose acknowledgement it
never got, and maybe a new subscription re-delivers every node's current value.

Whatever the combination: every step's value is stored, with the RollId and RollPosition current at its source
time, and no (signal, time) is stored under two tag sets. Notifications are real asyncua DataValues fed to the
connector's batch handler, as its subscription does; the ack-sending publish loop is the one thing stood in for
(an acknowledgement the connector released counts as received by the server).
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from asyncua import ua
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.opcua import NodeInfo, OpcuaConnector
from connectors.records import Sample
from connectors.settings import OpcuaConfig
from tests.simline import sim_opcua

LINE_T0 = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
SERVER_CLOCK = LINE_T0 + timedelta(hours=6)
ST = "Drying/Cathode"
HANDLES = {
    1: NodeInfo(ua.NodeId("L.Drying.Cathode.RollId", 2), "ns=2;s=RollId", ST, "RollId", "", trace_key="roll_id"),
    2: NodeInfo(ua.NodeId("L.Drying.Cathode.RollPosition", 2), "ns=2;s=RollPosition", ST, "RollPosition", "m",
                trace_key="roll_position_m"),
    3: NodeInfo(ua.NodeId("L.Drying.Cathode.MassLoading", 2), "ns=2;s=MassLoading", ST, "MassLoading", "mg/cm2"),
    4: NodeInfo(ua.NodeId("L.Drying.Cathode.Zone1Setpoint", 2), "ns=2;s=Zone1Setpoint", ST, "Zone1Setpoint", "Cel"),
}
Change = tuple[int, ua.DataValue]


def _dv(value: Any, source: datetime | None, server: datetime | None, status: str = "Good") -> ua.DataValue:
    variant = ua.Variant(value) if value is not None else ua.Variant(None, ua.VariantType.Null)
    return ua.DataValue(variant, StatusCode=ua.StatusCode(getattr(ua.StatusCodes, status)), SourceTimestamp=source,
                        ServerTimestamp=server)


def _line(steps: int, roll_len: int) -> tuple[list[list[Change]], dict[int, tuple[str, float]]]:
    """Per step the changes the server publishes, and the true (roll id, position) at each step's time."""
    out: list[list[Change]] = []
    truth: dict[int, tuple[str, float]] = {}
    for k in range(steps):
        t = LINE_T0 + timedelta(seconds=k)
        wall = SERVER_CLOCK + timedelta(seconds=k / 40)
        roll, pos = f"CR-C-{k // roll_len + 1:06d}", round((k % roll_len) * 0.25, 2)
        changes: list[Change] = [(2, _dv(pos, t, wall)), (3, _dv(14.0 + k / 100, t, wall))]
        if k % roll_len == 0:
            changes.append((1, _dv(roll, t, wall)))
        if k == 0:
            changes.append((4, _dv(80.0, t, wall)))
        out.append(changes)
        truth[int(t.timestamp()) * 10**9] = (roll, pos)
    return out, truth


INITIAL: list[Change] = [  # what a fresh subscription gets before the line has run
    (1, _dv("", SERVER_CLOCK, SERVER_CLOCK)),  # asyncua stamps a variable's creation value with its own clock
    (2, _dv(None, None, None, "UncertainInitialValue")),
    (3, _dv(None, None, None, "UncertainInitialValue")),
]


class _Harness:
    """One connector process at a time, the server's unacknowledged messages, the pipeline and what it stored."""

    def __init__(self, state_file: Path, cfg: OpcuaConfig) -> None:
        self.state_file, self.cfg = state_file, cfg
        self.stored: list[Sample] = []
        self.handed: list[tuple[list[Any], Any]] = []
        self.messages: dict[int, list[Change]] = {}  # seq -> changes, until the server gets its acknowledgement
        self.seq = 0
        self.latest: dict[int, ua.DataValue] = {}
        self.conn = self._start()
        self.conn._save_state(SimpleNamespace(subscription_id=1, _monitored_items={}), "server-run-1")  # type: ignore[arg-type]

    def _start(self) -> OpcuaConnector:
        conn = OpcuaConnector(self.cfg, "PL1", lambda recs, ack: self.handed.append((list(recs), ack)),
                              state_file=self.state_file)
        conn._handles, conn._sub_id = dict(HANDLES), 1
        return conn

    def publish(self, changes: list[Change]) -> None:
        self.seq += 1
        self.messages[self.seq] = changes
        for h, dv in changes:
            self.latest[h] = dv
        self.conn._on_batch(changes, [], False, self.seq)

    def durable(self) -> None:
        handed, self.handed = self.handed, []
        for recs, ack in handed:
            self.stored.extend(r for r in recs if isinstance(r, Sample))
            if ack is not None:
                ack()
        self._server_gets_acks()

    def _server_gets_acks(self) -> None:
        acks, self.conn._acks = self.conn._acks, []
        for a in acks:
            self.messages.pop(int(a.SequenceNumber), None)

    def save(self) -> None:
        self.conn._trim_context()
        self.conn._write_state()
        self._server_gets_acks()

    def crash(self, resubscribe: bool) -> None:
        self.handed.clear()  # in the dead process's memory only
        if self.conn._flush_timer is not None:
            self.conn._flush_timer.cancel()
        self.conn = self._start()
        for seq in sorted(self.messages):  # TransferSubscriptions + Republish
            self.conn._on_batch(self.messages[seq], [], False, seq)
        if resubscribe:  # the subscription was gone: a new one sends every node's current value
            self.publish(sorted(self.latest.items(), key=lambda c: c[0]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.integers(min_value=4, max_value=40), roll_len=st.integers(min_value=2, max_value=7),
       chunks=st.lists(st.integers(min_value=1, max_value=15), min_size=1, max_size=40),
       actions=st.lists(st.sampled_from(["", "", "durable", "save", "crash", "crash+resubscribe"]), max_size=40),
       seed=st.integers(min_value=0, max_value=2**16))
def test_combined_faults_never_mis_tag_lose_or_double_store(tmp_path_factory: Any, steps: int, roll_len: int,
                                                            chunks: list[int], actions: list[str], seed: int) -> None:
    state = tmp_path_factory.mktemp("state") / "opcua-subscription.json"
    cfg = sim_opcua(subscription_interval_ms=10_000.0, trace_history_s=0.5)
    per_step, truth = _line(steps, roll_len)
    rnd = random.Random(seed)

    async def run() -> _Harness:
        h = _Harness(state, cfg)
        h.publish(list(INITIAL))
        k, i = 0, 0
        while k < steps:
            n = chunks[i % len(chunks)]
            changes = [c for step in per_step[k:k + n] for c in step]
            rnd.shuffle(changes)  # the server groups by monitored item, not by time
            h.publish(changes)
            k += n
            act = actions[i % len(actions)] if actions else ""
            i += 1
            if act == "durable":
                h.durable()
            elif act == "save":
                h.save()
            elif act.startswith("crash"):
                h.crash(resubscribe=act.endswith("resubscribe"))
        h.conn._flush_pending()
        h.durable()
        return h

    h = asyncio.run(run())
    tags: dict[tuple[str, int], set[tuple[Any, ...]]] = defaultdict(set)
    series: dict[tuple[str, int], set[tuple[Any, ...]]] = defaultdict(set)
    for s in h.stored:
        tags[(s.signal, s.time_ns)].add((s.quality, *sorted(s.trace.items())))
        series[(s.signal, s.time_ns)].add((s.quality, s.trace.get("roll_id")))  # what InfluxDB keys a series by
    twice = {k: v for k, v in series.items() if len(v) > 1}
    assert not twice, f"stored in two series: {twice}"
    twice = {k: v for k, v in tags.items() if len(v) > 1 and k[1] in truth}
    assert not twice, f"a sample of the line's clock tagged twice, differently: {twice}"
    wrong = []
    for (signal, t), tag_sets in tags.items():
        if t not in truth:
            continue  # the initial values stamped with the server's clock (or none): no line time to check against
        trace = dict(next(iter(tag_sets))[1:])
        roll, pos = truth[t]
        if trace.get("roll_id") != roll or trace.get("roll_position_m") != pos:
            wrong.append((signal, t, (roll, pos), trace))
    assert not wrong, f"{len(wrong)} samples with the wrong IDs, e.g. {wrong[:3]}"
    published = {(HANDLES[hd].signal, int(dv.SourceTimestamp.timestamp()) * 10**9)
                 for step in per_step for hd, dv in step}
    assert published <= set(tags), f"lost: {sorted(published - set(tags))[:5]}"
