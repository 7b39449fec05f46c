"""The main loop: step the plant by ``tick`` simulated seconds, publish, pace to ``tick / speed`` wall seconds.

Simulated time is ``start + k * tick`` after k steps, whatever the wall clock does; when the machine cannot keep
up, the loop runs steps back to back (simulated time then lags ``speed`` x wall time) instead of skipping, so the
record of a run depends only on seed and scenario.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .mqtt_out import MqttOut
from .opcua_server import HistoryOptions, LineServer
from .plant import Plant
from .record import Recorder
from .scenario import Scenario
from .spec import ROOT
from .users import LineUserManager

log = logging.getLogger("simulator")


@dataclass
class Options:
    host: str = "127.0.0.1"
    port: int = 4840
    speed: float = 1.0
    tick_s: float = 1.0
    seed: int = 0
    line_id: str = "PL1"
    data_dir: Path = Path("var/simulator")
    security: tuple[str, ...] = ("sign", "sign-encrypt")
    mqtt_url: str | None = None
    record: Path | None = None
    start_time: datetime | None = None
    duration_s: float | None = None
    warmup_s: float = 0.0
    profile_points: int = 0
    profile_array: bool = False
    history: HistoryOptions | None = None  # --historize: HistoryRead on the analog and ID nodes


class Runner:
    def __init__(self, opts: Options, scenario: Scenario, users: LineUserManager) -> None:
        self.opts = opts
        # the warm-up runs the line's first minutes before the start time, as fast as the machine can, so the line
        # is full (coated, dried, calendered) when pacing begins instead of filling for half an hour of wall time
        self.pace_from: datetime | None = opts.start_time
        self.warmed_up = False
        start = (opts.start_time or datetime.now(UTC)) - timedelta(seconds=opts.warmup_s)
        self.plant = Plant(scenario, opts.seed, opts.line_id, start, opts.profile_points, opts.profile_array)
        self.recorder = Recorder(opts.record) if opts.record else None
        self.server = LineServer(self.plant, opts.host, opts.port, opts.data_dir, list(opts.security), users,
                                 on_write=self._on_client_write, history=opts.history)
        self.mqtt = MqttOut(opts.mqtt_url, f"pilotline-sim-{opts.line_id}") if opts.mqtt_url else None
        self.stop_requested = False
        self.down_until_s: float | None = None
        self.steps = 0
        self.values_published = 0

    def _on_client_write(self, path: str, value: Any) -> None:
        """A client's accepted write is published at once; it belongs in the record like any other value."""
        self.values_published += 1
        if self.recorder:
            self.recorder.write(self.plant.now(), f"opcua:{self.server.nodeid_string(path)}", value, "Good")
            self.recorder.flush()

    def request_stop(self, *_: Any) -> None:
        self.stop_requested = True

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        await self.server.start()
        print(f"simulator: OPC UA {self.server.endpoint} ({','.join(self.opts.security)}), line {self.opts.line_id}, "
              f"speed {self.opts.speed:g}, tick {self.opts.tick_s:g} s"
              + (f", MQTT {self.opts.mqtt_url}" if self.mqtt else "")
              + (f", record {self.opts.record}" if self.recorder else ""), flush=True)
        wall0 = time.monotonic()
        period = self.opts.tick_s / self.opts.speed
        paced_steps = 0
        anchored = self.opts.warmup_s <= 0
        try:
            while not self.stop_requested:
                await self.step()
                if self.opts.duration_s is not None and self.plant.t_s >= self.opts.duration_s:
                    break
                if self.warming_up():
                    await asyncio.sleep(0)  # the server still answers and publishes
                    continue
                if not anchored:
                    # the warm-up's last step may be up to a tick ahead of the wall clock: wait that out, so a
                    # value's SourceTimestamp is when it is published (at --speed 1)
                    ahead_s = 0.0 if self.pace_from is not None else max(
                        0.0, (self.plant.now() - datetime.now(UTC)).total_seconds() / self.opts.speed)
                    wall0, paced_steps, anchored = time.monotonic() + ahead_s, 0, True
                paced_steps += 1
                delay = wall0 + paced_steps * period - time.monotonic()
                await asyncio.sleep(max(delay, 0.0))
        finally:
            wall = max(time.monotonic() - wall0, 1e-9)
            print(f"simulator: stopped after {self.steps} steps ({self.plant.t_s:g} simulated s) in {wall:.2f} s wall: "
                  f"{self.steps / wall:.0f} steps/s, {self.values_published} OPC UA values "
                  f"({self.values_published / wall:.0f}/s)", flush=True)
            await self.server.stop()
            if self.mqtt:
                self.mqtt.close()
            if self.recorder:
                self.recorder.close()

    def warming_up(self) -> bool:
        """Until the simulated clock reaches the start time (without one: the wall clock, which moves on while the
        warm-up runs, so at --speed 1 the simulated clock then keeps step with it)."""
        if self.opts.warmup_s <= 0 or self.warmed_up:
            return False
        until = self.pace_from or datetime.now(UTC)
        self.warmed_up = self.plant.now() >= until  # once over, it stays over (a late step does not restart it)
        return not self.warmed_up

    async def step(self) -> None:
        plant = self.plant
        values = plant.step(self.opts.tick_s)
        self.steps += 1
        t = plant.now()
        rec = self.recorder
        published = await self.server.publish(values, t)
        self.values_published += sum(len(v) if isinstance(v, list) else 1 for _, v, _ in published)
        if rec:
            for source, value, st in published:
                rec.write(t, f"opcua:{source}", value, st)
        for event in plant.trace.drain():
            if self.server.up:
                await self.server.trace_event(event, t)
                if rec:
                    rec.write(t, f"opcua-event:ns={self.server.ns};s={ROOT}", event, None)
            if self.mqtt:
                topic = f"pilotline/{self.opts.line_id}/trace"
                self.mqtt.publish(topic, event)
                if rec:
                    rec.write(t, f"mqtt:{topic}", event, None)
        for topic, payload in plant.formation.messages:
            if self.mqtt:
                self.mqtt.publish(topic, payload)
                if rec:
                    rec.write(t, f"mqtt:{topic}", payload, None)
        plant.formation.messages.clear()
        await self._restarts(t)
        if rec:
            rec.flush()

    async def _restarts(self, t: datetime) -> None:
        plant = self.plant
        if plant.server_restarts and self.down_until_s is None:
            downtime = plant.server_restarts.pop(0)
            log.warning("fault: OPC UA server stops for %.1f simulated s", downtime)
            await self.server.stop()
            self.down_until_s = plant.t_s + downtime
            if self.recorder:
                self.recorder.write(t, "sim:opcua-server", "down", None)
        elif self.down_until_s is not None and plant.t_s >= self.down_until_s:
            self.down_until_s = None
            await self._start_again()
            if self.recorder:
                self.recorder.write(t, "sim:opcua-server", "up", None)

    async def _start_again(self) -> None:
        for attempt in range(50):
            try:
                await self.server.start()
                return
            except OSError as exc:  # the port can take a moment to be free again
                log.warning("restart attempt %d failed: %s", attempt + 1, exc)
                self.server.server = None
                await asyncio.sleep(0.1)
        raise RuntimeError(f"OPC UA server could not be restarted on port {self.opts.port}")
