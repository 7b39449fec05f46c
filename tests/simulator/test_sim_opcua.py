"""The simulator as an OPC UA server, over TCP with an asyncua client: browse, subscribe, write, security, restart."""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography.x509.oid import ExtendedKeyUsageOID

from simulator.spec import UNECE_NAMESPACE, line_specs, unece_unit_id
from simulator.users import make_hash
from tests.simulator.sim_helpers import ns_index, quiet, read_record, write_scenario

pytestmark = pytest.mark.timeout(120)

OPERATOR, OPERATOR_PW = "olga", "op-secret-1"
VIEWER, VIEWER_PW = "vic", "view-secret-2"


def users_file(tmp_path: Path) -> Path:
    p = tmp_path / "users.yaml"
    p.write_text(
        "users:\n"
        f"  {OPERATOR}: {{password_hash: '{make_hash(OPERATOR_PW, iterations=2000)}', role: operator}}\n"
        f"  {VIEWER}: {{password_hash: '{make_hash(VIEWER_PW, iterations=2000)}', role: viewer}}\n",
        encoding="utf-8",
    )
    return p


def start(simulator_factory: Any, tmp_path: Path, scenario: dict[str, Any], *extra: str) -> Any:
    sc = write_scenario(tmp_path / "scenario.yaml", scenario)
    return simulator_factory(args=["--scenario", str(sc), "--users", str(users_file(tmp_path)), *extra])


def node(client: Client, ns: int, path: str) -> Any:
    return client.get_node(ua.NodeId(f"PilotLine.{path}", ns))


async def wait_good(client: Client, ns: int, path: str, timeout_s: float = 30.0) -> ua.DataValue:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        dv = await node(client, ns, path).read_data_value(raise_on_bad_status=False)
        if dv.StatusCode is not None and dv.StatusCode.is_good():
            return dv
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never became Good")


async def sim_time(client: Client, ns: int) -> Any:
    from datetime import datetime

    text = await node(client, ns, "SimulatedTime").read_value()
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def browse_ids(client: Client, ns: int) -> set[str]:
    """Every node id below PilotLine, one Browse request per tree level (fast even for ~1000 nodes)."""
    found: set[str] = set()
    level = [ua.NodeId("PilotLine", ns)]
    while level:
        params = ua.BrowseParameters()
        params.NodesToBrowse = [ua.BrowseDescription(NodeId=n, BrowseDirection=ua.BrowseDirection.Forward,
                                                     ReferenceTypeId=ua.NodeId(ua.ObjectIds.HierarchicalReferences),
                                                     IncludeSubtypes=True, ResultMask=63) for n in level]
        params.RequestedMaxReferencesPerNode = 0
        results = await client.uaclient.browse(params)
        level = []
        for res in results:
            for ref in res.References:
                nid = ref.NodeId
                if nid.to_string() not in found:
                    found.add(nid.to_string())
                    if nid.NamespaceIndex == ns:
                        level.append(nid)
    return found


async def test_browse_analog_items_and_subscribe(simulator_factory: Any, tmp_path: Path) -> None:
    sim = start(simulator_factory, tmp_path, quiet(noise_scale=1.0), "--security", "none", "--speed", "60")
    async with Client(sim.endpoint) as client:
        ns = await ns_index(client)
        ids = await browse_ids(client, ns)
        for spec in line_specs(2):
            assert f"ns={ns};s={spec.node_id}" in ids, spec.node_id
        objects = client.get_node(ua.ObjectIds.ObjectsFolder)
        flow = await objects.get_child([f"{ns}:PilotLine", f"{ns}:Coating", f"{ns}:Cathode", f"{ns}:PumpFlowRate"])
        assert flow.nodeid == ua.NodeId("PilotLine.Coating.Cathode.PumpFlowRate", ns)
        assert (await flow.read_type_definition()) == ua.NodeId(ua.ObjectIds.AnalogItemType)
        eu = await (await flow.get_child("0:EngineeringUnits")).read_value()
        assert eu.NamespaceUri == UNECE_NAMESPACE and eu.UnitId == unece_unit_id("G48")
        rng = await (await flow.get_child("0:EURange")).read_value()
        assert (rng.Low, rng.High) == (100.0, 2000.0)
        ml = node(client, ns, "Drying.Cathode.MassLoading")
        assert (await ml.read_attribute(ua.AttributeIds.UserAccessLevel)).Value.Value & 2 == 0

        seen: list[ua.DataValue] = []

        class Handler:
            def datachange_notification(self, n: Any, val: Any, data: Any) -> None:
                seen.append(data.monitored_item.Value)

        sub = await client.create_subscription(50, Handler())
        await sub.subscribe_data_change(node(client, ns, "Coating.Cathode.WetFilmThickness"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sum(1 for d in seen if d.StatusCode.is_good()) < 5:
            await asyncio.sleep(0.05)
        good = [d for d in seen if d.StatusCode.is_good()]
        assert len(good) >= 5
        assert good[-1].Value.Value == pytest.approx(92.8, rel=0.03)
        # SourceTimestamp is simulated time (runs 60x), ServerTimestamp is the wall clock
        span_source = (good[-1].SourceTimestamp - good[0].SourceTimestamp).total_seconds()
        span_server = (good[-1].ServerTimestamp - good[0].ServerTimestamp).total_seconds()
        assert span_source > 10 * max(span_server, 0.01)
        await sub.delete()


async def test_writes_are_guarded_and_refusals_change_nothing(simulator_factory: Any, tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl"
    sim = start(simulator_factory, tmp_path, quiet(), "--security", "none", "--speed", "30", "--record", str(rec))
    sp_path = "Coating.Cathode.PumpFlowRateSetpoint"
    dv = ua.DataValue(ua.Variant(730.8, ua.VariantType.Double))
    async with Client(sim.endpoint) as anon:
        ns = await ns_index(anon)
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await node(anon, ns, sp_path).write_value(dv)
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await node(anon, ns, "RemoteSetpointsEnabled").write_value(True)
    viewer = Client(sim.endpoint)
    viewer.set_user(VIEWER)
    viewer.set_password(VIEWER_PW)
    async with viewer:
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await node(viewer, ns, sp_path).write_value(dv)
    op = Client(sim.endpoint)
    op.set_user(OPERATOR)
    op.set_password(OPERATOR_PW)
    async with op:
        sp = node(op, ns, sp_path)
        with pytest.raises(ua.uaerrors.BadNotWritable):  # the operator has not granted remote setpoints
            await sp.write_value(dv)
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):  # actual values are read-only for everybody
            await node(op, ns, "Coating.Cathode.PumpFlowRate").write_value(dv)
        assert await sp.read_value() == 696.0
        await node(op, ns, "RemoteSetpointsEnabled").write_value(True)
        assert await node(op, ns, "RemoteSetpointsEnabled").read_value() is True
        for bad in (2500.0, 50.0, math.nan, math.inf):
            with pytest.raises(ua.uaerrors.BadOutOfRange):
                await sp.write_value(ua.DataValue(ua.Variant(bad, ua.VariantType.Double)))
        with pytest.raises(ua.uaerrors.BadTypeMismatch):
            await sp.write_value(ua.DataValue(ua.Variant("fast", ua.VariantType.String)))
        assert await sp.read_value() == 696.0
        await asyncio.sleep(0.3)
        flow = await node(op, ns, "Coating.Cathode.PumpFlowRate").read_value()
        assert flow == pytest.approx(696.0, rel=1e-9), "refused writes must not move the actuator"
        await sp.write_value(dv)
        assert await sp.read_value() == 730.8
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if await node(op, ns, "Coating.Cathode.PumpFlowRate").read_value() == pytest.approx(730.8, rel=1e-3):
                break
            await asyncio.sleep(0.1)
        assert await node(op, ns, "Coating.Cathode.PumpFlowRate").read_value() == pytest.approx(730.8, rel=1e-3)
    # accepted writes are published values too: the record has each exactly once, refused ones never
    wanted = (f"opcua:ns={ns};s=PilotLine.{sp_path}", f"opcua:ns={ns};s=PilotLine.RemoteSetpointsEnabled")
    written = [(r["source"].rsplit(".", 1)[-1], r["value"]) for r in read_record(rec) if r["source"] in wanted]
    assert written == [("RemoteSetpointsEnabled", False), ("PumpFlowRateSetpoint", 696.0),
                       ("RemoteSetpointsEnabled", True), ("PumpFlowRateSetpoint", 730.8)]


async def test_pump_step_raises_mass_loading_five_percent_after_the_delay(simulator_factory: Any,
                                                                          tmp_path: Path) -> None:
    """+5 % pump flow -> +5 % wet film and mass loading (eq. 10-12); the beta gauge 7 m downstream sees it after
    7 simulated minutes at 1 m/min (here at --speed 300)."""
    sc = quiet(line={"roll_length_m": 100, "remote_setpoints_enabled": True})
    sim = start(simulator_factory, tmp_path, sc, "--security", "none", "--speed", "300")
    op = Client(sim.endpoint)
    op.set_user(OPERATOR)
    op.set_password(OPERATOR_PW)
    async with op:
        ns = await ns_index(op)
        ml = node(op, ns, "Drying.Cathode.MassLoading")
        base = (await wait_good(op, ns, "Drying.Cathode.MassLoading")).Value.Value
        await node(op, ns, "Coating.Cathode.PumpFlowRateSetpoint").write_value(
            ua.DataValue(ua.Variant(696.0 * 1.05, ua.VariantType.Double)))
        t_write = await sim_time(op, ns)
        samples: list[tuple[Any, ua.DataValue]] = []  # (simulated time when read, the gauge's data value)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = await sim_time(op, ns)
            samples.append((now, await ml.read_data_value()))
            if now - t_write > timedelta(minutes=7.7):
                break
            await asyncio.sleep(0.02)
        early = [dv.Value.Value for now, dv in samples
                 if timedelta(seconds=30) < now - t_write < timedelta(minutes=6.5)]
        late = [dv for now, dv in samples if now - t_write > timedelta(minutes=7.6)]
        assert early and late
        assert all(v == pytest.approx(base, rel=1e-6) for v in early), "no response before the web reaches the gauge"
        # the gauge's value changed (SourceTimestamp) only once the new film had travelled the 7 m
        assert late[-1].SourceTimestamp - t_write > timedelta(minutes=6.9)
        late = [dv.Value.Value for dv in late]
        assert late[-1] / base == pytest.approx(1.05, rel=2e-3)


async def test_sign_and_encrypt_with_user_and_anonymous_refused(simulator_factory: Any, tmp_path: Path) -> None:
    sim = start(simulator_factory, tmp_path, quiet(), "--security", "sign,sign-encrypt", "--no-anonymous")
    key, cert = tmp_path / "client_key.pem", tmp_path / "client_cert.der"
    uri = "urn:pilotline:test:client"
    await setup_self_signed_certificate(key, cert, uri, "localhost", [ExtendedKeyUsageOID.CLIENT_AUTH],
                                        {"commonName": "test client"})

    async def secure_client(user: str | None, password: str | None,
                            mode: ua.MessageSecurityMode = ua.MessageSecurityMode.SignAndEncrypt) -> Client:
        c = Client(sim.endpoint)
        c.application_uri = uri
        await c.set_security(SecurityPolicyBasic256Sha256, str(cert), str(key), mode=mode)
        if user:
            c.set_user(user)
            c.set_password(password or "")
        return c

    c = await secure_client(OPERATOR, OPERATOR_PW)
    async with c:
        ns = await ns_index(c)
        assert await node(c, ns, "LineId").read_value() == "PL1"
    signed = await secure_client(VIEWER, VIEWER_PW, ua.MessageSecurityMode.Sign)
    async with signed:  # Sign only: the password is encrypted with the server certificate, reads work
        assert await node(signed, ns, "LineId").read_value() == "PL1"
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await node(signed, ns, "RemoteSetpointsEnabled").write_value(True)
    with pytest.raises(ua.uaerrors.BadIdentityTokenRejected):  # anonymous switched off
        async with await secure_client(None, None):
            pass
    with pytest.raises(ua.uaerrors.BadUserAccessDenied):  # wrong password
        async with await secure_client(OPERATOR, "wrong"):
            pass
    with pytest.raises(ua.UaError, match="(?i)security|endpoint|policy"):  # None is not offered unless asked for
        async with Client(sim.endpoint, timeout=2) as plain:
            await plain.get_namespace_array()
    # the certificate the server made on first start is the one a later start loads (not regenerated)
    from simulator.opcua_server import ensure_certificate

    first = (sim.data_dir / "pki" / "server_cert.der").read_bytes()
    await ensure_certificate(sim.data_dir, "127.0.0.1")
    assert (sim.data_dir / "pki" / "server_cert.der").read_bytes() == first


async def test_server_restart_fault_comes_back_with_the_same_node_ids(simulator_factory: Any,
                                                                      tmp_path: Path) -> None:
    sc = quiet(events=[{"at_s": 600, "action": "fault", "fault": "server_restart", "duration_s": 60}])
    rec = tmp_path / "rec.jsonl"
    sim = start(simulator_factory, tmp_path, sc, "--security", "none", "--speed", "150", "--record", str(rec))
    async with Client(sim.endpoint) as client:
        ns = await ns_index(client)
        before = await browse_ids(client, ns)
    deadline = time.monotonic() + 30
    marks: list[str] = []
    while time.monotonic() < deadline:
        marks = [r["value"] for r in read_record(rec) if r["source"] == "sim:opcua-server"]
        if marks == ["down", "up"]:
            break
        await asyncio.sleep(0.1)
    assert marks == ["down", "up"]
    records = read_record(rec)
    i_down = next(i for i, r in enumerate(records) if r["value"] == "down")
    i_up = next(i for i, r in enumerate(records) if r["value"] == "up")
    assert not any(r["source"].startswith("opcua") for r in records[i_down + 1:i_up]), "nothing published while down"
    assert records[i_up]["t_ns"] - records[i_down]["t_ns"] >= 60e9
    await asyncio.sleep(0.5)
    async with Client(sim.endpoint) as client:
        assert await ns_index(client) == ns
        after = await browse_ids(client, ns)
        assert after == before
        dv = await wait_good(client, ns, "Drying.Cathode.MassLoading")
        assert dv.Value.Value == pytest.approx(14.3, rel=0.01)


async def test_trace_events_arrive_as_opc_ua_events(simulator_factory: Any, tmp_path: Path) -> None:
    import json

    sim = start(simulator_factory, tmp_path, quiet(), "--security", "none", "--speed", "600")
    events: list[Any] = []

    class Handler:
        def event_notification(self, event: Any) -> None:
            events.append(event)

    async with Client(sim.endpoint) as client:
        ns = await ns_index(client)
        etype = client.get_node(ua.NodeId("TraceEventType", ns))
        sub = await client.create_subscription(50, Handler())
        await sub.subscribe_events(client.get_node(ua.NodeId("PilotLine", ns)), etype)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                json.loads(e.Payload)["type"] == "CalenderedRoll" for e in events):
            await asyncio.sleep(0.05)
        await sub.delete()
    payloads = [json.loads(e.Payload) for e in events]
    assert any(p["type"] == "CalenderedRoll" for p in payloads)
    seqs = [p["seq"] for p in payloads]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "events arrive in order without gaps"
    first = events[0]
    assert first.Seq == payloads[0]["seq"] and first.MaterialId == payloads[0]["id"]
    assert json.loads(first.Inputs) == payloads[0]["inputs"] and first.Kind == payloads[0]["kind"]
    roll = next(p for p in payloads if p["type"] == "CoatedRoll")
    assert roll["schema"] == "pilotline.trace.v1" and roll["inputs"][0]["type"] == "SlurryBatch"


def test_readme_client_example_runs(simulator_factory: Any, tmp_path: Path) -> None:
    """The Python example of docs/simulator.md, run as written against a default-security simulator (no --users)."""
    import re
    import subprocess
    import sys

    readme = (Path(__file__).resolve().parents[2] / "docs" / "simulator.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", readme, re.S)
    assert code is not None
    sim = simulator_factory(args=["--security", "sign,sign-encrypt", "--speed", "60"])
    script = code.group(1).replace('print(asyncio.run(main()))',
                                   f'print(asyncio.run(main("{sim.endpoint}", Path(r"{sim.data_dir}"))))')
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip()) == pytest.approx(730.8, rel=0.01)  # the actual pump flow followed the write


async def test_warmup_fills_the_line_then_keeps_step_with_the_wall_clock(simulator_factory: Any,
                                                                         tmp_path: Path) -> None:
    """--warmup 1800 at --speed 1 (drift scenario: 20 m rolls): soon after the start the calendered density reads
    Good (the first roll has been coated, dried and calendered in simulated time), and from then on the simulated
    clock is the wall clock (within a few ticks), not half an hour behind or running ahead."""
    from datetime import datetime

    drift = Path(__file__).resolve().parents[2] / "simulator" / "scenarios" / "drift.yaml"
    sim = simulator_factory(args=["--security", "none", "--speed", "1", "--warmup", "1800", "--scenario", str(drift)])
    async with Client(sim.endpoint, timeout=10) as client:
        ns = await ns_index(client)
        await wait_good(client, ns, "Calendering.Cathode.CoatingDensity", timeout_s=60)
        await wait_good(client, ns, "Drying.Cathode.MassLoading", timeout_s=5)
        await asyncio.sleep(2.0)
        lag_s = (datetime.now(UTC) - await sim_time(client, ns)).total_seconds()
        # a value is published when its simulated time comes, and stays until the next tick
        assert -0.3 <= lag_s <= 1.5, f"simulated clock {lag_s:+.2f} s behind the wall clock after the warm-up"
        t1 = await sim_time(client, ns)
        await asyncio.sleep(3.0)
        paced_s = (await sim_time(client, ns) - t1).total_seconds()
        assert 2.0 <= paced_s <= 4.0, f"{paced_s} simulated s in 3 wall s: not paced at speed 1"


def test_warmup_out_of_range_is_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "simulator", "--warmup", "-5", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--warmup must be between 0 and" in out.stderr
