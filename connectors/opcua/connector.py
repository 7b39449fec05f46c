"""The OPC UA connector: one session supervised by itself, one subscription, trace context, durable acknowledgements.

What the field's tools get wrong and this connector does not (peers.md):

- Telegraf loops on ``BadNodeIdUnknown`` after a server restart (#15074, #19186): here every (re)connection starts
  from a *new* ``Client``, resolves the namespace index from its URI and browses the address space again
  (``browse.py``), so node ids are re-resolved, never reused.
- asyncua reconnects have hung (#1660): every call has a timeout, the session is probed by a watchdog (a read of
  ``Server_ServerStatus_State`` and the age of the last publish response, keep-alives included), and any failure
  tears the client down and starts over with bounded exponential backoff (``connectors/backoff.py``).
- asyncua's handler path spawns a task per value, its iterator path drops the oldest on overflow: here a
  ``Subscription`` subclass takes each ``PublishResult`` whole, in order, and hands it over as one batch
  (``asyncua_adapter.BatchSubscription``).

Nothing lost across a crash of the twin or a network cut: notifications are acknowledged to the server only once
the pipeline has them in its durable spool (our own publish loop sends the acknowledgements), and the subscription
(id, monitored items, trace context, the server's start time) is saved to a state file. A new process or a new
session first *transfers* that subscription (OPC UA TransferSubscriptions, Part 4 5.13.7) and re-reads every
unacknowledged notification with Republish; only when the server no longer has it (server restarted: different
start time, or subscription expired) is a fresh subscription created. Values changed while no session existed at
all are lost only beyond the monitored items' queue (``opcua.queue_size`` per node) or the subscription lifetime.
Every use of asyncua internals this needs is in ``asyncua_adapter.py``.

Backpressure: the sink returns False when it did not take a publish's records (the pipeline holds
``ingest.queue_max`` records: the database is down and the spool full). That message is then not acknowledged and
its records are dropped here (the server keeps it for Republish); the publish loop sends no Publish request while
``ready()`` says the sink has no room (polled with backoff), so the server keeps new values in the monitored items'
queues meanwhile, and before it resumes it republishes the held messages in order. A republished message the sink
refuses again is kept in memory (asyncua's server drops a message once republished). A held message the server no
longer has (``BadMessageNotAvailable``; a pause longer than the subscription's lifetime) is lost at the source:
counted in ``lost_at_source`` in the status and logged as an error. A pause does not count as a stale session.

Trace context (``trace.py``, which also says which clock an ID goes by): a sample gets the IDs that were current at
its *source timestamp*. Samples are held for one publish cycle (at most twice the publishing interval) before they go
to the store, so an ID change that the server delivers in the next publish response (same source instant) still
reaches the samples it belongs to.

Two paths, so that control never waits for that bookkeeping: with a ``live_sink`` every sample is also handed over the
moment its publish response arrives, tagged with the IDs known then (the live state and the recommender need values,
not the last word on a roll ID); the held, finally tagged copy goes to ``sink`` (spool, InfluxDB, acknowledgements).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.client.ua_session import UaSession
from asyncua.common.node import Node
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.uaerrors import (
    BadNoSubscription,
    BadSubscriptionIdInvalid,
    BadTimeout,
    UaError,
    UaStructParsingError,
)

from connectors.backoff import Backoff
from connectors.opcua import asyncua_adapter as adapter
from connectors.opcua.asyncua_adapter import BatchSubscription
from connectors.opcua.backfill import Backfill
from connectors.opcua.browse import NodeInfo, catalogue, resolve_node_id
from connectors.opcua.bulk import operation_limits
from connectors.opcua.setpoints import SetpointResult, read_grant, write_setpoint
from connectors.opcua.trace import EARLIEST_NS, TraceContext, id_time, sample_time
from connectors.opcua.values import checked_samples, plain_value, trace_event
from connectors.records import Rejected, Sample, TraceEvent, TraceValue
from connectors.settings import OpcuaConfig

log = logging.getLogger("connectors.opcua")  # the name it logged under as one module

Ack = Callable[[], None]
#: ``sink(records, ack)``: returns False when it did not take the records (the pipeline's queue is full: ``ack`` will
#: not run); anything else (True, None) means taken. See "Backpressure" in the module doc.
Sink = Callable[[Sequence[Sample | TraceEvent | Rejected], Ack | None], bool | None]
LiveSink = Callable[[Sequence[Sample]], None]
#: Whether the sink has room again (``IngestPipeline.accepting``); polled, with backoff, while the connector pauses.
Ready = Callable[[], bool]

ROOM_POLL_INITIAL_S = 0.05  # first wait for the sink's room; doubled up to ROOM_POLL_MAX_S while it has none
ROOM_POLL_MAX_S = 1.0


class OpcuaError(Exception):
    """A connector-level failure with advice; the supervisor logs it and reconnects."""


@dataclass
class _Handover:
    """Records of one flush, tagged, with the ack that acknowledges their sequence numbers once they are durable."""

    records: list[Sample | TraceEvent | Rejected]
    ack: Ack | None
    seqs: list[int]


@dataclass
class OpcuaState:
    state: str = "stopped"  # stopped | connecting | connected | backoff
    connected: bool = False
    connects: int = 0
    reconnects: int = 0
    last_data_ns: int = 0
    last_keepalive_ns: int = 0
    last_error: str = ""
    nodes: int = 0
    resumed: int = 0  # subscriptions taken over after a cut or a crash (nothing lost)
    samples: int = 0
    events: int = 0
    namespace_index: int | None = None
    paused: bool = False  # no Publish requests: the sink has no room (backpressure)
    pauses: int = 0
    held_back: int = 0  # messages the sink refused (left unacknowledged on the server, republished later)
    republished: int = 0
    lost_at_source: int = 0  # unacknowledged messages the server no longer had (BadMessageNotAvailable): alarm-worthy
    state_writes: int = 0  # subscription state file writes, and their bytes
    state_bytes: int = 0
    backfilled: int = 0  # samples read back from the server's history after a new subscription (backfill.py)


class OpcuaConnector:
    def __init__(self, cfg: OpcuaConfig, line: str, sink: Sink, state_file: Path | None = None,
                 live_sink: LiveSink | None = None, ready: Ready | None = None,
                 context: TraceContext | None = None) -> None:
        """``context``: the line's trace context when several servers share IDs (the calender's samples get the
        roll ID the coater's server holds); each connector owns the histories it writes (``cfg.name``)."""
        self.cfg = cfg
        self.line = line
        self.sink = sink
        self.live_sink = live_sink
        self.ready = ready
        # backpressure (module doc): sequence numbers the server keeps for us, to republish in order, each with
        # whether its samples went to the live sink already; handovers of republished messages the sink refused
        # (the server may have dropped them on Republish: kept here, offered again first)
        self._held: list[tuple[int, bool]] = []
        self._held_oldest: int | None = None  # oldest timed sample of the held messages: the trim horizon keeps it
        self._kept: deque[_Handover] = deque()
        self._replaying: bool | None = None  # during a Republish: whether the live sink had that message already
        self._sub: BatchSubscription | None = None
        self.state_file = state_file
        self._acks: list[ua.SubscriptionAcknowledgement] = []
        self._pending_seqs: list[int] = []
        self._pending_events: list[Sample | TraceEvent | Rejected] = []
        self._sub_id: int | None = None
        self._saved: dict[str, Any] | None = self._load_state()
        self._session_file = state_file.with_name(state_file.stem + "-session.json") if state_file else None
        self.state = OpcuaState()
        self.context = context if context is not None else TraceContext()
        self._owner = cfg.name
        # integrate_speed trace nodes: per node source, (time, speed m/min, position m, roll id) of the last value
        self._speed: dict[str, tuple[int, float, float, str]] = {}
        # acknowledgements wait until the context that tagged their samples is saved: (context version, ack)
        self._acks_waiting: list[tuple[int, ua.SubscriptionAcknowledgement]] = []
        self._saved_version = -1
        # what the state file holds: (context version, durable marks version); the watchdog writes only on a change
        self._durable_version = 0
        self._written: tuple[int, int] | None = None
        # the trim horizon: oldest timed sample of each handed-over, unacknowledged batch, and of those acknowledged
        # since the last trim (a min over many batches: one batch of oddly stamped values cannot move it far)
        self._unacked_oldest: dict[int, int] = {}
        self._acked_oldest: int | None = None
        self._flushes = 0
        self._pending_oldest: int | None = None
        # per node source: [time, "quality|value"] of the last delivered sample the pipeline made durable
        self._durable: dict[str, list[Any]] = {}
        self._pending_durable: dict[str, list[Any]] = {}
        self._ctx_server: str | None = None  # the server run (its start time) the context and _durable belong to
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._client: Client | None = None
        self._handles: dict[int, NodeInfo] = {}
        # handles whose initial value (the first notification of a new subscription) has not arrived yet
        self._initial_due: set[int] = set()
        #: per node source: the monitored-item queue size the server granted (RevisedQueueSize), what survives a cut
        self.queue_sizes: dict[str, int] = {}
        self._event_fields: list[str] = []
        self._pending: list[Sample] = []
        # newest source time of the held samples per station: an ID update at or before it makes their tags stale
        self._pending_newest: dict[str, int] = {}
        self._retag = False
        self._pending_replayed = False  # the held message came from a Republish (see _hand_over)
        self._flush_timer: asyncio.TimerHandle | None = None
        self._connected_evt = asyncio.Event()
        self.backfill = Backfill(self)  # the server's history of the gap a new subscription leaves
        if self._saved:
            self._ctx_server = self._saved.get("server_start")
            if self._saved.get("context"):
                self.context.restore(self._saved["context"], self._owner)
            durable = self._saved.get("durable")
            if isinstance(durable, dict):
                self._durable = {str(k): [int(v[0]), str(v[1])] for k, v in durable.items()}

    # -- public --------------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._supervise(), name="opcua-supervisor")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self._flush_pending()
        self.state.state = "stopped"
        self.state.connected = False

    async def wait_connected(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected_evt.wait(), timeout_s)
        return self.state.connected

    async def write_setpoint(self, node: str, value: float, grant_node: str | None = None) -> SetpointResult:
        """Through this connector's session: EURange and grant checked, written once, the server's status back.
        ``grant_node`` None = the source's ``grant_node``; "" = none on this server."""
        client, ns = self._client, self.state.namespace_index
        if client is None or ns is None or not self.state.connected:
            return SetpointResult(False, "NotSent", f"not connected to {self.cfg.endpoint}", node, value, False)
        grant = self.cfg.grant_node if grant_node is None else grant_node
        return await write_setpoint(client, ns, node, value, grant_path=grant or None,
                                    timeout_s=self.cfg.request_timeout_s)

    async def read_grant(self, grant_node: str | None = None) -> bool:
        """The source's grant node (True when it has none); False when not connected or unreadable."""
        client, ns = self._client, self.state.namespace_index
        grant = self.cfg.grant_node if grant_node is None else grant_node
        if client is None or ns is None or not self.state.connected:
            return False
        if not grant:
            return True
        try:
            return await read_grant(client, ns, grant, timeout_s=self.cfg.request_timeout_s)
        except (TimeoutError, OSError, ConnectionError, UaError):
            return False

    def status(self) -> dict[str, Any]:
        s = self.state
        return {
            "state": s.state, "connected": s.connected, "endpoint": self.cfg.endpoint, "reconnects": s.reconnects,
            "connects": s.connects, "last_data_ns": s.last_data_ns, "last_keepalive_ns": s.last_keepalive_ns,
            "last_error": s.last_error, "nodes": s.nodes, "resumed": s.resumed, "samples": s.samples,
            "events": s.events,
            "paused": s.paused, "pauses": s.pauses, "held_back": s.held_back, "held_messages": len(self._held),
            "kept_messages": len(self._kept), "republished": s.republished, "lost_at_source": s.lost_at_source,
            "state_writes": s.state_writes, "state_bytes": s.state_bytes, "backfilled": s.backfilled,
        }

    # -- supervision ---------------------------------------------------------------------------------------------------
    async def _supervise(self) -> None:
        backoff = Backoff(self.cfg.reconnect_initial_s, self.cfg.reconnect_max_s)
        while not self._stop.is_set():
            self.state.state = "connecting"
            try:
                await self._session()
                backoff.reset()
            except asyncio.CancelledError:
                await self._teardown()
                raise
            except Exception as exc:  # noqa: BLE001 - every failure means: tear down, back off, reconnect
                msg = f"{type(exc).__name__}: {exc}"
                if msg != self.state.last_error:
                    log.warning("OPC UA %s: %s; reconnecting in %.1f s", self.cfg.endpoint, msg, backoff.current_s)
                self.state.last_error = msg
            was_connected = self.state.connected
            self.state.connected = False
            self._connected_evt.clear()
            self._flush_pending()
            await self._teardown()
            if self._stop.is_set():
                break
            self.state.state = "backoff"
            if was_connected:
                backoff.reset()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), backoff.next_delay())

    async def _teardown(self) -> None:
        """Drop the connection but not the server-side session: its subscription can then be transferred."""
        client, self._client = self._client, None
        self._handles = {}
        self._initial_due = set()
        self._sub = None  # a held message is republished only on the subscription's next session
        await self.backfill.stop()  # what it did not read yet is read on the next session
        if client is None:
            return
        await adapter.drop_connection(client)

    async def _session(self) -> None:
        c = self.cfg
        client = await adapter.make_client(c, self._session_file)
        self._client = client
        saved_token = adapter.persisted_token(self._session_file)
        await asyncio.wait_for(client.connect(), c.connect_timeout_s)
        session = client.uaclient.session
        resumed = saved_token is not None and adapter.session_token(client) == saved_token
        # acks only what is durable (see module doc)
        adapter.replace_publish_loop(session, lambda: self._publish_loop(session))
        ns = await asyncio.wait_for(adapter.namespace_index(client, c.namespace_uri), c.request_timeout_s)
        self.state.namespace_index = ns
        start_time = await asyncio.wait_for(
            client.get_node(adapter.node_id(ObjectIds.Server_ServerStatus_StartTime)).read_value(), c.request_timeout_s)
        server_start = str(start_time)
        self.backfill.keep_marks(self._durable)  # where the gaps begin, before a server restart clears them
        if server_start != self._ctx_server:
            # a new server run may have a new clock: IDs and durable marks of the old one must not apply to it
            self.context.clear(self._owner)
            self._durable.clear()
            self._durable_version += 1
            self._ctx_server = server_start
        sub = await self._try_transfer(client, server_start) if resumed else None
        if sub is None:
            sub = await self._new_subscription(client, ns, server_start)
            self.backfill.new_subscription()
        self.backfill.start(client)  # a new subscription's gaps, or what a cut interrupted
        self._sub_id = sub.subscription_id
        self._sub = sub
        self.state.nodes = len(self._handles)
        self.state.connected = True
        self.state.state = "connected"
        self.state.connects += 1
        if self.state.connects > 1:
            self.state.reconnects += 1
        self.state.last_error = ""
        self._connected_evt.set()
        await self._watchdog(client, sub)

    async def _new_subscription(self, client: Client, ns: int, server_start: str) -> BatchSubscription:
        c = self.cfg
        infos = await asyncio.wait_for(catalogue(c, client, ns), max(30.0, c.request_timeout_s * 6))
        if not infos:
            raise OpcuaError(f"no variables found under {c.discovery.browse_path!r} in namespace {c.namespace_uri}; "
                             "check opcua.discovery.browse_path / opcua.nodes")
        # the same server run keeps its context: a new subscription's initial values are samples from the past
        await self._prime_context(client, infos)
        await self.backfill.prime(client, infos)  # the IDs of the gap too: initial values may be from within it
        interval = c.subscription_interval_ms
        keepalive = max(3, int(1000 / interval))
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=interval,
            RequestedLifetimeCount=max(3 * keepalive, int(3 * c.session_timeout_s * 1000 / interval)),
            RequestedMaxKeepAliveCount=keepalive, MaxNotificationsPerPublish=0, PublishingEnabled=True, Priority=0,
        )
        if self._held:  # held back, never stored, and their subscription is gone (before init starts the loop)
            self._count_lost([n for n, _ in self._held], self._sub_id, "their subscription is gone")
            self._held.clear()
            self._held_oldest = None
        sub = BatchSubscription(client.uaclient.session, params, self._on_batch)
        await asyncio.wait_for(sub.init(), c.request_timeout_s)
        self._acks.clear()  # of a subscription that is gone: nothing will be republished from it
        self._acks_waiting.clear()
        self._unacked_oldest.clear()
        per_call = (await operation_limits(client)).monitored_items
        self._handles = await self._monitor(sub, infos, per_call)
        self._set_offsets()
        self._initial_due &= set(self._handles)  # those that did not arrive yet (see _monitor)
        if c.trace_events:
            await self._subscribe_events(client, sub, ns)
        self._save_state(sub, server_start)
        log.info("OPC UA %s: new subscription %s on %d nodes (namespace %s = %d)", c.endpoint, sub.subscription_id,
                 len(self._handles), c.namespace_uri, ns)
        return sub

    async def _try_transfer(self, client: Client, server_start: str) -> BatchSubscription | None:
        """Carry on with the subscription of the resumed session (ours before a cut, or the crashed process's).

        The session was re-activated on a new channel (Part 4 6.7, asyncua's persisted session); the subscription
        is then "transferred" to it to learn which messages are still unacknowledged, and those are republished.
        """
        saved = self._saved
        if not saved or saved.get("endpoint") != self.cfg.endpoint or saved.get("server_start") != server_start:
            return None
        c = self.cfg
        session = client.uaclient.session
        sub_id = int(saved["subscription_id"])
        try:
            params = ua.TransferSubscriptionsParameters()
            params.SubscriptionIds = [sub_id]
            params.SendInitialValues = False
            results = await asyncio.wait_for(session.transfer_subscriptions(params), c.request_timeout_s)
        except (TimeoutError, UaError) as exc:
            log.info("OPC UA: subscription %s cannot be transferred (%s); creating a new one", sub_id, exc)
            return None
        if not results or not results[0].StatusCode.is_good():
            log.info("OPC UA: subscription %s is gone (%s); creating a new one", sub_id,
                     results[0].StatusCode.name if results else "no result")
            return None
        handles = {int(h): _info_from_saved(d) for h, d in saved["handles"].items()}
        self._handles = handles
        self._set_offsets()
        self._initial_due = set()  # SendInitialValues=False: what arrives are the line's own changes
        sub = BatchSubscription(session, ua.CreateSubscriptionParameters(), self._on_batch)
        sub.subscription_id = sub_id
        if saved.get("event_handle") is not None:
            from asyncua.common.events import get_filter_from_event_type

            with contextlib.suppress(Exception):
                ns = self.state.namespace_index
                etype = await client.nodes.base_event_type.get_child(f"{ns}:TraceEventType")
                evfilter = await get_filter_from_event_type([etype])
                self._event_fields = [".".join(q.Name for q in sel.BrowsePath) for sel in evfilter.SelectClauses]
                adapter.register_event_item(sub, int(saved["event_handle"]), evfilter)
        self._unacked_oldest.clear()  # what was handed over before is tagged already; republished copies count anew
        # received by the dead session (or held back) but never acknowledged: maybe never spooled. The publish loop
        # republishes them in order, as the sink has room, before it asks for anything new (_catch_up); those the
        # sink refused after a Republish are in memory (_kept) and not asked for again
        kept = {n for h in self._kept for n in h.seqs}
        live_seen = {n for n, seen in self._held if seen}
        backlog = sorted(int(n) for n in (results[0].AvailableSequenceNumbers or []) if int(n) not in kept)
        gone = sorted({n for n, _ in self._held} - set(backlog))
        if gone:
            self._count_lost(gone, sub_id, "the server no longer lists them after the takeover")
        self._held = [(n, n in live_seen) for n in backlog]
        self._sub = sub
        adapter.attach_subscription(session, sub)
        self.state.resumed += 1
        log.info("OPC UA %s: took over subscription %s (%d nodes, %d unacknowledged messages to republish)",
                 c.endpoint, sub_id, len(handles), len(backlog))
        return sub

    async def _publish_loop(self, session: UaSession) -> None:
        """asyncua's loop acknowledges a message as soon as the callback returns; ours sends only durable acks, and
        no Publish request at all while the sink has no room or has not yet taken what it refused (``_catch_up``)."""
        while adapter.session_open(session) and not self._stop.is_set():  # _catch_up returns at once on a stop
            if self._held or self._kept or not self._has_room():
                await self._catch_up(session)
                continue
            acks, self._acks = self._acks, []
            try:
                response = await session.publish(acks)
            except (BadTimeout, UaStructParsingError):
                self._acks[:0] = acks
                continue
            except BadNoSubscription:
                self._acks[:0] = acks
                await asyncio.sleep(0.2)
                continue
            except asyncio.CancelledError:
                self._acks[:0] = acks
                raise
            except Exception as exc:  # noqa: BLE001 - the watchdog decides about the session
                self._acks[:0] = acks
                log.debug("publish failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            sub_id = response.Parameters.SubscriptionId
            callback = adapter.subscription_callback(session, sub_id)
            if callback is not None:
                try:
                    await callback(response.Parameters)
                except Exception:
                    log.exception("OPC UA notification handling failed")

    # -- backpressure --------------------------------------------------------------------------------------------------
    def _has_room(self) -> bool:
        return self.ready is None or self.ready()

    async def _catch_up(self, session: UaSession) -> None:
        """No Publish request until the sink has room and has taken, in order, what it refused: first the handovers
        kept in memory, then every held sequence number, republished one by one.

        The server meanwhile keeps new values in the monitored items' queues (``queue_size`` per node) and the
        unacknowledged messages in its retransmission queue; the subscription lives ``RequestedLifetimeCount``
        publishing intervals (3 x ``session_timeout_s``) without a Publish request. The room is polled with backoff
        (``ROOM_POLL_INITIAL_S`` doubling to ``ROOM_POLL_MAX_S``): no busy loop, no task per message."""
        poll = Backoff(ROOM_POLL_INITIAL_S, ROOM_POLL_MAX_S)
        started = time.monotonic()
        self.state.paused = True
        self.state.pauses += 1
        log.warning("OPC UA %s: ingest has no room; no Publish requests until it has (%d messages held back on the "
                    "server, %d in memory)", self.cfg.endpoint, len(self._held), len(self._kept))
        try:
            while adapter.session_open(session) and not self._stop.is_set():
                if not self._has_room():
                    await self._wait(poll.next_delay())
                    continue
                if self._kept:
                    head = self._kept[0]
                    if self.sink(head.records, head.ack) is False:
                        await self._wait(poll.next_delay())
                        continue
                    self._kept.popleft()
                elif self._held:
                    seq, live_seen = self._held[0]
                    if not await self._republish(session, seq, live_seen):
                        await self._wait(poll.next_delay())
                        continue
                else:
                    return
                poll.reset()
        finally:
            self.state.paused = False
            if self._sub is not None:
                self._sub.last_publish_at = time.monotonic()  # the watchdog counts staleness from the resume
            log.info("OPC UA %s: publishing again after %.1f s (%d republished, %d lost at the source so far)",
                     self.cfg.endpoint, time.monotonic() - started, self.state.republished, self.state.lost_at_source)

    async def _wait(self, delay_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay_s)

    async def _republish(self, session: UaSession, seq: int, live_seen: bool) -> bool:
        """Republish the held message ``seq`` and hand it on like a publish response (the hold cycle included).

        Returns False when the request failed and should be tried again (the message stays first in ``_held``).
        A message the server no longer has (``BadMessageNotAvailable``; asyncua's server answers an empty message)
        is lost at the source: counted in ``lost_at_source`` and logged as an error, never skipped silently."""
        sub, sub_id = self._sub, self._sub_id
        if sub is None or sub_id is None:
            return False
        try:
            msg = await adapter.republish(session, sub_id, seq, self.cfg.request_timeout_s)
        except BadSubscriptionIdInvalid:
            gone = [n for n, _ in self._held]
            self._held.clear()
            self._held_oldest = None
            self._count_lost(gone, sub_id, "their subscription is gone (BadSubscriptionIdInvalid)")
            return True
        except (TimeoutError, UaError, OSError, ConnectionError) as exc:
            log.info("OPC UA: Republish of message %d failed (%s: %s); trying again", seq, type(exc).__name__, exc)
            return False
        self._held.pop(0)
        if not self._held:
            self._held_oldest = None  # the last one is in the hold cycle now: _pending_oldest covers it
        if msg is None:
            self._count_lost([seq], sub_id, "the server no longer has them (BadMessageNotAvailable)")
            return True
        self.state.republished += 1
        self._replaying = live_seen
        try:
            sub.process_message(msg)
        finally:
            self._replaying = None
        return True

    def _count_lost(self, seqs: list[int], sub_id: int | None, why: str) -> None:
        self.state.lost_at_source += len(seqs)
        log.error("OPC UA %s: %d unacknowledged message(s) of subscription %s (sequence numbers %s) cannot be read "
                  "again: %s. Their values are LOST AT THE SOURCE (connector status: lost_at_source=%d); the "
                  "server's retransmission queue or the subscription's lifetime was shorter than the outage",
                  self.cfg.endpoint, len(seqs), sub_id, _ranges(seqs), why, self.state.lost_at_source)

    def _hand_over(self, handover: _Handover, replayed: bool, oldest_token: int) -> None:
        """Give the sink a flush's records, in order after anything it refused; keep or hold what it refuses.

        Refused (or queued behind a refusal): a message the server still keeps (first delivery) is dropped here and
        its sequence numbers held for Republish; a republished one is kept in memory (a server may drop a message
        once it was republished: asyncua's does)."""
        behind = bool(self._kept) or (bool(self._held) and not replayed)
        if not handover.seqs:
            self.sink(handover.records, handover.ack)  # nothing can bring these back: no ordering to keep
            return
        if not behind and self.sink(handover.records, handover.ack) is not False:
            return
        if replayed:
            self._kept.append(handover)
            return
        self.state.held_back += 1
        self._held.extend((n, True) for n in handover.seqs)
        oldest = self._unacked_oldest.pop(oldest_token, None)
        if oldest is not None and (self._held_oldest is None or oldest < self._held_oldest):
            self._held_oldest = oldest

    # -- state file ----------------------------------------------------------------------------------------------------
    def _load_state(self) -> dict[str, Any] | None:
        if self.state_file is None:
            return None
        try:
            d = json.loads(self.state_file.read_text())
            return d if isinstance(d, dict) and "subscription_id" in d else None
        except (OSError, ValueError):
            return None

    def _save_state(self, sub: BatchSubscription, server_start: str) -> None:
        self._saved = {
            "endpoint": self.cfg.endpoint, "server_start": server_start, "subscription_id": sub.subscription_id,
            "handles": {str(h): {"source": i.source, "station": i.station, "signal": i.signal, "unit": i.unit,
                                 "trace_key": i.trace_key, "tags": list(i.tags),
                                 "trace_stations": list(i.trace_stations), "offsets_m": [list(o) for o in i.offsets_m],
                                 "integrate_speed": i.integrate_speed,
                                 "valid_range": list(i.valid_range) if i.valid_range else None,
                                 "scale": list(i.scale) if i.scale else None}
                             for h, i in self._handles.items()},
            "event_handle": adapter.event_item_handle(sub),
            "context": self.context.snapshot(self._owner),
        }
        self._write_state()

    def _write_state(self) -> None:
        """Save the subscription, the trace context and the durable marks; then the acknowledgements of the samples
        that this context tagged may go to the server."""
        key = (self.context.version, self._durable_version)
        saved = self._state_to_save()
        if saved is not None and self._dump_state(saved):
            self._written = key
        self._release_acks(key[0])  # saved or not: holding them back would only grow the server's queue

    async def _write_state_async(self) -> None:
        """``_write_state`` with the JSON encoding and the file write in a thread: a long history costs the event
        loop (and the live path) only the snapshot. Only when the context or the durable marks changed since the
        last write (issue 11: the file was rewritten every watchdog tick, also while nothing arrived): the file on
        disk covers the current context version then, so the acknowledgements waiting for it may go."""
        key = (self.context.version, self._durable_version)
        if key != self._written:
            saved = self._state_to_save()
            if saved is not None and await asyncio.to_thread(self._dump_state, saved):
                self._written = key
        self._release_acks(key[0])

    def _state_to_save(self) -> dict[str, Any] | None:
        if self.state_file is None or self._saved is None:
            return None
        self._saved = {**self._saved, "context": self.context.snapshot(self._owner), "durable": dict(self._durable)}
        return self._saved

    def _dump_state(self, saved: dict[str, Any]) -> bool:
        assert self.state_file is not None
        tmp = self.state_file.with_suffix(".tmp")
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps(saved)
            tmp.write_text(text)
            tmp.replace(self.state_file)
        except OSError as exc:
            log.warning("OPC UA: cannot save subscription state to %s: %s", self.state_file, exc)
            return False
        self.state.state_writes += 1
        self.state.state_bytes += len(text)
        return True

    def _release_acks(self, saved_version: int) -> None:
        self._saved_version = max(self._saved_version, saved_version)
        if self._acks_waiting:
            ready = [a for v, a in self._acks_waiting if v <= self._saved_version]
            self._acks_waiting = [(v, a) for v, a in self._acks_waiting if v > self._saved_version]
            self._acks.extend(ready)

    def _trim_context(self) -> None:
        """Cut the ID history before the oldest sample that can still arrive, less ``opcua.trace_history_s``."""
        held = [t for t in (self._pending_oldest, self._held_oldest, self.backfill.oldest_ns) if t is not None]
        horizon = min([*self._unacked_oldest.values(), *held], default=self._acked_oldest)
        if horizon is not None:
            self.context.trim(horizon - int(self.cfg.trace_history_s * 1e9), self.cfg.trace_history_max_entries,
                              self._owner)
        self._acked_oldest = None

    async def _watchdog(self, client: Client, sub: BatchSubscription) -> None:
        c = self.cfg
        state_node = client.get_node(adapter.node_id(ObjectIds.Server_ServerStatus_State))
        last_ok = time.monotonic()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), c.watchdog_interval_s)
            if self._stop.is_set():
                return
            self._trim_context()
            await self._write_state_async()
            if self.state_file is not None:
                with contextlib.suppress(Exception):
                    adapter.save_session_state(client)  # keeps the token "fresh" for asyncua's resume check
            try:
                server_state = await asyncio.wait_for(state_node.read_value(), c.request_timeout_s)
                if int(server_state) != int(ua.ServerState.Running):
                    raise OpcuaError(f"server state is {server_state}, not Running")
                last_ok = time.monotonic()
            except (TimeoutError, UaError, OSError, ConnectionError) as exc:
                raise OpcuaError(f"watchdog read of ServerStatus failed: {type(exc).__name__}: {exc}") from None
            last_pub = sub.last_publish_at or last_ok
            if not self.state.paused and time.monotonic() - last_pub > c.stale_after_s:
                raise OpcuaError(f"no publish response (data or keep-alive) for {c.stale_after_s} s: "
                                 "subscription is dead")

    # -- subscription --------------------------------------------------------------------------------------------------
    async def _prime_context(self, client: Client, infos: list[NodeInfo]) -> None:
        """Read the current IDs once, so samples of the first publish already carry them."""
        trace_infos = [i for i in infos if i.trace_key]
        if not trace_infos:
            return
        dvs = await client.uaclient.read_attributes([i.node_id for i in trace_infos], AttributeIds.Value)
        for info, dv in zip(trace_infos, dvs, strict=True):
            self._update_context(info, dv, time.time_ns(), initial=True)

    async def _monitor(self, sub: BatchSubscription, infos: list[NodeInfo],
                       per_call: int = 1000) -> dict[int, NodeInfo]:
        """One monitored item per node, ``per_call`` per CreateMonitoredItems (the server's
        MaxMonitoredItemsPerCall, else a safe default)."""
        c = self.cfg
        handles: dict[int, NodeInfo] = {}
        requests: list[ua.MonitoredItemCreateRequest] = []
        for info in infos:
            handle = adapter.next_client_handle(sub)
            rv = ua.ReadValueId()
            rv.NodeId = info.node_id
            rv.AttributeId = AttributeIds.Value
            mp = ua.MonitoringParameters()
            mp.ClientHandle = handle
            mp.SamplingInterval = info.sampling_interval_ms if info.sampling_interval_ms is not None \
                else c.sampling_interval_ms
            mp.QueueSize = c.queue_size if info.queue_size is None else info.queue_size
            mp.DiscardOldest = c.discard_oldest
            db = info.deadband or c.deadband
            wants = db.type == "absolute" or (db.type == "percent" and info.eu_range is not None)
            if wants and info.trace_key is None and info.unit:  # analog values only, never IDs
                f = ua.DataChangeFilter()
                f.Trigger = ua.DataChangeTrigger.StatusValueTimestamp
                f.DeadbandType = 1 if db.type == "absolute" else 2
                f.DeadbandValue = db.value
                mp.Filter = f
            req = ua.MonitoredItemCreateRequest()
            req.ItemToMonitor = rv
            req.MonitoringMode = ua.MonitoringMode.Reporting
            req.RequestedParameters = mp
            requests.append(req)
            handles[handle] = info
        # the server publishes the initial values one publishing interval after it created the items; with a short
        # interval (20 ms) and a busy event loop (the ingest process) that response can be handled before the create
        # call returns here: the handles must be known by then, or the initial values are dropped, and a node that
        # never changes afterwards never reaches the store (test_opcua_backfill's server restart: 62 values lost)
        self._handles = handles
        self._initial_due = set(handles)
        self._set_offsets()
        results: list[ua.MonitoredItemCreateResult] = []
        for i in range(0, len(requests), per_call):
            params = ua.CreateMonitoredItemsParameters()
            params.SubscriptionId = sub.subscription_id
            params.ItemsToCreate = requests[i:i + per_call]
            params.TimestampsToReturn = ua.TimestampsToReturn.Both
            results += await asyncio.wait_for(sub.server.create_monitored_items(params), c.request_timeout_s * 4)
        bad = [(req.ItemToMonitor.NodeId.to_string(), r.StatusCode.name) for req, r in zip(requests, results,
                                                                                              strict=True)
               if not r.StatusCode.is_good()]
        short: list[tuple[str, int, int]] = []
        for req, r in zip(requests, results, strict=True):
            if r.StatusCode.is_good():
                source, asked = req.ItemToMonitor.NodeId.to_string(), int(req.RequestedParameters.QueueSize)
                self.queue_sizes[source] = int(r.RevisedQueueSize)
                if int(r.RevisedQueueSize) < asked:
                    short.append((source, asked, int(r.RevisedQueueSize)))
        if short:
            log.warning("OPC UA: the server granted %d node(s) a smaller queue than asked (first: %s asked %d, got "
                        "%d): fewer values survive a cut or a pause", len(short), *short[0])
        if bad:
            log.error("OPC UA: %d node(s) could not be monitored (first: %s); they are left out", len(bad), bad[:3])
            bad_ids = {b[0] for b in bad}
            handles = {h: i for h, i in handles.items() if i.source not in bad_ids}
        return handles

    async def _subscribe_events(self, client: Client, sub: BatchSubscription, ns: int) -> None:
        c = self.cfg
        try:
            etype = await client.nodes.base_event_type.get_child(f"{ns}:TraceEventType")
        except UaError:
            log.info("OPC UA: server has no TraceEventType; trace events come from MQTT only")
            return
        root = await self._event_root(client, ns)
        from asyncua.common.events import get_filter_from_event_type

        evfilter = await get_filter_from_event_type([etype])
        self._event_fields = [".".join(q.Name for q in sel.BrowsePath) for sel in evfilter.SelectClauses]
        rv = ua.ReadValueId()
        rv.NodeId = root.nodeid
        rv.AttributeId = AttributeIds.EventNotifier
        mp = ua.MonitoringParameters()
        mp.ClientHandle = adapter.next_client_handle(sub)
        mp.QueueSize = 10_000
        mp.Filter = evfilter
        req = ua.MonitoredItemCreateRequest()
        req.ItemToMonitor = rv
        req.MonitoringMode = ua.MonitoringMode.Reporting
        req.RequestedParameters = mp
        params = ua.CreateMonitoredItemsParameters()
        params.SubscriptionId = sub.subscription_id
        params.ItemsToCreate = [req]
        params.TimestampsToReturn = ua.TimestampsToReturn.Both
        res = await asyncio.wait_for(sub.server.create_monitored_items(params), c.request_timeout_s)
        if res[0].StatusCode.is_good():
            adapter.register_event_item(sub, mp.ClientHandle, evfilter, root, res[0].MonitoredItemId)
        else:
            log.error("OPC UA: cannot subscribe to trace events: %s", res[0].StatusCode)

    async def _event_root(self, client: Client, ns: int) -> Node:
        """``opcua.event_root``, else the first element of the discovery path, else the Server object."""
        c = self.cfg
        if c.event_root:
            return client.get_node(await resolve_node_id(client, c.event_root, ns))
        first = [p for p in c.discovery.browse_path.split("/") if p][:1]
        if first:
            return client.get_node(await resolve_node_id(client, first[0], ns))
        return client.nodes.server

    def _set_offsets(self) -> None:
        for info in self._handles.values():
            for station, offset in info.offsets_m:
                self.context.set_offset(station, offset)

    # -- notifications -------------------------------------------------------------------------------------------------
    def _update_context(self, info: NodeInfo, dv: ua.DataValue, received_ns: int, initial: bool = False) -> None:
        assert info.trace_key is not None
        v = dv.Value.Value if dv.Value is not None else None
        if info.trace_key == "roll_position_m":
            val: TraceValue | None = float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
        else:
            val = v if isinstance(v, str) and v else None
        # an empty ID read at subscribe time (the priming read, or a subscription's initial value) is a variable the
        # line never wrote: asyncua stamps its creation value with the server's wall clock, and once a line clock
        # behind it passes that stamp, "no ID" would replace the real IDs written since. It says nothing about time:
        # it goes to the start of the history.
        t_ns = None if initial and val is None else id_time(dv, received_ns, self.cfg.timestamp)
        stations = info.trace_stations or (info.station,)
        if info.integrate_speed:
            val = self._integrate(info, stations, t_ns, val)
            if val is None:
                return
        newest = self._pending_newest
        if any((EARLIEST_NS if t_ns is None else t_ns) <= newest.get(st, EARLIEST_NS - 1) for st in stations):
            self._retag = True  # the server delivered this ID after samples of the same instant (rare)
        for st in stations:
            self.context.update(st, info.trace_key, t_ns, val, self._owner)

    def _integrate(self, info: NodeInfo, stations: Sequence[str], t_ns: int | None,
                   speed: TraceValue | None) -> float | None:
        """A web speed (m/min) -> the roll position (m): its integral since the stations' roll ID last changed (for
        lines without a position counter). The speed holds until its next value (what the server's sampling saw)."""
        if t_ns is None or not isinstance(speed, float):
            return None
        ids = self.context.at(stations[0], t_ns)
        roll = f'{ids.get("roll_id", "")}|{ids.get("source_roll_id", "")}'  # the roll made, or the roll unwound
        last = self._speed.get(info.source)
        if last is None or t_ns < last[0]:
            pos = 0.0
        else:
            pos = last[2] + last[1] * (t_ns - last[0]) / 60e9
            if roll != last[3]:
                pos = 0.0  # a new roll: the counter starts again (the ID changed within this interval)
        self._speed[info.source] = (t_ns, max(speed, 0.0), pos, roll)
        return pos

    def _on_batch(self, changes: list[tuple[int, ua.DataValue]], events: list[Any], status_change: bool,
                  seq: int | None) -> None:
        now = time.time_ns()
        self.state.last_keepalive_ns = now
        if status_change:
            log.warning("OPC UA: subscription status changed (server side); the watchdog will reconnect if needed")
        if not changes and not events:
            self._flush_pending()
            return
        self.state.last_data_ns = now
        handles = self._handles
        # pass 1: IDs first, so samples of the same instant see them
        initial_due = self._initial_due
        for handle, dv in changes:
            info = handles.get(handle)
            if info is not None and info.trace_key is not None:
                self._update_context(info, dv, now, handle in initial_due)
            if info is not None and handle in initial_due:
                self.backfill.first_value(info, dv, now)  # where the node's gap in the history ends
            initial_due.discard(handle)
        # pass 2: what the previous publish brought can go now; this publish's samples are held one cycle
        self._flush_pending()
        line = self.line
        out: list[Sample] = []
        durable, pending_durable = self._durable, self._pending_durable
        oldest = self._pending_oldest
        clock = self.cfg.timestamp
        for handle, dv in changes:
            info = handles.get(handle)
            if info is None:
                continue
            value, quality, is_array = plain_value(dv)
            t_ns, timed = sample_time(dv, now, clock)
            mark = f"{quality}|{value!r}"
            d = durable.get(info.source)
            if d is not None and t_ns == d[0] and mark == d[1]:
                # stored already: the initial value of a new subscription repeats the node's last delivered value,
                # which may be older than the history can tag. Only the exact repeat of the *last delivered* one:
                # "older than the newest" cannot be trusted (a creation value stamped with the server's clock may be
                # hours "newer" than everything the line publishes after it)
                continue
            pending_durable[info.source] = [t_ns, mark]  # delivery order: a monitored item's queue is FIFO
            if timed and (oldest is None or t_ns < oldest):
                oldest = t_ns
            got = checked_samples(info, line, t_ns, value, quality, is_array, now)
            if isinstance(got, Rejected):
                self._pending_events.append(got)  # physically impossible for this node: quarantined, not stored
                continue
            out.extend(got)
        self._pending_oldest = oldest
        first_time = self._replaying is not True  # a republished held-back message was counted and shown once
        if first_time:
            self.state.samples += len(out)
            self.state.events += len(events)
        tagged = self._tag(out)
        if self.live_sink is not None and tagged and first_time:
            try:
                self.live_sink(tagged)
            except Exception:  # the live path must never cost the store path its data
                log.exception("OPC UA live sink failed")
        newest = self._pending_newest
        for smp in tagged:
            if smp.time_ns > newest.get(smp.station, -1):
                newest[smp.station] = smp.time_ns
        self._pending.extend(tagged)
        if self._flush_timer is None:
            # the next publish response normally flushes; when the server has nothing more to say, this does
            self._flush_timer = asyncio.get_running_loop().call_later(2 * self.cfg.subscription_interval_ms / 1000,
                                                                      self._flush_pending)
        self._pending_events.extend(trace_event(self._event_fields, f, self.cfg.endpoint, now) for f in events)
        if seq is not None:
            self._pending_seqs.append(seq)
        self._pending_replayed = self._replaying is not None

    def _tag(self, samples: list[Sample]) -> list[Sample]:
        """The samples with the trace IDs current at their source timestamps, as far as the context knows now."""
        ctx = self.context
        out: list[Sample] = []
        cache: dict[tuple[str, int], dict[str, TraceValue]] = {}
        for s in samples:
            key = (s.station, s.time_ns)
            trace = cache.get(key)
            if trace is None:
                trace = ctx.at(s.station, s.time_ns)
                if s.station.startswith("Formation/"):
                    trace["channel"] = s.station.split("/", 1)[1]
                cache[key] = trace
            out.append(Sample(s.time_ns, s.line, s.station, s.signal, s.value, s.unit, s.quality, s.source, trace,
                              s.received_ns, s.tags))
        return out

    def _flush_pending(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if not self._pending and not self._pending_events and not self._pending_seqs:
            return
        pending, self._pending = self._pending, []
        events, self._pending_events = self._pending_events, []
        seqs, self._pending_seqs = self._pending_seqs, []
        # an ID that arrived since they were tagged may belong to their instant: tag them again (rare)
        out: list[Sample | TraceEvent | Rejected] = list(self._tag(pending) if self._retag else pending)
        self._retag = False
        self._pending_newest = {}
        out.extend(events)
        sub_id = self._sub_id
        marks, self._pending_durable = self._pending_durable, {}
        oldest, self._pending_oldest = self._pending_oldest, None
        version = self.context.version  # the context these samples were tagged with
        self._flushes += 1
        token = self._flushes
        if seqs and oldest is not None:
            self._unacked_oldest[token] = oldest

        def ack() -> None:  # runs once the pipeline has the records in its spool
            self._durable.update(marks)  # the pipeline acknowledges in the order it was handed the batches
            if marks:
                self._durable_version += 1
            done = self._unacked_oldest.pop(token, None)
            if done is not None and (self._acked_oldest is None or done < self._acked_oldest):
                self._acked_oldest = done
            if sub_id is not None:
                acks = [ua.SubscriptionAcknowledgement(SubscriptionId=sub_id, SequenceNumber=n) for n in seqs]
                if self.state_file is None or version <= self._saved_version:  # nothing to save first
                    self._acks.extend(acks)
                else:  # the context that tagged them is not saved yet: a crash now must find it (_write_state)
                    self._acks_waiting.extend((version, a) for a in acks)

        replayed, self._pending_replayed = self._pending_replayed, False
        self._hand_over(_Handover(out, ack if seqs else None, seqs), replayed, token)


def _ranges(seqs: list[int]) -> str:
    """``[3, 4, 5, 9]`` -> ``"3-5, 9"`` (a long outage can hold back hundreds of messages)."""
    out: list[str] = []
    for n in sorted(seqs):
        if out and n == int(out[-1].rsplit("-", 1)[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)


def _info_from_saved(d: dict[str, Any]) -> NodeInfo:
    rng = d.get("valid_range")
    return NodeInfo(ua.NodeId.from_string(d["source"]), d["source"], d["station"], d["signal"], d["unit"],
                    d.get("trace_key"), tuple((k, v) for k, v in d.get("tags", [])),
                    trace_stations=tuple(d.get("trace_stations", ())),
                    offsets_m=tuple((str(k), float(v)) for k, v in d.get("offsets_m", [])),
                    integrate_speed=bool(d.get("integrate_speed", False)),
                    valid_range=(rng[0], rng[1]) if rng else None,
                    scale=(float(d["scale"][0]), float(d["scale"][1])) if d.get("scale") else None)

