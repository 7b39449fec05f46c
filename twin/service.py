"""The twin service: ingest, live state, predictions, recommendations, control, genealogy and the HTTP app, in one
process (``python -m twin run --config FILE``).

Composition only: each part lives in its own module and knows nothing of the others; this file wires the ingest
pipeline's subscriber hook to the live state, the predictor and the genealogy store, gives the controller the OPC UA
setpoint writer and the line's grant, sends audit entries and predictions to InfluxDB (through the ingest spool, so
they survive a database outage like every sample) and to the graph, and serves the API with uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import math
import signal
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from threadpoolctl import threadpool_limits

from connectors.records import Sample, TraceEvent
from twin.alarms import AlarmManager
from twin.api import create_app
from twin.audit import AuditEntry, AuditLog, audit_line_protocol
from twin.auth import TokenStore
from twin.calibration import CalibratedModel, Calibration
from twin.config import Config
from twin.context import TwinContext
from twin.control import Controller
from twin.ingest import IngestPipeline, cancel_tasks
from twin.live import LiveState
from twin.logs import setup_logging
from twin.metrics import Metrics
from twin.plant_model import PhysicsModel, PlantModel, RegistryModel
from twin.predict import Prediction, Predictor, prediction_lines
from twin.recommend import Recommender
from twin.setpoint_port import SetpointPort

log = logging.getLogger("twin.service")

#: Sample.trace keys naming an entity that exists in the genealogy by the time samples name it (a cell is assembled
#: before it is formed); rolls, segments and formation runs are named while they are being made, before their trace
#: event, so they are not checked.
REFERENCE_KEYS: tuple[str, ...] = ("cell_id",)


class TwinService:
    def __init__(self, cfg: Config, *, opcua: bool | None = None, mqtt: bool | None = None) -> None:
        # the recommender's optimiser solves problems of 2-4 variables thousands of times a minute: multi-threaded
        # BLAS costs more in thread hand-offs than it saves, and on a shared 2-core box a worker thread waiting for a
        # core stalls every call (measured: L-BFGS-B steps 0.6 ms instead of 0.01 ms)
        threadpool_limits(limits=1, user_api="blas")
        self.cfg = cfg
        s = cfg.service
        self.line = cfg.line.id
        self.alarms = AlarmManager()
        self.live = LiveState(s.live, self.alarms)
        self.audit = AuditLog()
        self.tokens = TokenStore(s.auth.token_file)
        self.pipeline = IngestPipeline(cfg, opcua=opcua, mqtt=mqtt, alarms=self.alarms)
        self.metrics = Metrics(self.stats)
        self.registry = self._load_registry()
        # online calibration (twin/calibration): both models below evaluate with its accepted parameters
        self.calibration = Calibration(s.calibration, self.line, s.control, self.audit, self.alarms)
        self.model: PlantModel = CalibratedModel(self._plant_model(), self.calibration)
        self.recommender = Recommender(s.control, self.model, self.live)
        self.port = SetpointPort(self.pipeline, lambda: [m for loop in s.control.active.loops.values()
                                                          for m in loop.manipulated])
        start_mode = s.control.mode if s.control.mode != "closed_loop" else "advisory"
        self.controller = Controller(self.recommender, self.audit, self.alarms, self.port.write, self.port.read_grant,
                                     publish=self._publish_recommendation, mode=start_mode,
                                     ttl_s=s.control.recommendation_ttl_s)
        self.genealogy = self._load_genealogy()
        self.ctx = TwinContext(settings=s, line=self.line, live=self.live, alarms=self.alarms, audit=self.audit,
                               tokens=self.tokens, controller=self.controller, metrics=self.metrics,
                               config_dump=lambda: self.cfg.model_dump(mode="json"), history=self._history,
                               influx=self._influx_query,
                               ready=self._ready, genealogy=self.genealogy,
                               quarantine=self.pipeline.quarantine, calibration=self.calibration)
        self.predictor = Predictor(s.predict, self.line,
                                   CalibratedModel(self._surrogate() or PhysicsModel(), self.calibration),
                                   self._latest_value,
                                   registry=self.registry,
                                   sinks=[self.ctx.add_prediction, self._store_prediction, self._graph_prediction],
                                   observe_latency=lambda m, sec: self.metrics.model_latency.labels(m).observe(sec),
                                   lineage=self.genealogy.lineage if self.genealogy is not None else None)
        self.audit.add_sink(self._store_audit)
        self.audit.add_sink(self._graph_audit)
        self.app = create_app(self.ctx)
        self.pipeline.subscribe(self._on_records)
        self._query: Any = None
        self._mqtt_pub: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._connector_up: dict[str, bool] = {}
        # live recommendations: gauge samples not yet covered by an evaluation of their loop (received_ns, time_ns)
        self._gauge_loops: tuple[str, dict[str, list[str]]] = ("", {})
        self._due: dict[str, list[tuple[int, int]]] = {}
        self._due_wake: asyncio.Event | None = None
        # (received_ns, source time_ns, ready_ns) of the newest gauge samples: received -> live recommendation ready
        # is the twin's own latency; from the source timestamp it includes the OPC UA publishing interval (only
        # meaningful when the line's clock is the wall clock, i.e. not an accelerated simulator)
        self.latencies: deque[tuple[int, int, int]] = deque(maxlen=100_000)

    # -- optional parts --------------------------------------------------------------------------------------------
    def _load_registry(self) -> Any:
        """The ONNX surrogates (models.runtime) when their artifacts are installed; None means physics only."""
        try:
            from models.runtime import ModelRegistry
        except ImportError:
            log.warning("models.runtime is not available: the twin uses the process-chain physics only")
            return None
        try:
            return ModelRegistry.load()
        except Exception as exc:  # noqa: BLE001 - missing artifacts: run on physics, say so
            log.warning("no surrogate artifacts (%s): the twin uses the process-chain physics only", exc)
            return None

    def _surrogate(self) -> RegistryModel | None:
        name = self.cfg.service.predict.structure_model
        if self.registry is None or name == "process_chain" or name not in self.registry.names:
            return None
        try:
            return RegistryModel(self.registry, name)
        except Exception:  # noqa: BLE001
            log.exception("surrogate %s unusable; using the process-chain physics", name)
            return None

    def _plant_model(self) -> PlantModel:
        surrogate = self._surrogate()
        if self.cfg.service.control.model == "surrogate" and surrogate is not None:
            return surrogate
        return PhysicsModel()

    def _load_genealogy(self) -> Any:
        g = self.cfg.service.genealogy
        if not g.enabled:
            return None
        try:
            from ontology.store import GenealogyStore, StoreConfig
        except ImportError:
            log.warning("ontology.store is not available: genealogy is off")
            return None
        try:
            # opening is quick at any size: the store rebuilds its ID index in the background
            return GenealogyStore(StoreConfig(path=g.store_path or None, max_seq_jump=g.max_seq_jump,
                                              seq_window=g.seq_window, unresolved_max_ids=g.unresolved_max_ids,
                                              unresolved_grace_s=g.unresolved_grace_s))
        except Exception:  # noqa: BLE001
            log.exception("the genealogy store could not be opened; genealogy is off")
            return None

    # -- ingest hook -------------------------------------------------------------------------------------------------
    def _loops_of_gauges(self) -> dict[str, list[str]]:
        """Gauge key -> the loops whose targets it measures (rebuilt when the active product changes)."""
        product = self.cfg.service.control.product
        if self._gauge_loops[0] != product:
            loops: dict[str, list[str]] = {}
            for name, loop in self.recommender.product.loops.items():
                for t in loop.targets:
                    loops.setdefault(t.signal, []).append(name)
            self._gauge_loops = (product, loops)
        return self._gauge_loops[1]

    def _on_records(self, records: Sequence[Sample | TraceEvent]) -> None:
        live = self.live
        gauges = self._loops_of_gauges()
        genealogy = self.genealogy
        for r in records:
            if isinstance(r, Sample):
                if genealogy is not None:
                    # the sample is stored as it came; an ID the genealogy never saw is listed (and alarmed on when
                    # many stay unknown), never dropped
                    for key in REFERENCE_KEYS:
                        ref = r.trace.get(key)
                        if isinstance(ref, str):
                            genealogy.note_reference(r.line or self.line, ref, key, f"{r.station}/{r.signal}")
                loops = gauges.get(f"{r.station}/{r.signal}")
                if loops and r.received_ns:
                    for name in loops:
                        self._due.setdefault(name, []).append((r.received_ns, r.time_ns))
                v = r.value
                if isinstance(v, bool):
                    v = 1.0 if v else 0.0
                elif isinstance(v, str):
                    live.update_text(f"{r.station}/{r.signal}", v, r.time_ns, r.quality)  # a state, a step, an ID
                    continue
                elif not isinstance(v, (int, float)):
                    continue
                trace = r.trace
                pos = trace.get("roll_position_m")
                roll = trace.get("roll_id")
                live.update(f"{r.station}/{r.signal}", float(v), r.time_ns, r.quality, r.unit or None,
                            roll if isinstance(roll, str) else None,
                            float(pos) if isinstance(pos, (int, float)) else None)
            else:
                if self.genealogy is not None:
                    try:
                        self.genealogy.add_event(r)  # typed end to end: the contract's record, parsed once
                    except Exception:  # noqa: BLE001 - the graph quarantines what it cannot take
                        log.exception("genealogy rejected trace event %s", r.seq)
                self.predictor.on_event(r)
                self.calibration.on_event(r)
        self._wake_recommender()

    def _latest_value(self, key: str) -> float | None:
        last = self.live.value(key)
        if last is None or last.quality != "good" or not math.isfinite(last.value):
            return None
        return last.value

    # -- sinks -------------------------------------------------------------------------------------------------------
    def _spool_lines(self, text: str) -> None:
        """Through the ingest processor (its worker thread appends and fsyncs; a full spool holds them there):
        the event loop neither waits for the disk nor sees ``SpoolFull``."""
        if not text:
            return
        self.pipeline.submit_lines((text + "\n").encode(), text.count("\n") + 1)

    def _store_audit(self, entry: AuditEntry) -> None:
        self._spool_lines(audit_line_protocol(entry, self.line))

    def _store_prediction(self, pred: Prediction) -> None:
        if self.cfg.service.predict.write_to_influx:
            self._spool_lines(prediction_lines(pred))

    def _graph_prediction(self, pred: Prediction) -> None:
        if self.genealogy is None or not self.cfg.service.predict.attach_to_genealogy:
            return
        outputs = {k: v for k, v in pred["outputs"].items() if isinstance(v, (int, float)) and math.isfinite(v)}
        if not outputs:
            return
        std = {k: v for k, v in pred.get("std", {}).items() if k in outputs and math.isfinite(v)}
        model_name, _, version = pred["model_version"].partition("@")
        self.genealogy.add_prediction(pred["subject"], f"{pred['kind']}:{model_name}", version or model_name,
                                      outputs, std=std, line=self.line)

    def _graph_audit(self, entry: AuditEntry) -> None:
        if self.genealogy is None or entry.action not in ("write", "write_refused", "approved", "rejected",
                                                           "proposed"):
            return
        from connectors.records import ns_to_iso

        before = entry.before if entry.before is None or not isinstance(entry.before, float) \
            or math.isfinite(entry.before) else None
        after = entry.after if entry.after is None or not isinstance(entry.after, float) \
            or math.isfinite(entry.after) else None
        self.genealogy.add_audit(entry.target or f"recommendation-{entry.recommendation_id}", entry.who,
                                 ns_to_iso(entry.time_ns), before, after, f"{entry.action}: {entry.why}",
                                 entry.model_version, line=self.line)

    def _publish_recommendation(self, rec: dict[str, Any]) -> None:
        if self._mqtt_pub is None:
            return
        topic = self.cfg.service.control.mqtt_topic.format(line=self.line)
        self._mqtt_pub.publish(topic, json.dumps(rec, default=str), qos=1)

    # -- queries -----------------------------------------------------------------------------------------------------
    def _influx_query(self) -> Any:
        """The store's query client (twin.store.query.InfluxQuery), opened on first use and closed at stop."""
        from twin.store.query import InfluxQuery

        if self._query is None:
            i = self.cfg.influx
            self._query = InfluxQuery(i.url, i.database if i.version == 1 else i.bucket, version=i.version,
                                      token=i.token, username=i.username, password=i.password)
        return self._query

    async def _history(self, station: str, signal: str, start_ns: int, end_ns: int, limit: int) -> list[dict[str, Any]]:
        from twin.store.query import QueryError

        self._influx_query()
        try:
            rows = await self._query.signal_history(station, signal, start_ns, end_ns, line=self.line, limit=limit)
        except QueryError as exc:
            if "unreachable" in str(exc) or "HTTP 5" in str(exc):
                raise OSError(str(exc)) from None
            raise
        return [{"time_ns": r.get("time"), "value": r.get("value"), "quality": r.get("quality"),
                 "roll_id": r.get("roll_id"), "roll_position_m": r.get("roll_position_m")} for r in rows]

    def _ready(self) -> dict[str, bool]:
        st = self.pipeline.status()
        parts: dict[str, bool] = {"ingest": st.running}
        parts["database"] = st.database.database_up  # last write / idle ping succeeded
        parts["spool"] = not st.spool.full  # a full spool holds data back at the sources
        parts.update({f"connector:{k}": v for k, v in st.connectors.items()})
        return parts

    def _connector_states(self) -> dict[str, bool]:
        """Connected per source: "opcua" (the first server, the name it always had), "opcua:<name>" for each
        further server, "mqtt"."""
        return self.pipeline.status().connectors

    def stats(self) -> dict[str, Any]:
        st = self.pipeline.status()
        return {
            "samples_total": self.live.samples_total,
            "queues": {"ingest_inbox": st.inbox_records},
            "spool_depth": st.spool.depth_lines,
            "spool_bytes": st.spool.depth_bytes,  # unsent bytes: what the budget counts
            "spool_max_bytes": st.spool.max_bytes,
            "spool_disk_bytes": st.spool.disk_bytes,
            "spool_full": st.spool.full,
            "spool_age_s": st.spool.oldest_age_s or 0,
            "connectors": st.connectors,
            "recommendations": self.controller.counts,
            "mode": self.controller.mode,
            "alarms_active": self.alarms.active_count(),
            "quarantined": sum(st.quarantine.values()),
        }

    # -- background tasks --------------------------------------------------------------------------------------------
    def _wake_recommender(self) -> None:
        if self._due and self._due_wake is not None:
            self._due_wake.set()

    async def _live_recommend_loop(self) -> None:
        """Re-evaluate a loop as soon as one of its gauges reports; samples arriving meanwhile are covered by the next
        evaluation. ``control.live_max_duty`` caps the share of a core this may take when gauges report faster than
        an evaluation lasts (an accelerated simulator)."""
        assert self._due_wake is not None
        duty = self.cfg.service.control.live_max_duty
        while True:
            await self._due_wake.wait()
            self._due_wake.clear()
            due, self._due = self._due, {}
            if self.controller.mode == "off" or duty <= 0:
                continue
            t0 = time.perf_counter()
            for loop_name, received in due.items():
                if loop_name not in self.recommender.product.loops:
                    continue
                try:
                    await self.controller.evaluate(loop_name)
                except Exception:  # noqa: BLE001 - the periodic round still runs and reports
                    log.exception("live evaluation of %s failed", loop_name)
                    continue
                done = time.time_ns()
                for r_ns, t_ns in received:
                    self.latencies.append((r_ns, t_ns, done))
                    self.metrics.sample_to_recommendation.observe((done - r_ns) / 1e9)
            spent = time.perf_counter() - t0
            if duty < 1.0:
                await asyncio.sleep(spent * (1.0 / duty - 1.0))

    async def _control_loop(self) -> None:
        interval = self.cfg.service.control.interval_s
        while True:
            await asyncio.sleep(interval)
            t0 = time.perf_counter()
            try:
                await self.controller.run_round()
            except Exception:  # noqa: BLE001 - a round failing must not end the loop; it drops closed loop
                log.exception("recommendation round failed")
                await self.controller.fallback("a recommendation round raised an error")
            self.metrics.recommend_latency.observe(time.perf_counter() - t0)

    async def _watch_loop(self) -> None:
        """Missing sensors, connector state: alarms, and the closed loop drops to advisory on a lost connection."""
        while True:
            await asyncio.sleep(1.0)
            self.live.check_missing()
            self._check_unresolved()
            for name, up in self._connector_states().items():
                was = self._connector_up.get(name, True)
                if not up and was:
                    self.alarms.raise_("connector_down", name, f"{name} connector disconnected", "critical")
                    await self.controller.fallback(f"{name} connection lost")
                elif up and not was:
                    self.alarms.clear("connector_down", name)
                self._connector_up[name] = up

    def _check_unresolved(self) -> None:
        """Alarm while many IDs named by samples stay unknown to the genealogy past the grace time (forged or
        mistyped IDs, or trace events that never arrive); cleared when they resolve."""
        if self.genealogy is None:
            return
        g = self.cfg.service.genealogy
        stale = self.genealogy.unresolved_over_grace()
        if stale >= g.unresolved_alarm_ids:
            self.alarms.raise_("unresolved_reference", self.line,
                               f"{stale} IDs named by samples have been unknown to the genealogy for more than "
                               f"{g.unresolved_grace_s:g} s (GET /api/genealogy/status: unresolved_references)",
                               "warning", unresolved_ids=stale)
        elif self.alarms.is_active("unresolved_reference", self.line):
            self.alarms.clear("unresolved_reference", self.line)

    def _start_mqtt_publisher(self) -> None:
        if not self.cfg.mqtt.enabled:
            return
        from connectors.mqtt import MqttPublisher

        self._mqtt_pub = MqttPublisher(self.cfg.mqtt)
        self._mqtt_pub.start()

    async def start(self) -> None:
        self._due_wake = asyncio.Event()
        await self.pipeline.start()
        self._start_mqtt_publisher()
        self._tasks.append(asyncio.create_task(self._control_loop(), name="twin-control"))
        self._tasks.append(asyncio.create_task(self._live_recommend_loop(), name="twin-live-recommend"))
        self._tasks.append(asyncio.create_task(self._watch_loop(), name="twin-watch"))
        # what exists now (libraries, models, configuration) lives as long as the process: keep it out of the
        # collector's oldest generation, whose full passes otherwise stop the event loop for ~100 ms (measured at
        # x60 on the whole line) and set the tail of the sample-to-recommendation latency
        gc.collect()
        gc.freeze()
        log.info("twin started", extra={"line": self.line})

    async def stop(self) -> None:
        await cancel_tasks(self._tasks)
        gc.unfreeze()  # what start() froze may become garbage now (several services in one process: tests)
        if self._mqtt_pub is not None:
            self._mqtt_pub.stop()
        await self.pipeline.stop()
        if self._query is not None:
            await self._query.close()
        if self.genealogy is not None and hasattr(self.genealogy, "close"):
            self.genealogy.close()

    async def serve(self) -> None:
        """Start everything, serve HTTP until SIGINT / SIGTERM, stop everything."""
        import uvicorn

        h = self.cfg.service.http
        server = uvicorn.Server(uvicorn.Config(self.app, host=h.host, port=h.port, log_level="warning",
                                               access_log=False, lifespan="off"))
        await self.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        # we own SIGINT / SIGTERM (uvicorn would re-raise them after serving, before our orderly stop)
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        serve_task = asyncio.create_task(server.serve())
        print(f"twin: dashboard http://{h.host}:{h.port}/  API docs http://{h.host}:{h.port}/docs", flush=True)
        await stop.wait()
        server.should_exit = True
        with contextlib.suppress(Exception):
            await serve_task
        await self.stop()


def run(config_path: str | None, opcua_password: str | None = None) -> int:
    from twin.config import load_config

    setup_logging()
    cfg = load_config(config_path)
    if opcua_password is not None:
        cfg.opcua.password = opcua_password
        if cfg.opcua.auth_method == "anonymous":
            cfg.opcua.auth_method = "username"
    asyncio.run(TwinService(cfg).serve())
    return 0
