"""OPC UA over Basic256Sha256 SignAndEncrypt with a user name, and the setpoint writer, against the real simulator."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from asyncua import Client, ua

from connectors.opcua import OpcuaConnector
from connectors.records import Sample
from connectors.settings import OpcuaConfig
from tests.simline import sim_opcua

SETPOINT = "PilotLine/Coating/Cathode/PumpFlowRateSetpoint"  # EURange 100..2000 cm3/h


async def _set_grant(endpoint: str, password: str, value: bool) -> None:
    """The operator's own switch (not the twin's business): written directly as the operator."""
    c = Client(endpoint)
    c.set_user("operator")
    c.set_password(password)
    async with c:
        ns = await c.get_namespace_index("urn:pilotline:simulator")
        node = await c.nodes.objects.get_child([f"{ns}:PilotLine", f"{ns}:RemoteSetpointsEnabled"])
        await node.write_value(ua.DataValue(ua.Variant(value, ua.VariantType.Boolean)))


async def _connector(cfg: OpcuaConfig, got: list[Any]) -> OpcuaConnector:
    c = OpcuaConnector(cfg, "PL1", lambda recs, ack: (got.extend(recs), ack() if ack else None))
    await c.start()
    assert await c.wait_connected(30), c.status()
    return c


async def test_encrypted_session_with_user_streams_and_writes_setpoints(tmp_path: Path, simulator_factory: Any) -> None:
    sim = await asyncio.to_thread(simulator_factory, ["--security", "none,sign-encrypt", "--speed", "10"])
    password = (sim.data_dir / "operator-password").read_text().strip()
    cert, key = tmp_path / "pki" / "client_cert.der", tmp_path / "pki" / "client_key.pem"
    secure = sim_opcua(endpoint=sim.endpoint, security_policy="Basic256Sha256", security_mode="SignAndEncrypt",
                         certificate=cert, private_key=key, auth_method="username", username="operator",
                         password=password)
    got: list[Any] = []
    op = await _connector(secure, got)
    anon_got: list[Any] = []
    anon = await _connector(sim_opcua(endpoint=sim.endpoint), anon_got)
    try:
        assert cert.is_file() and key.is_file(), "the client certificate is created when absent"
        await asyncio.sleep(1.5)
        assert any(isinstance(s, Sample) and s.signal == "WetFilmThickness" for s in got)

        await _set_grant(sim.endpoint, password, False)
        r = await op.write_setpoint(SETPOINT, 700.0)
        assert (r.ok, r.status, r.written) == (False, "NotSent", False) and "granted" in r.message
        assert await op.read_grant() is False

        await _set_grant(sim.endpoint, password, True)
        assert await op.read_grant() is True
        r = await op.write_setpoint(SETPOINT, 5000.0)
        assert (r.ok, r.status, r.written) == (False, "NotSent", False) and "EURange [100.0, 2000.0]" in r.message
        r = await op.write_setpoint(SETPOINT, float("nan"))
        assert not r.ok and not r.written
        r = await op.write_setpoint("PilotLine/LineId", 1.0)
        assert not r.ok and not r.written and "EURange" in r.message
        r = await op.write_setpoint("PilotLine/Coating/Cathode/NoSuchSetpoint", 1.0)
        assert not r.ok and not r.written and "cannot check" in r.message

        r = await op.write_setpoint(SETPOINT, 700.0)
        assert (r.ok, r.status, r.written, r.code) == (True, "Good", True, 0), r
        client = op._client
        assert client is not None
        ns = op.state.namespace_index
        node = await client.nodes.objects.get_child([f"{ns}:{p}" for p in SETPOINT.split("/")])
        assert await node.read_value() == 700.0

        # an anonymous session is a viewer: the server itself refuses, and the answer is passed on as is
        r = await anon.write_setpoint(SETPOINT, 650.0)
        assert (r.ok, r.written, r.status) == (False, True, "BadUserAccessDenied"), r
        assert await node.read_value() == 700.0
    finally:
        await op.stop()
        await anon.stop()
    r = await op.write_setpoint(SETPOINT, 700.0)
    assert (r.ok, r.status) == (False, "NotSent") and "not connected" in r.message


async def test_wrong_password_is_reported_and_retried_with_backoff(simulator_factory: Any) -> None:
    sim = await asyncio.to_thread(simulator_factory, ["--security", "none"])
    cfg = sim_opcua(endpoint=sim.endpoint, auth_method="username", username="operator", password="wrong",
                      reconnect_initial_s=0.1, reconnect_max_s=0.4)
    c = OpcuaConnector(cfg, "PL1", lambda recs, ack: None)
    await c.start()
    try:
        await asyncio.sleep(2.0)
        st = c.status()
        assert not st["connected"] and st["state"] in ("backoff", "connecting")
        assert "BadUserAccessDenied" in st["last_error"] or "Bad" in st["last_error"], st
    finally:
        await c.stop()
