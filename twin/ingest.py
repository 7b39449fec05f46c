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

Bounds (issue 10): a batch is cut into frames of at most ``spool.max_frame_payload`` bytes, appended one by one, and
with ``when_full: block`` the processor waits at the frame that did not fit and goes on from there when the
forwarder has confirmed something: no budget is too small, and nothing is appended twice. Sources are acknowledged
only when all their frames are in. ``ingest.queue_max`` bounds the records in memory for every source:

- records whose source keeps them until acknowledged and goes on sending anyway (OPC UA: the server keeps
  unacknowledged notifications for Republish) are *held back* beyond the bound: not queued, not acknowledged,
  counted in ``held_back_queue_full``; ``submit`` returns False so the connector can stop asking for more;
- records from a source with a window of unacknowledged messages (MQTT QoS 1: the broker sends at most its
  in-flight limit before PUBACKs) are always queued: the window is their bound;
- records nobody can send again (no ``ack``) are dropped oldest first and counted in ``dropped_queue_full``;
- the twin's own audit and prediction lines (``submit_lines``) are never dropped: they are few, and nothing else has
  them.

Every shed or held-back record is counted, and with an ``AlarmManager`` attached the pipeline raises
``ingest_queue_full`` and ``spool_full`` alarms and clears them when the condition is gone.
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
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from connectors.records import Rejected, Sample, TraceEvent
from connectors.validation import Validator
from twin.alarms import AlarmManager
from twin.config import Config
from twin.quarantine import Quarantine
from twin.store.forwarder import Forwarder, ForwarderStats
from twin.store.influx import InfluxV1Writer, InfluxV2Writer, LineWriter
from twin.store.lineproto import encode
from twin.store.spool import (
    Batch,
    FrameTooLarge,
    Spool,
    SpoolDiskError,
    SpoolFull,
    SpoolStats,
    split_frames,
)

log = logging.getLogger(__name__)

Record = Sample | TraceEvent
Ack = Callable[[], None]
Subscriber = Callable[[Sequence[Record]], Awaitable[None] | None]


@dataclass(frozen=True)
class Encoded:
    """Line protocol the twin made itself (audit entries, predictions): spooled as it is, never validated."""

    payload: bytes
    lines: int


Item = Sample | TraceEvent | Rejected | Encoded

MAX_FRAME_RECORDS = 20_000  # records taken from the inbox at once (they are then cut to the spool's frame size)
SPOOL_RETRY_S = 0.5  # a held frame is retried at the latest after this long (disk full has no confirm to wake it)
LIVE_BACKLOG_MAX = 1000  # publish batches waiting for the subscribers on the live path
LINGER_S = 0.01  # wait at least this long for more records before a small frame is written (fewer fsyncs)
COMMIT_NOW_RECORDS = 1000  # this many records waiting are appended at once, whatever the commit interval


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
                 writer: LineWriter | None = None, alarms: AlarmManager | None = None) -> None:
        self.cfg = cfg
        self.alarms = alarms
        self.validator = Validator(cfg.validation)
        self.quarantine = Quarantine(cfg.quarantine.dir, cfg.quarantine.max_bytes, cfg.quarantine.keep_raw_bytes)
        s = cfg.spool
        self.spool = Spool(s.dir, fsync=s.fsync, fsync_interval_s=s.fsync_interval_s, segment_bytes=s.segment_bytes,
                           max_bytes=s.max_bytes, when_full=s.when_full, min_free_bytes=s.min_free_bytes)
        self.forwarder = Forwarder(
            self.spool, writer or make_writer(cfg), batch_size=cfg.influx.batch_size,
            flush_interval_s=cfg.influx.flush_interval_s, retry_initial_s=cfg.influx.retry_initial_s,
            retry_max_s=cfg.influx.retry_max_s, on_refused=self.quarantine.add, on_confirmed=self._on_confirmed,
        )
        self._use_opcua = cfg.opcua.enabled if opcua is None else opcua
        self._use_mqtt = cfg.mqtt.enabled if mqtt is None else mqtt
        self.opcua: Any = None  # the first OPC UA source (the config's opcua section)
        self.opcua_sources: dict[str, Any] = {}  # every OPC UA source by name, the first included
        self.trace_context: Any = None  # the line's, shared by its OPC UA sources (connectors.opcua.TraceContext)
        self._event_rules = list(cfg.ingest.trace_from_events)
        self.mqtt: Any = None
        self.sparkplug: list[Any] = []  # one SparkplugConnector per configured group
        self._inbox: deque[tuple[Sequence[Item], Ack | None, bool]] = deque()
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
            "live_dropped": 0, "held_back_queue_full": 0, "spool_held": 0, "spool_disk_errors": 0,
            "lines_submitted": 0,
        }
        self.started_ns = 0
        self._room: asyncio.Event | None = None  # set when the forwarder confirmed something: a held frame may fit
        self._queue_alarm_seen = 0  # dropped + held back when the queue alarm was last looked at
        self._lost_alarm_seen = 0  # the OPC UA connector's lost_at_source when last looked at

    # -- wiring ------------------------------------------------------------------------------------------------------
    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """``callback(records)`` gets every validated Sample / TraceEvent, in batches, after they are spooled.

        It may be sync or async; it must not block (the processor waits for it). Returns an unsubscribe function.
        """
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def submit(self, records: Sequence[Item], ack: Ack | None = None,
               samples_dispatched: bool = False, *, windowed: bool = False) -> bool:
        """Thread-safe entry for connectors (paho's thread, asyncua's loop). ``ack`` runs once they are durable.

        ``samples_dispatched``: the subscribers already had these samples through ``submit_live``.
        ``windowed``: the source sends at most a window of unacknowledged messages (MQTT QoS 1), so it is never
        held back. Returns False when the records were held back (not queued, ``ack`` will not run: the source
        keeps them) because ``ingest.queue_max`` records are waiting already; see the module doc."""
        if self._event_rules:
            self._trace_from(records)
        queue_max = self.cfg.ingest.queue_max
        with self._inbox_lock:
            # an empty queue takes any one batch: one larger than queue_max (an OPC UA publish after a pause carries
            # every value the server queued meanwhile) could otherwise never be taken, and its source would wait forever
            over = self._inbox_records + len(records) - queue_max if self._inbox_records else 0
            if over > 0 and not windowed:
                over -= self._shed_unackable(over)
            if over > 0 and ack is not None and not windowed:
                self.counts["held_back_queue_full"] += len(records)
                self._wake_processor()  # the processor raises the alarm
                return False
            if over > 0 and ack is None and not windowed and not _internal(records):
                self.counts["dropped_queue_full"] += len(records)
                self._wake_processor()
                return True
            self._inbox.append((records, ack, samples_dispatched))
            self._inbox_records += len(records)
        self._wake_processor()
        return True

    def _trace_from(self, records: Sequence[Item]) -> None:
        """Trace events that set a station's IDs (``ingest.trace_from_events``) go into the line's trace context at
        once, before the samples of that instant are tagged (on the event loop: the context is not thread-safe)."""
        hits = [(rule, r) for r in records if isinstance(r, TraceEvent) for rule in self._event_rules
                if r.station == rule.station and r.kind in rule.kinds and (not rule.types or r.type in rule.types)]
        if not hits or self.trace_context is None:
            return
        ctx = self.trace_context

        def apply() -> None:
            for rule, ev in hits:
                for station in rule.stations or [rule.station]:
                    ctx.update(station, rule.key, ev.time_ns, ev.id, owner="events")

        if self._loop is None or threading.get_ident() == self._loop_thread:
            apply()
        else:
            self._loop.call_soon_threadsafe(apply)

    def _mqtt_sink(self, records: Sequence[Record | Rejected], ack: Ack | None) -> None:
        self.submit(records, ack, windowed=True)

    def _opcua_sink(self, records: Sequence[Record | Rejected], ack: Ack | None) -> bool:
        return self.submit(records, ack)  # False: held back; the connector pauses and republishes them

    def _opcua_sink_live(self, records: Sequence[Record | Rejected], ack: Ack | None) -> bool:
        return self.submit(records, ack, samples_dispatched=True)

    def _opcua_connectors(self) -> list[Any]:
        """Every OPC UA connector: the line's sources, and ``opcua`` when it was set from outside (tests, tools)."""
        conns = list(self.opcua_sources.values())
        if self.opcua is not None and all(c is not self.opcua for c in conns):
            conns.insert(0, self.opcua)
        return conns

    def opcua_source(self, name: str) -> Any:
        """The OPC UA connector called ``name``; "" = the first. None when it does not run."""
        return self.opcua if not name else self.opcua_sources.get(name)

    @property
    def accepting(self) -> bool:
        """False while ``ingest.queue_max`` records wait: a source that can pause (an OPC UA publish loop) should
        ask for no more until this is True again; what it sends meanwhile is held back (see ``submit``)."""
        return self._inbox_records < self.cfg.ingest.queue_max

    def submit_lines(self, payload: bytes, lines: int) -> None:
        """The twin's own line protocol (audit entries, predictions) into the spool, through the processor.

        Thread-safe and non-blocking: the event loop never waits for an fsync or a full spool here. These lines are
        never shed by ``queue_max`` (nothing else has them); with ``when_full: reject_new`` they are refused and
        counted like any record."""
        if payload:
            self.counts["lines_submitted"] += lines
            self.submit([Encoded(payload, lines)])

    def _shed_unackable(self, need: int) -> int:
        """Drop the oldest queued entries that nobody can send again (no ack, not the twin's own lines), until
        ``need`` records are freed; returns how many were. Caller holds ``_inbox_lock``."""
        freed = 0
        kept: deque[tuple[Sequence[Item], Ack | None, bool]] = deque()
        while self._inbox and freed < need:
            entry = self._inbox.popleft()
            if entry[1] is None and not _internal(entry[0]):
                freed += len(entry[0])
                self.counts["dropped_queue_full"] += len(entry[0])
            else:
                kept.append(entry)
        kept.extend(self._inbox)
        self._inbox = kept
        self._inbox_records -= freed
        return freed

    def _wake_processor(self) -> None:
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
                good: list[Record] = [s for s in batch if check(s, now) is None]  # rejects: the store path
                if good:
                    self.counts["live_dispatched"] += len(good)
                    await self._dispatch(good)

    # -- lifecycle ---------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._live_wake = asyncio.Event()
        self._room = asyncio.Event()
        self.started_ns = time.time_ns()
        self._tasks.append(asyncio.create_task(self._process_loop(), name="ingest-processor"))
        self._tasks.append(asyncio.create_task(self._live_loop(), name="ingest-live"))
        self._tasks.append(asyncio.create_task(self.forwarder.run(), name="ingest-forwarder"))
        if self._use_mqtt:
            from connectors.mqtt import MqttConnector

            # the broker sends at most its in-flight window before our PUBACKs: MQTT is bounded by it
            self.mqtt = MqttConnector(self.cfg.mqtt, self._mqtt_sink, self.cfg.line.id)
            self.mqtt.start()
        if self._use_mqtt and self.cfg.sparkplug:
            from connectors.sparkplug import SparkplugConnector

            for spb in self.cfg.sparkplug:
                host = SparkplugConnector(spb, self.cfg.line.id, self._mqtt_sink)
                self.sparkplug.append(host)
                await host.start()
        if self._use_opcua:
            from connectors.opcua import OpcuaConnector, TraceContext

            live = self.cfg.ingest.live_dispatch
            context = self.trace_context = TraceContext()  # one per line: a server's IDs may tag another's samples
            for i, src in enumerate(c for c in self.cfg.opcua_all if c.enabled or c is self.cfg.opcua):
                # the first keeps the state file name it always had (a running twin's subscription survives the update)
                state = "opcua-subscription.json" if i == 0 else f"opcua-{src.name}-subscription.json"
                conn = OpcuaConnector(
                    src, self.cfg.line.id, self._opcua_sink_live if live else self._opcua_sink,
                    state_file=self.spool.dir / state, live_sink=self.submit_live if live else None,
                    ready=lambda: self.accepting, context=context)
                self.opcua_sources[src.name] = conn
                if i == 0:
                    self.opcua = conn
                await conn.start()

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Stop the connectors, spool what is in memory, try to send the spool for ``drain_timeout_s``, close.

        What is not sent stays in the spool and goes out at the next start.
        """
        for conn in self.opcua_sources.values():
            await conn.stop()
        if self.mqtt is not None:
            await asyncio.to_thread(self.mqtt.stop)
        for spb in self.sparkplug:
            await spb.stop()
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
    def _take(self) -> tuple[list[tuple[Sequence[Item], Ack | None, bool]], int]:
        """Up to MAX_FRAME_RECORDS from the inbox. They stay counted in ``_inbox_records`` until processed: held at
        a full spool they are still in memory, under ``queue_max``, and not yet durable."""
        out: list[tuple[Sequence[Item], Ack | None, bool]] = []
        n = 0
        with self._inbox_lock:
            while self._inbox and n < MAX_FRAME_RECORDS:
                item = self._inbox.popleft()
                out.append(item)
                n += len(item[0])
        return out, n

    async def _process_loop(self) -> None:
        """Group commit: at most one append (one fsync) per ``spool.commit_interval_s``, taking what every source
        sent meanwhile, unless COMMIT_NOW_RECORDS wait. Sources are acknowledged after the fsync that covers them
        (in ``_process``), never before; the window only decides how many share it (issue 11: one fsync, one frame
        and one thread hop per OPC UA publish were most of ingest's CPU at a line's rate)."""
        assert self._wake is not None
        interval_s = self.cfg.spool.commit_interval_s
        last_commit = float("-inf")
        while True:
            if not self._inbox:
                self._wake.clear()
                if not self._inbox:
                    await self._wake.wait()
            if self._inbox_records < COMMIT_NOW_RECORDS:
                await asyncio.sleep(max(LINGER_S, last_commit + interval_s - time.monotonic()))
            last_commit = time.monotonic()
            items, n = self._take()
            if items:
                try:
                    await self._process(items)
                except Exception:
                    log.exception("ingest processor failed on a batch; its sources are not acknowledged")
                finally:
                    with self._inbox_lock:
                        self._inbox_records -= n
            self._update_alarms()

    async def _process(self, items: list[tuple[Sequence[Item], Ack | None, bool]]) -> None:
        good: list[Record] = []
        own: list[Encoded] = []
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
                elif isinstance(r, Encoded):
                    own.append(r)
        self.counts["received"] += len(good) + len(rejected)
        if good or own:
            payload, n = encode(good)
            if own:
                payload += b"".join(e.payload if e.payload.endswith(b"\n") else e.payload + b"\n" for e in own)
                n += sum(e.lines for e in own)
            stamp = await self._append_frames(payload, n, rejected)
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

    async def _append_frames(self, payload: bytes, lines: int, rejected: list[Rejected]) -> int | None:
        """Append ``payload`` as frames that fit the spool's budget; returns the last frame's stamp (None if none).

        ``block`` (and any disk error) waits at the frame that did not fit and resumes there; ``reject_new`` refuses
        the frames that do not fit (counted); a single line larger than the whole budget goes to the quarantine."""
        frames = split_frames(payload, lines, self.spool.max_frame_payload)
        stamp: int | None = None
        held_logged = False
        i = 0
        while i < len(frames):
            data, n = frames[i]
            try:  # as many frames as fit, one fsync
                taken, stamp = await asyncio.to_thread(self.spool.append_frames, frames[i:])
                i += taken
                continue
            except FrameTooLarge as exc:
                rejected.append(Rejected("too_large", str(exc), "spool", data, time.time_ns()))
                self.counts["accepted"] -= n  # counted as rejected instead (the caller adds the good ones)
                i += 1
                continue
            except SpoolFull as exc:
                disk = isinstance(exc, SpoolDiskError)
                if disk:
                    self.counts["spool_disk_errors"] += 1
                if self.spool.when_full == "reject_new" and not disk:
                    refused = sum(k for _, k in frames[i:])
                    self.counts["spool_refused"] += refused
                    log.error("%s; %d records refused (when_full=reject_new)", exc, refused)
                    break
                if not held_logged:
                    waiting = sum(k for _, k in frames[i:])
                    self.counts["spool_held"] += 1
                    log.warning("%s; holding %d records (%d frames) until %s", exc, waiting, len(frames) - i,
                                "the filesystem has room" if disk else "the database confirms some")
                    held_logged = True
                self._update_alarms()
            assert self._room is not None
            self._room.clear()
            self.forwarder.notify()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), SPOOL_RETRY_S)
        if held_logged:
            log.info("spool has room again: held records appended")
        return stamp

    def _update_alarms(self) -> None:
        """Raise / clear ``spool_full`` and ``ingest_queue_full``, raise ``data_lost_at_source`` (only with an
        AlarmManager attached)."""
        alarms = self.alarms
        if alarms is None:
            return
        if self.spool.full:  # (stats() only then: it may read a frame header for the age)
            st = self.spool.stats()
            what = "the filesystem refuses writes" if st.disk_full else \
                f"{st.depth_bytes} of {st.max_bytes} bytes unsent"
            alarms.raise_("spool_full", "ingest", f"spool full ({what}); ingest is holding data back "
                          f"(when_full={self.spool.when_full})", "critical", depth_bytes=st.depth_bytes,
                          max_bytes=st.max_bytes, disk_full=st.disk_full)
        elif alarms.is_active("spool_full", "ingest"):
            alarms.clear("spool_full", "ingest")
        shed = self.counts["dropped_queue_full"] + self.counts["held_back_queue_full"]
        if shed > self._queue_alarm_seen:
            alarms.raise_("ingest_queue_full", "ingest",
                          f"ingest queue at ingest.queue_max={self.cfg.ingest.queue_max}: "
                          f"{self.counts['dropped_queue_full']} records dropped, "
                          f"{self.counts['held_back_queue_full']} held back at their source", "critical",
                          dropped=self.counts["dropped_queue_full"], held_back=self.counts["held_back_queue_full"])
        elif self._inbox_records < self.cfg.ingest.queue_max // 2 and alarms.is_active("ingest_queue_full", "ingest"):
            alarms.clear("ingest_queue_full", "ingest")
        self._queue_alarm_seen = shed
        lost = sum(c.state.lost_at_source for c in self._opcua_connectors())
        if lost > self._lost_alarm_seen:  # not cleared by itself: lost data needs a person to look at it
            alarms.raise_("data_lost_at_source", "opcua",
                          f"{lost} OPC UA notification messages were held back and the server no longer had them: "
                          "their values are lost (the pause outlived the server's queues or the subscription)",
                          "critical", lost_messages=lost)
        self._lost_alarm_seen = lost

    async def _dispatch(self, records: list[Record]) -> None:
        for cb in list(self._subscribers):
            try:
                res = cb(records)
                if inspect.isawaitable(res):
                    await res
            except Exception:
                self.counts["subscriber_errors"] += 1
                log.exception("ingest subscriber %r failed", cb)

    def _on_confirmed(self, batch: Batch, confirmed_ns: int) -> None:
        self.counts["stored"] += batch.lines
        if self._room is not None:
            self._room.set()
        if self.alarms is not None and (self.alarms.is_active("spool_full", "ingest")
                                        or self.alarms.is_active("ingest_queue_full", "ingest")):
            self._update_alarms()  # the condition may be gone with no new records to wake the processor
        for stamp in batch.append_ns:
            src = self._latency_src.pop(stamp, None)
            if src is not None:
                self._latencies_ms.extend(((confirmed_ns - src) / 1e6).tolist())

    # -- state -------------------------------------------------------------------------------------------------------
    @property
    def spool_full(self) -> bool:
        return self.spool.full

    def latency_ms(self) -> dict[str, float]:
        if not self._latencies_ms:
            return {"p50": float("nan"), "p99": float("nan"), "n": 0}
        a = np.fromiter(self._latencies_ms, dtype=float)
        return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "n": int(a.size)}

    @property
    def running(self) -> bool:
        """Started and not stopped."""
        return bool(self._tasks)

    def status(self) -> IngestStatus:
        """What the service and its readiness read: typed, so a missing field is an error here, not a silent
        default at the reader (``/ready`` once read a ``connected`` attribute that did not exist)."""
        return IngestStatus(
            running=self.running, counts=dict(self.counts), inbox_records=self._inbox_records,
            spool=self.spool.stats(), database=self.forwarder.stats, quarantine=dict(self.quarantine.counts),
            connectors={("opcua" if c is self.opcua else f"opcua:{name}"): bool(c.state.connected)
                        for name, c in self.opcua_sources.items()}
            | ({"mqtt": bool(self.mqtt.state.connected)} if self.mqtt is not None else {})
            | {f"sparkplug:{c.group}": bool(c.state.connected) for c in self.sparkplug},
        )

    def stats(self) -> dict[str, Any]:
        """Counts, spool depth / age, database and connector state, quarantine counts per reason, latency: the
        JSON of ``/status`` (``status()`` is the typed view)."""
        return {
            "counts": dict(self.counts),
            "inbox_records": self._inbox_records,  # in memory, not yet in the spool (queued or held by the processor)
            "spool": asdict(self.spool.stats()),
            "database": asdict(self.forwarder.stats),
            "quarantine": dict(self.quarantine.counts),
            "opcua": self.opcua.status() if self.opcua is not None else None,
            "opcua_sources": {name: c.status() for name, c in self.opcua_sources.items()},
            "mqtt": asdict(self.mqtt.state) if self.mqtt is not None else None,
            "latency_ms": self.latency_ms(),
        }


@dataclass(frozen=True)
class IngestStatus:
    """The pipeline's state as the service reads it (``IngestPipeline.status``)."""

    running: bool
    counts: dict[str, int]
    inbox_records: int  # in memory, not yet in the spool
    spool: SpoolStats
    database: ForwarderStats
    quarantine: dict[str, int]  # quarantined records per reason
    connectors: dict[str, bool]  # connected per source: "opcua" (the first server), "opcua:<name>", "mqtt"


def _internal(records: Sequence[Item]) -> bool:
    """The twin's own lines (``submit_lines``): never shed."""
    return len(records) == 1 and isinstance(records[0], Encoded)
