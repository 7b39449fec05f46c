"""The connector's two paths for one server behaviour that the simulator never shows: an ID change delivered in the
publish response *after* the samples of the same instant. The live path has already handed those samples over with
the ID known then; the store path, which held them for a cycle, re-tags them with the late ID. Notifications are
real asyncua DataValues fed to the connector's batch handler, as its subscription does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from asyncua import ua

from connectors.opcua import NodeInfo, OpcuaConnector
from connectors.records import Sample
from tests.simline import sim_opcua

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def _dv(value: object, t: datetime) -> ua.DataValue:
    return ua.DataValue(ua.Variant(value), SourceTimestamp=t, ServerTimestamp=t)


async def test_a_late_id_retags_the_held_samples_but_not_the_live_ones() -> None:
    stored: list[Sample] = []
    live: list[Sample] = []
    conn = OpcuaConnector(sim_opcua(subscription_interval_ms=50.0), "PL1",
                          lambda recs, ack: stored.extend(r for r in recs if isinstance(r, Sample)),
                          live_sink=live.extend)
    conn._handles = {
        1: NodeInfo(ua.NodeId("PilotLine.Drying.Cathode.RollId", 2), "ns=2;s=RollId", "Drying/Cathode", "RollId", "",
                    trace_key="roll_id"),
        2: NodeInfo(ua.NodeId("PilotLine.Drying.Cathode.MassLoading", 2), "ns=2;s=ML", "Drying/Cathode",
                    "MassLoading", "mg/cm2"),
    }
    t1, t2, t3 = T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)
    conn._on_batch([(1, _dv("CR-C-000001", t1)), (2, _dv(14.3, t1))], [], False, None)
    conn._on_batch([(2, _dv(14.4, t2))], [], False, None)  # roll 2 started at t2, but its ID comes next publish
    conn._on_batch([(1, _dv("CR-C-000002", t2)), (2, _dv(14.5, t3))], [], False, None)
    conn._flush_pending()
    live = [s for s in live if s.signal == "MassLoading"]
    stored = [s for s in stored if s.signal == "MassLoading"]
    assert [(s.value, s.trace.get("roll_id")) for s in live] == [
        (14.3, "CR-C-000001"), (14.4, "CR-C-000001"), (14.5, "CR-C-000002")]  # as known on arrival
    assert [(s.value, s.trace.get("roll_id")) for s in stored] == [
        (14.3, "CR-C-000001"), (14.4, "CR-C-000002"), (14.5, "CR-C-000002")]  # what InfluxDB gets


async def test_held_samples_go_to_the_store_without_a_next_publish() -> None:
    """A server with nothing more to say sends no publish response for a while: the timer flushes the held samples
    after two publishing intervals, not the 1 s watchdog."""
    import asyncio

    stored: list[Sample] = []
    conn = OpcuaConnector(sim_opcua(subscription_interval_ms=20.0), "PL1",
                          lambda recs, ack: stored.extend(r for r in recs if isinstance(r, Sample)))
    conn._handles = {2: NodeInfo(ua.NodeId("PilotLine.Drying.Cathode.MassLoading", 2), "ns=2;s=ML",
                                 "Drying/Cathode", "MassLoading", "mg/cm2")}
    conn._on_batch([(2, _dv(14.3, T0))], [], False, None)
    assert stored == []
    await asyncio.sleep(0.3)
    assert [s.value for s in stored] == [14.3]
