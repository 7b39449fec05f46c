"""``python -m tests.lines.vendor_line``: the line clock, MQTT out, both servers and the tick loop."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import sys
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt

from tests.lines.vendor_line.address_space import CALENDER, CALENDER_NAMESPACE, COATER, COATER_NAMESPACE, GAUGE_OFFSET_M
from tests.lines.vendor_line.mes import Mes, iso
from tests.lines.vendor_line.opcua_server import MachineServer, VendorUsers, load_passwords
from tests.lines.vendor_line.physics import Calender, CoatedRoll, Coater

log = logging.getLogger("vendor_line")



class MqttOut:
    """paho 2 client, QoS 1; connects in the background and queues what it cannot send yet (paho's own queue)."""

    def __init__(self, url: str, client_id: str) -> None:
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("mqtt", "tcp") or not u.hostname:
            raise SystemExit(f"--mqtt-url must look like mqtt://host:port, got {url!r}")
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if u.username:
            self.client.username_pw_set(urllib.parse.unquote(u.username), urllib.parse.unquote(u.password or ""))
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 5)
        self.client.connect_async(u.hostname, u.port or 1883)
        self.client.loop_start()

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        self.client.publish(topic, json.dumps(payload, separators=(",", ":")), qos=1)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()






class LineClock:
    """Line time = start + wall time since the anchor x speedup (source timestamps, trace times). The anchor is
    wall time, not monotonic, so that a restarted line continues its clock as the physical line kept running."""

    def __init__(self, start: datetime, speedup: float, wall_anchor: float) -> None:
        self.start, self.speedup, self.wall_anchor = start, speedup, wall_anchor

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.time() - self.wall_anchor) * self.speedup)


def load_state(path: Path) -> dict[str, Any] | None:
    """What a restart on the same --data-dir continues from: the clock, the next IDs, the MES's seq and bookings.
    The roll and the slurry batch in the machine at a crash are scrap: the restarted line takes the next numbers."""
    return dict(json.loads(path.read_text())) if path.is_file() else None


def save_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


async def run(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    state_path = data_dir / "state.json"
    state = None if args.fresh else load_state(state_path)
    fresh = state is None
    if state is None:
        start = (datetime.fromisoformat(args.start_time.replace("Z", "+00:00")).astimezone(UTC)
                 if args.start_time else datetime.now(UTC))
        clock = LineClock(start, args.speedup, time.time())
        state = {"roll": 0, "batch": 0, "seq": 0, "cells": 0, "anode_m": 0.0, "booked": []}
        (data_dir / "trace.jsonl").unlink(missing_ok=True)  # the record of this line's events starts afresh too
    else:
        clock = LineClock(datetime.fromisoformat(state["line_anchor"]), state["speedup"], state["wall_anchor"])
        log.info("continuing the line of %s at %s (roll %d, seq %d)", state_path, iso(clock.now()), state["roll"],
                 state["seq"])
    rng = np.random.default_rng(args.seed + state["seq"])  # a restart does not replay the same noise
    passwords, password_file = load_passwords(data_dir, args.operator_password, args.admin_password)
    users = VendorUsers(passwords, allow_anonymous=not args.security)
    mqtt_out = MqttOut(args.mqtt_url, f"vendor-line-{args.coater_port}") if args.mqtt_url else None

    def publish_trace(event: dict[str, Any]) -> None:
        if mqtt_out is not None:
            mqtt_out.publish(args.trace_topic, event)

    mes = Mes(args.line, publish_trace, data_dir / "trace.jsonl", rng, args.cells_per_roll, args.channels)
    mes.seq, mes.cell_number, mes.anode_m, mes.booked = (state["seq"], state["cells"], state["anode_m"],
                                                         set(state["booked"]))
    calender = Calender(rng, args.noise, args.calender_speed_m_min, mes.calender_started, mes.calendered)

    def roll_done(roll: CoatedRoll, t: datetime) -> None:
        mes.roll_coated(roll, t)
        calender.queue.append(roll)

    coater = Coater(rng, args.noise, args.roll_length_m, args.batch_length_m or 1.6 * args.roll_length_m,
                    clock.now(), roll_done, first_roll=state["roll"] + 1, first_batch=state["batch"] + 1)
    mes.batch_start = coater.batch_started
    grants = {"coater": args.grant == "on", "calender": args.grant == "on"}  # each machine its own switch
    machines: dict[str, Coater | Calender] = {"coater": coater, "calender": calender}

    def write_to(name: str) -> Callable[[str, Any], None]:
        def apply(path: str, value: Any) -> None:
            if path.endswith("RemoteControlEnabled"):
                grants[name] = bool(value)
            else:
                machines[name].sp[path] = float(value)
        return apply

    servers = {
        "coater": MachineServer(COATER, args.host, args.coater_port, data_dir, users, security=args.security,
                                history=args.history, position_node=not args.no_position,
                                grant=lambda: grants["coater"], on_write=write_to("coater")),
        "calender": MachineServer(CALENDER, args.host, args.calender_port, data_dir, users, security=args.security,
                                  history=args.history, position_node=True,
                                  grant=lambda: grants["calender"], on_write=write_to("calender")),
    }
    for s in servers.values():
        s.clock = clock.now
        await s.start()
    if fresh:
        clock.wall_anchor = time.time()  # a fresh line starts now: server start-up is not production time
    saved: dict[str, Any] = {}

    def keep_state() -> None:
        nonlocal saved
        now = {"line_anchor": clock.start.isoformat(), "wall_anchor": clock.wall_anchor, "speedup": clock.speedup,
               "roll": coater.roll.number, "batch": coater.batch_number, "seq": mes.seq, "cells": mes.cell_number,
               "anode_m": mes.anode_m, "booked": sorted(mes.booked)}
        if now != saved:
            save_state(state_path, now)
            saved = now

    async def publish_grant_and_setpoints() -> None:
        for name, machine in machines.items():
            await servers[name].publish({"Control/RemoteControlEnabled": grants[name], **machine.sp})

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    last_t = clock.now()

    async def tick() -> None:
        nonlocal last_t
        t = clock.now()
        dt = (t - last_t).total_seconds()
        last_t = t
        steps = max(1, math.ceil(dt / args.max_step_s))
        c_out: dict[str, Any] = {}
        k_out: dict[str, Any] = {}
        for i in range(steps):
            ti = t - timedelta(seconds=dt * (steps - 1 - i) / steps)
            c_out = coater.step(dt / steps, ti)
            k_out.update(calender.step(dt / steps, ti))
        keep_state()
        await servers["coater"].publish(c_out, t)
        await servers["calender"].publish(k_out, t)
        await publish_grant_and_setpoints()

    await tick()
    print(json.dumps({
        "ready": True, "line": args.line,
        "coater": servers["coater"].endpoint, "calender": servers["calender"].endpoint,
        "namespaces": {"coater": COATER_NAMESPACE, "calender": CALENDER_NAMESPACE},
        "security": "Basic256Sha256/SignAndEncrypt" if args.security else "None",
        "passwords_file": str(password_file), "trace_record": str(data_dir / "trace.jsonl"),
        "mqtt": args.mqtt_url, "topics": {"dewpoint": args.dewpoint_topic, "trace": args.trace_topic},
        "start_time": iso(clock.start), "line_time": iso(clock.now()), "speedup": clock.speedup,
        "history": args.history,
        "position_node": not args.no_position, "gauge_offset_m": GAUGE_OFFSET_M,
    }), flush=True)

    next_dewpoint = time.monotonic()
    dewpoint = args.dewpoint_C
    try:
        while not stop.is_set():
            await tick()
            if mqtt_out is not None and time.monotonic() >= next_dewpoint:
                next_dewpoint += args.dewpoint_period_s
                dewpoint += 0.05 * (args.dewpoint_C - dewpoint) + float(rng.normal(0.0, 0.3 * args.noise))
                ts = clock.now().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
                mqtt_out.publish(args.dewpoint_topic, {"ts": ts,
                                                       "dewpoint": {"value": round(dewpoint, 2), "unit": "degC"}})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=args.tick_s)
    finally:
        log.info("stopping")
        # together: asyncua's stop waits up to 1 s for its server-time task, per server
        await asyncio.gather(*(s.stop() for s in servers.values()), return_exceptions=True)
        if mqtt_out is not None:
            mqtt_out.close()
        log.info("stopped")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.lines.vendor_line", description=__doc__.split("\n\n")[0])
    p.add_argument("--coater-port", type=int, required=True, help="OPC UA port of the coater server")
    p.add_argument("--calender-port", type=int, required=True, help="OPC UA port of the calender server")
    p.add_argument("--host", default="127.0.0.1", help="address both servers listen on (default 127.0.0.1)")
    p.add_argument("--mqtt-url", default=None, help="mqtt://[user:pass@]host:port of the broker (default: no MQTT)")
    p.add_argument("--dewpoint-topic", default="plant1/dryroom/dp-sensor-7")
    p.add_argument("--trace-topic", default="plant1/mes/trace")
    p.add_argument("--line", default="VL1", help="the trace events' line ID (default VL1)")
    p.add_argument("--data-dir", default="var/vendor-line",
                   help="passwords.json, pki/, history-*.sqlite, trace.jsonl (default var/vendor-line)")
    p.add_argument("--seed", type=int, default=1, help="noise seed (default 1)")
    p.add_argument("--noise", type=float, default=1.0, help="noise scale, 0 for none (default 1)")
    p.add_argument("--speedup", type=float, default=1.0,
                   help="line seconds per wall second (default 1); with > 1 give a --start-time in the past, the "
                        "twin refuses samples from the future")
    p.add_argument("--start-time", default=None,
                   help="line clock at the first start, RFC 3339 UTC (default: now); a restart on the same --data-dir "
                        "continues the clock, roll / batch / cell numbers and the trace seq from DATA_DIR/state.json")
    p.add_argument("--fresh", action="store_true", help="ignore DATA_DIR/state.json: start a new line")
    p.add_argument("--tick-s", type=float, default=0.5, help="wall seconds between published values (default 0.5)")
    p.add_argument("--max-step-s", type=float, default=2.0, help="largest physics step in line seconds (default 2)")
    p.add_argument("--roll-length-m", type=float, default=100.0, help="coated roll length (default 100 m)")
    p.add_argument("--batch-length-m", type=float, default=None,
                   help="metres of web one slurry batch coats (default 1.6 x roll length)")
    p.add_argument("--calender-speed-m-min", type=float, default=1.5, help="calender web speed (default 1.5)")
    p.add_argument("--cells-per-roll", type=int, default=4, help="cells built from each calendered roll (default 4)")
    p.add_argument("--channels", type=int, default=8, help="formation channels CH-01.. (default 8)")
    p.add_argument("--dewpoint-C", type=float, default=-45.0, help="dry-room dew point level (default -45 degC)")
    p.add_argument("--dewpoint-period-s", type=float, default=1.0, help="wall seconds between dew points (default 1)")
    p.add_argument("--no-position", action="store_true", help="no RollPosition node: integrate the web speed")
    p.add_argument("--grant", choices=("on", "off"), default="off",
                   help="RemoteControlEnabled of both machines at start (default off; the admin user may change it)")
    p.add_argument("--security", action="store_true",
                   help="Basic256Sha256 SignAndEncrypt with user name and password only (default: None, anonymous "
                        "reads allowed)")
    p.add_argument("--operator-password", default=None, help="default: random, kept in DATA_DIR/passwords.json")
    p.add_argument("--admin-password", default=None, help="default: random, kept in DATA_DIR/passwords.json")
    p.add_argument("--history", action="store_true",
                   help="historize every Monitoring/Control value in DATA_DIR/history-<machine>.sqlite "
                        "(HistoryRead raw; survives a restart)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is closed by now (servers, SQLite history, MQTT); tearing down two asyncua address spaces object by
    # object takes the interpreter seconds on a busy machine, and every test that stops or restarts the line waits.
    os._exit(code)
