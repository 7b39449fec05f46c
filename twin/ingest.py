"""The ingest pipeline: connectors -> validation -> durable spool -> InfluxDB, with subscribers and stats.

One object, embedded by the twin service and run alone by ``python -m twin ingest``. Connectors hand over lists of
records with an optional ``ack``; a processor task validates them, appends the good ones to the spool as one frame
(durable per the fsync policy), then acks the sources, quarantines the rejects and hands the good records to every
subscriber. A forwarder task moves spool frames to the database. Nothing here blocks on the database: when it is
down the spool grows, and it drains when it is back.

The live path (``ingest.live_dispatch``, on by default): OPC UA samples are validated and handed to the subscribers
the moment their publish response arrives (``submit_live``), without waiting for the connector's trace-ID hold, the
linger or the spool, because the live state and the recommender react to them; the same samples then take the store
path above, which does not hand them to the subscribers a second time (only its trace events).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from connectors.records import Rejected, Sample, TraceEvent
from connectors.validation import Validator
from twin.config import Config
from twin.quarantine import Quarantine
from twin.store.forwarder import Forwarder
from twin.store.influx import InfluxV1Writer, InfluxV2Writer, LineWriter
from twin.store.lineproto import encode
from twin.store.spool import Batch, Spool, SpoolFull

log = logging.getLogger(__name__)

Record = Sample | TraceEvent
Ack = Callable[[], None]
Subscriber = Callable[[Sequence[Record]], Awaitable[None] | None]

MAX_FRAME_RECORDS = 20_000
LIVE_BACKLOG_MAX = 1000  # publish batches waiting for the subscribers on the live path
LINGER_S = 0.01  # wait this long for more records before a small frame is written (fewer fsyncs)


def make_writer(cfg: Config) -> LineWriter:
    i = cfg.influx
    if i.version == 1:
        return InfluxV1Writer(i.url, i.database, retention_policy=i.retention_policy, username=i.username,
                              password=i.password, gzip_body=i.gzip, timeout_s=i.timeout_s,
                              create_database=i.create_database)
    return InfluxV2Writer(i.url, i.bucket, i.org, i.token, gzip_body=i.gzip, timeout_s=i.timeout_s)


async def cancel_tasks(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel background tasks and wait until each has ended, so nothing writes after its owner stopped; what a
    task raised while ending is of no further use at shutdown. Empties ``tasks``."""
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t
    tasks.clear()


class IngestPipeline:
    """``await p.start()`` ... ``await p.stop()``; ``p.subscribe(cb)``; ``p.stats()``.

    ``opcua`` / ``mqtt`` default to the config's ``enabled`` flags; pass ``False`` to run without one (tests, the
    benchmark's extra processes).
    """

    def __init__(self, cfg: Config, *, opcua: bool | None = None, mqtt: bool | None = None,
                 writer: LineWriter | None = None) -> None:
        self.cfg = cfg
        self.validator = Validator(cfg.validation)
        self.quarantine = Quarantine(cfg.quarantine.dir, cfg.quarantine.max_bytes, cfg.quarantine.keep_raw_bytes)
        s = cfg.spool
        self.spool = Spool(s.dir, fsync=s.fsync, fsync_interval_s=s.fsync_interval_s, segment_bytes=s.segment_bytes,
                           max_bytes=s.max_bytes, when_full=s.when_full)
        self.forwarder = Forwarder(
            self.spool, writer or make_writer(cfg), batch_size=cfg.influx.batch_size,
            flush_interval_s=cfg.influx.flush_interval_s, retry_initial_s=cfg.influx.retry_initial_s,
            retry_max_s=cfg.influx.retry_max_s, on_refused=self.quarantine.add, on_confirmed=self._on_confirmed,
        )
        self._use_opcua = cfg.opcua.enabled if opcua is None else opcua
        self._use_mqtt = cfg.mqtt.enabled if mqtt is None else mqtt
        self.opcua: Any = None
        self.mqtt: Any = None
        self._inbox: deque[tuple[Sequence[Record | Rejected], Ack | None, bool]] = deque()
        self._live: deque[Sequence[Sample]] = deque()
        self._live_wake: asyncio.Event | None = None
        self._inbox_records = 0
        self._inbox_lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._subscribers: list[Subscriber] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._latency_src: dict[int, np.ndarray] = {}
        self._latencies_ms: deque[float] = deque(maxlen=200_000)
        self._seen_trace: dict[tuple[str, int, str, str, int], None] = {}
        self.counts: dict[str, int] = {
            "received": 0, "accepted": 0, "rejected": 0, "trace_events": 0, "duplicate_trace_events": 0,
            "dropped_queue_full": 0, "spool_refused": 0, "subscriber_errors": 0, "stored": 0, "live_dispatched": 0,
            "live_dropped": 0,
        }
        self.started_ns = 0

    # -- wiring ------------------------------------------------------------------------------------------------------
    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """``callback(records)`` gets every validated Sample / TraceEvent, in batches, after they are spooled.

        It may be sync or async; it must not block (the processor waits for it). Returns an unsubscribe function.
        """
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def submit(self, records: Sequence[Record | Rejected], ack: Ack | None = None,
               samples_dispatched: bool = False) -> None:
        """Thread-safe entry for connectors (paho's thread, asyncua's loop). ``ack`` runs once they are durable.

        ``samples_dispatched``: the subscribers already had these samples through ``submit_live``."""
        with self._inbox_lock:
            self._inbox.append((records, ack, samples_dispatched))
            self._inbox_records += len(records)
            over = self._inbox_records - self.cfg.ingest.queue_max
            while over > 0 and self._inbox:
                # only un-ackable (OPC UA) records are dropped: an MQTT message stays with the broker anyway
                old, old_ack, _ = self._inbox[0]
                if old_ack is not None:
                    break
                self._inbox.popleft()
                self._inbox_records -= len(old)
                self.counts["dropped_queue_full"] += len(old)
                over -= len(old)
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not wake.is_set():
            if threading.get_ident() == self._loop_thread:
                wake.set()
            else:
                loop.call_soon_threadsafe(wake.set)

    def submit_live(self, samples: Sequence[Sample]) -> None:
        """Samples for the subscribers now (the store path gets them separately, through ``submit``)."""
        loop, wake = self._loop, self._live_wake
        if loop is None or wake is None or not self._subscribers:
            return
        self._live.append(samples)
        if len(self._live) > LIVE_BACKLOG_MAX:
            # subscribers slower than the line: the live view sheds the oldest batches (the store path keeps them)
            self.counts["live_dropped"] += len(self._live.popleft())
        if threading.get_ident() == self._loop_thread:
            wake.set()
        else:
            loop.call_soon_threadsafe(wake.set)

    async def _live_loop(self) -> None:
        assert self._live_wake is not None
        check = self.validator.check
        while True:
            await self._live_wake.wait()
            self._live_wake.clear()
            while self._live:
                batch = self._live.popleft()
                now = time.time_ns()
                good = [s for s in batch if check(s, now) is None]  # rejects are quarantined by the store path
                if good:
                    self.counts["live_dispatched"] += len(good)
                    await self._dispatch(good)

    # -- lifecycle ---------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._live_wake = asyncio.Event()
        self.started_ns = time.time_ns()
        self._tasks.append(asyncio.create_task(self._process_loop(), name="ingest-processor"))
        self._tasks.append(asyncio.create_task(self._live_loop(), name="ingest-live"))
        self._tasks.append(asyncio.create_task(self.forwarder.run(), name="ingest-forwarder"))
        if self._use_mqtt:
            from connectors.mqtt import MqttConnector

            self.mqtt = MqttConnector(self.cfg.mqtt, self.submit)
            self.mqtt.start()
        if self._use_opcua:
            from connectors.opcua import OpcuaConnector

            live = self.cfg.ingest.live_dispatch
            self.opcua = OpcuaConnector(
                self.cfg.opcua, self.cfg.line.id,
                (lambda recs, ack: self.submit(recs, ack, samples_dispatched=True)) if live else self.submit,
                state_file=self.spool.dir / "opcua-subscription.json", live_sink=self.submit_live if live else None)
            await self.opcua.start()

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Stop the connectors, spool what is in memory, try to send the spool for ``drain_timeout_s``, close.

        What is not sent stays in the spool and goes out at the next start.
        """
        if self.opcua is not None:
            await self.opcua.stop()
        if self.mqtt is not None:
            await asyncio.to_thread(self.mqtt.stop)
        await self._flush_inbox()
        if drain_timeout_s > 0:
            await self.forwarder.drain(drain_timeout_s)
        await cancel_tasks(self._tasks)
        self.spool.close()
        self.quarantine.close()

    async def _flush_inbox(self) -> None:
        deadline = time.monotonic() + 5
        while self._inbox_records and time.monotonic() < deadline:
            if self._wake is not None:
                self._wake.set()
            await asyncio.sleep(0.02)

    # -- the processor -------------------------------------------------------------------------------------------------
    def _take(self) -> list[tuple[Sequence[Record | Rejected], Ack | None, bool]]:
        out: list[tuple[Sequence[Record | Rejected], Ack | None, bool]] = []
        n = 0
        with self._inbox_lock:
            while self._inbox and n < MAX_FRAME_RECORDS:
                item = self._inbox.popleft()
                out.append(item)
                n += len(item[0])
            self._inbox_records -= n
        return out

    async def _process_loop(self) -> None:
        assert self._wake is not None
        while True:
            if not self._inbox:
                self._wake.clear()
                if not self._inbox:
                    await self._wake.wait()
            if self._inbox_records < 1000:
                await asyncio.sleep(LINGER_S)
            items = self._take()
            if items:
                try:
                    await self._process(items)
                except Exception:  # noqa: BLE001 - the processor must survive anything a record can do
                    log.exception("ingest processor failed on a batch; its sources are not acknowledged")

    async def _process(self, items: list[tuple[Sequence[Record | Rejected], Ack | None, bool]]) -> None:
        good: list[Record] = []
        fresh: list[Record] = []  # what the subscribers have not had yet (the live path handed them its samples)
        rejected: list[Rejected] = []
        now = time.time_ns()
        check = self.validator.check
        for records, _, dispatched in items:
            for r in records:
                if isinstance(r, Sample):
                    bad = check(r, now)
                    if bad is None:
                        good.append(r)
                        if not dispatched:
                            fresh.append(r)
                    else:
                        rejected.append(bad)
                elif isinstance(r, TraceEvent):
                    key = (r.line, r.seq, r.id, r.kind, r.time_ns)  # the same event via OPC UA and MQTT
                    if key in self._seen_trace:
                        self.counts["duplicate_trace_events"] += 1
                        continue
                    self._seen_trace[key] = None
                    if len(self._seen_trace) > 100_000:
                        self._seen_trace.pop(next(iter(self._seen_trace)))
                    self.counts["trace_events"] += 1
                    good.append(r)
                    fresh.append(r)
                elif isinstance(r, Rejected):
                    rejected.append(r)
        self.counts["received"] += len(good) + len(rejected)
        if good:
            payload, n = encode(good)
            while True:
                try:
                    stamp = await asyncio.to_thread(self.spool.append, payload, n)
                    break
                except SpoolFull as exc:
                    if self.spool.when_full == "reject_new":
                        self.counts["spool_refused"] += n
                        log.error("%s; %d records refused", exc, n)
                        stamp = None
                        break
                    log.warning("%s; holding %d records until the database drains it", exc, n)
                    await asyncio.sleep(0.5)
            if stamp is not None:
                src = np.fromiter((r.time_ns for r in good if isinstance(r, Sample)), dtype=np.int64)
                if src.size:
                    self._latency_src[stamp] = src[:: max(1, src.size // 256)]
                    while len(self._latency_src) > 10_000:
                        self._latency_src.pop(next(iter(self._latency_src)))
            self.counts["accepted"] += len(good)
            self.forwarder.notify()
        for _, ack, _ in items:
            if ack is not None:
                try:
                    ack()
                except Exception as exc:  # noqa: BLE001 - a lost connection: the broker will resend
                    log.debug("ack failed (the broker will redeliver): %s", exc)
        if rejected:
            self.counts["rejected"] += len(rejected)
            await asyncio.to_thread(self.quarantine.add_many, rejected)
        if fresh:
            await self._dispatch(fresh)

    async def _dispatch(self, records: list[Record]) -> None:
        for cb in list(self._subscribers):
            try:
                res = cb(records)
                if inspect.isawaitable(res):
                    await res
            except Exception:  # noqa: BLE001 - one faulty consumer must not stop ingest
                self.counts["subscriber_errors"] += 1
                log.exception("ingest subscriber %r failed", cb)

    def _on_confirmed(self, batch: Batch, confirmed_ns: int) -> None:
        self.counts["stored"] += batch.lines
        for stamp in batch.append_ns:
            src = self._latency_src.pop(stamp, None)
            if src is not None:
                self._latencies_ms.extend(((confirmed_ns - src) / 1e6).tolist())

    # -- state -------------------------------------------------------------------------------------------------------
    def latency_ms(self) -> dict[str, float]:
        if not self._latencies_ms:
            return {"p50": float("nan"), "p99": float("nan"), "n": 0}
        a = np.fromiter(self._latencies_ms, dtype=float)
        return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "n": int(a.size)}

    def stats(self) -> dict[str, Any]:
        """Counts, spool depth / age, database and connector state, quarantine counts per reason, latency."""
        return {
            "counts": dict(self.counts),
            "inbox_records": self._inbox_records,
            "spool": asdict(self.spool.stats()),
            "database": asdict(self.forwarder.stats),
            "quarantine": dict(self.quarantine.counts),
            "opcua": self.opcua.status() if self.opcua is not None else None,
            "mqtt": asdict(self.mqtt.state) if self.mqtt is not None else None,
            "latency_ms": self.latency_ms(),
        }
