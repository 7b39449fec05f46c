"""Which clock an ID value goes by in the trace context (connectors/opcua.py, "Clocks"), with real asyncua DataValues
fed to the connector's batch handler as its subscription does. The line's clock runs six hours behind the server's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from asyncua import ua

from connectors.opcua import NodeInfo, OpcuaConnector
from connectors.records import Sample
from tests.simline import sim_opcua

LINE_T0 = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
SERVER_NOW = LINE_T0 + timedelta(hours=6)
ST = "Drying/Cathode"


def _conn(stored: list[Sample]) -> OpcuaConnector:
    conn = OpcuaConnector(sim_opcua(subscription_interval_ms=10_000.0), "PL1",
                          lambda recs, ack: stored.extend(r for r in recs if isinstance(r, Sample)))
    conn._handles = {
        1: NodeInfo(ua.NodeId("L.RollId", 2), "ns=2;s=L.RollId", ST, "RollId", "", trace_key="roll_id"),
        2: NodeInfo(ua.NodeId("L.RollPosition", 2), "ns=2;s=L.RollPosition", ST, "RollPosition", "m",
                    trace_key="roll_position_m"),
        3: NodeInfo(ua.NodeId("L.MassLoading", 2), "ns=2;s=L.MassLoading", ST, "MassLoading", "mg/cm2"),
    }
    return conn


def _dv(value: object, source: datetime | None, server: datetime | None = SERVER_NOW,
        status: str = "Good") -> ua.DataValue:
    variant = ua.Variant(value) if value is not None else ua.Variant(None, ua.VariantType.Null)
    return ua.DataValue(variant, StatusCode=ua.StatusCode(getattr(ua.StatusCodes, status)), SourceTimestamp=source,
                        ServerTimestamp=server)


async def test_a_waiting_position_without_source_time_does_not_cut_the_catch_up() -> None:
    """The subscription's initial RollPosition has no SourceTimestamp; it used to go in at the server's clock, six
    hours ahead, and every 64 entries the history was cut relative to it: a catch-up publish of 200 steps kept the
    position of its last step only."""
    stored: list[Sample] = []
    conn = _conn(stored)
    conn._on_batch([(2, _dv(None, None, status="UncertainInitialValue")), (1, _dv("CR-C-000001", LINE_T0))], [],
                   False, None)
    steps = [LINE_T0 + timedelta(seconds=k) for k in range(200)]
    conn._on_batch([c for k, t in enumerate(steps) for c in ((2, _dv(k * 0.25, t)), (3, _dv(14.0, t)))], [], False,
                   None)
    conn._flush_pending()
    ml = [s for s in stored if s.signal == "MassLoading"]
    assert [s.trace.get("roll_position_m") for s in ml] == [k * 0.25 for k in range(200)]
    assert all(s.trace.get("roll_id") == "CR-C-000001" for s in ml)


async def test_an_id_without_source_time_holds_from_the_start_until_a_timed_one() -> None:
    """A server that does not stamp an ID node: its value is valid from the start of the history (the samples get
    the newest such value), never at the ServerTimestamp; a timed value of the line's clock takes over from its
    time on."""
    stored: list[Sample] = []
    conn = _conn(stored)
    t1, t2, t3 = (LINE_T0 + timedelta(seconds=s) for s in (1, 2, 3))
    conn._on_batch([(1, _dv("CR-C-000007", None)), (3, _dv(14.1, t1))], [], False, None)
    conn._on_batch([(1, _dv("CR-C-000008", None)), (3, _dv(14.2, t2))], [], False, None)
    conn._on_batch([(1, _dv("CR-C-000009", t3)), (3, _dv(14.3, t3))], [], False, None)
    conn._flush_pending()
    got = [(s.value, s.trace.get("roll_id")) for s in stored if s.signal == "MassLoading"]
    assert got == [(14.1, "CR-C-000008"), (14.2, "CR-C-000008"), (14.3, "CR-C-000009")]


async def test_a_creation_value_stamped_by_the_server_clock_does_not_hide_the_line_ids_after_a_restart(
        tmp_path: object) -> None:
    """asyncua stamps a never-written ID variable's empty value with the server's clock (hours ahead of the line).
    The saved context kept only the newest entry per key (that empty one), so a restarted process tagged the
    re-read samples without a roll ID."""
    from pathlib import Path
    from types import SimpleNamespace

    state = Path(str(tmp_path)) / "opcua-subscription.json"
    stored: list[Sample] = []
    conn = OpcuaConnector(sim_opcua(subscription_interval_ms=10_000.0), "PL1",
                          lambda recs, ack: stored.extend(r for r in recs if isinstance(r, Sample)), state_file=state)
    conn._handles = _conn([])._handles
    conn._save_state(SimpleNamespace(subscription_id=1, _monitored_items={}), "run-1")  # type: ignore[arg-type]
    t1, t2 = LINE_T0 + timedelta(seconds=1), LINE_T0 + timedelta(seconds=2)
    conn._on_batch([(1, _dv("", SERVER_NOW))], [], False, 1)
    conn._on_batch([(1, _dv("CR-C-000001", t1)), (3, _dv(14.1, t1))], [], False, 2)
    conn._write_state()
    restarted = OpcuaConnector(sim_opcua(subscription_interval_ms=10_000.0), "PL1",
                               lambda recs, ack: stored.extend(r for r in recs if isinstance(r, Sample)),
                               state_file=state)
    restarted._handles = conn._handles
    restarted._on_batch([(3, _dv(14.2, t2))], [], False, 3)  # the server republishes what was never acknowledged
    restarted._flush_pending()
    assert [s.trace.get("roll_id") for s in stored if s.signal == "MassLoading" and s.value == 14.2] == ["CR-C-000001"]


async def test_a_never_written_id_does_not_replace_the_line_ids_once_the_line_clock_passes_its_stamp() -> None:
    """The fault suite's clock_passes_wall schedule: the line's clock starts a little behind the server's and passes
    it mid-run. A station's RollId the line had not written yet arrived as the subscription's initial value, "" stamped
    at the server's wall clock; once the line's clock passed that stamp, every sample lost its roll ID until the next
    roll (598 mis-tagged). An empty initial value now goes to the start of the history."""
    stored: list[Sample] = []
    conn = _conn(stored)
    conn._initial_due = set(conn._handles)  # a new subscription: each node's first notification is its initial value
    created = LINE_T0 + timedelta(seconds=5)  # the server's wall clock when it created the variable
    t = [LINE_T0 + timedelta(seconds=s) for s in (1, 4, 6, 8)]
    conn._on_batch([(1, _dv("", created)), (3, _dv(14.0, t[0]))], [], False, None)
    conn._on_batch([(1, _dv("CR-C-000001", t[1])), (3, _dv(14.1, t[1]))], [], False, None)
    conn._on_batch([(3, _dv(14.2, t[2]))], [], False, None)  # the line's clock has passed the creation stamp
    conn._on_batch([(1, _dv("", t[3])), (3, _dv(14.3, t[3]))], [], False, None)  # the line clears it: a real change
    conn._flush_pending()
    got = [(s.value, s.trace.get("roll_id")) for s in stored if s.signal == "MassLoading"]
    assert got == [(14.0, None), (14.1, "CR-C-000001"), (14.2, "CR-C-000001"), (14.3, None)]
