"""OPC UA connector (asyncua): browse-based discovery, one subscription, trace context, reconnect by itself.

What the field's tools get wrong and this module does not (peers.md):

- Telegraf loops on ``BadNodeIdUnknown`` after a server restart (#15074, #19186): here every (re)connection starts
  from a *new* ``Client``, resolves the namespace index from its URI and browses the address space again, so node
  ids are re-resolved, never reused.
- asyncua reconnects have hung (#1660): every call has a timeout, the session is probed by a watchdog (a read of
  ``Server_ServerStatus_State`` and the age of the last publish response, keep-alives included), and any failure
  tears the client down and starts over with bounded exponential backoff.
- asyncua's handler path spawns a task per value, its iterator path drops the oldest on overflow: here a
  ``Subscription`` subclass takes each ``PublishResult`` whole, in order, and hands it over as one batch.

Nothing lost across a crash of the twin or a network cut: notifications are acknowledged to the server only once
the pipeline has them in its durable spool (our own publish loop sends the acknowledgements), and the subscription
(id, monitored items, trace context, the server's start time) is saved to a state file. A new process or a new
session first *transfers* that subscription (OPC UA TransferSubscriptions, Part 4 5.13.7) and re-reads every
unacknowledged notification with Republish; only when the server no longer has it (server restarted: different
start time, or subscription expired) is a fresh subscription created. Values changed while no session existed at
all are lost only beyond the monitored items' queue (``opcua.queue_size`` per node) or the subscription lifetime.

Trace context: the stations' ID variables (``RollId``, ``RollPosition``, ``SlurryBatchId``, ``CellId`` ...) are kept
as a time-indexed history per station, and a sample gets the IDs that were current at its *source timestamp*. Samples
are held for one publish cycle (at most twice the publishing interval) before they go to the store, so an ID change
that the server delivers in the next publish response (same source instant) still reaches the samples it belongs to.

Clocks: the line's clock (SourceTimestamp) need not be the server's or ours (a line replayed or simulated with
``--start-time``, a PLC clock off by hours). The context is kept on the line's clock only:

- an ID value without a SourceTimestamp (an initial value on subscribe, a server that does not stamp a node) is
  placed at the start of its key's history (valid until the key's first timestamped value; a later untimed value
  replaces it), never at the ServerTimestamp or the receive time, which would put it hours ahead of or behind the
  samples it tags. A sample without a SourceTimestamp is stored at its ServerTimestamp (else the receive time) and
  tagged with the IDs current at that time, as ``opcua.timestamp: source`` documents;
- the history is trimmed relative to the oldest sample that can still arrive (the oldest one not yet acknowledged to
  the server, minus ``opcua.trace_history_s``), not relative to the newest ID, which may carry another clock's time
  (asyncua stamps a variable's creation value with the server's wall clock);
- the whole history is saved with the subscription state, and an acknowledgement is sent only once the history that
  tagged its samples is saved: a restarted process that re-reads unacknowledged messages tags them as before;
- per node, the newest sample the pipeline has made durable is remembered (and saved): its re-delivery as the
  initial value of a new subscription (same time, value and quality), which may be older than the history, is
  dropped, so an instant is never stored a second time with other tags; republished messages are within the history
  and tagged as before. Both are reset when the server's start time changes (a new server run may have a new clock).

Two paths, so that control never waits for that bookkeeping: with a ``live_sink`` every sample is also handed over the
moment its publish response arrives, tagged with the IDs known then (the live state and the recommender need values,
not the last word on a roll ID); the held, finally tagged copy goes to ``sink`` (spool, InfluxDB, acknowledgements).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncua import Client, Node, ua
from asyncua.client.ua_session import SessionState
from asyncua.common.subscription import Subscription, SubscriptionItemData
from asyncua.ua.uaerrors import BadNoSubscription, BadTimeout, UaStructParsingError

from connectors.records import RecordError, Rejected, Sample, TraceEvent, TraceValue
from connectors.settings import DeadbandConfig, OpcuaConfig
from connectors.setpoints import SetpointResult, read_grant, write_setpoint
from connectors.units import ucum_from_eu_information

log = logging.getLogger(__name__)

Ack = Callable[[], None]
Sink = Callable[[Sequence[Sample | TraceEvent | Rejected], Ack | None], None]
LiveSink = Callable[[Sequence[Sample]], None]

ANALOG_ITEM_TYPES = {ua.NodeId(2368, 0), ua.NodeId(17497, 0), ua.NodeId(17570, 0)}  # AnalogItem, AnalogUnit(Range)
ROOT_NAME = "PilotLine"

#: ID variables -> trace keys. ``RollPosition`` is also stored as a sample of its own.
TRACE_VARIABLES: dict[str, str] = {
    "BatchId": "slurry_batch_id", "SlurryBatchId": "slurry_batch_id", "RollId": "roll_id",
    "SourceRollId": "source_roll_id", "RollPosition": "roll_position_m", "CellId": "cell_id",
    "StackId": "stack_id", "FormationRunId": "formation_run_id", "SegmentId": "segment_id",
}


class OpcuaError(Exception):
    """A connector-level failure with advice; the supervisor logs it and reconnects."""


# ---------------------------------------------------------------------------------------------------------------
# trace context
# ---------------------------------------------------------------------------------------------------------------

#: Where an ID value without a SourceTimestamp goes in its history: before every timestamped entry, i.e. "valid from
#: the start until the key's first timestamped value". Never at the server's or our receive clock, which can be hours
#: away from the line's clock that stamps the samples (see ``OpcuaConnector._id_time``).
EARLIEST_NS = -(2**63)


@dataclass
class _History:
    """One trace key of one station: its values in source-time order (any arrival order)."""

    times: list[int] = field(default_factory=list)
    values: list[TraceValue | None] = field(default_factory=list)

    def set(self, t_ns: int, value: TraceValue | None) -> bool:
        """Record ``value`` from ``t_ns`` on; a second value at the same instant replaces the first.
        Returns whether anything changed."""
        i = bisect.bisect_right(self.times, t_ns)
        if i > 0 and self.times[i - 1] == t_ns:
            if self.values[i - 1] == value:
                return False
            self.values[i - 1] = value
            return True
        self.times.insert(i, t_ns)
        self.values.insert(i, value)
        return True

    def at(self, t_ns: int) -> TraceValue | None:
        i = bisect.bisect_right(self.times, t_ns)
        return self.values[i - 1] if i else None

    def trim(self, keep_from_ns: int, max_entries: int) -> None:
        """Forget what no lookup at or after ``keep_from_ns`` needs: entries before the one current at that time.
        ``max_entries`` bounds the history whatever the times say (the oldest go first)."""
        cut = max(bisect.bisect_right(self.times, keep_from_ns) - 1, len(self.times) - max_entries, 0)
        if cut:
            del self.times[:cut]
            del self.values[:cut]


class TraceContext:
    """Per station, per trace key: which value was current when (by the line's clock, the samples' source time).

    A lookup at ``t`` returns, per key, the newest value at or before ``t``. ``snapshot`` keeps the whole history
    (not only the newest entry: a restarted process re-reads samples from before its crash and must tag them with
    the IDs of *their* time), and ``trim`` cuts it relative to the oldest sample that can still arrive, never
    relative to the newest ID (which may carry another clock's time).
    """

    def __init__(self) -> None:
        self._h: dict[str, dict[str, _History]] = {}
        self.version = 0  # bumped by every change: what a saved snapshot covers

    def update(self, station: str, key: str, t_ns: int | None, value: TraceValue | None) -> None:
        """``t_ns`` None: the value has no source time; it is valid from the start of the history (EARLIEST_NS)."""
        if self._h.setdefault(station, {}).setdefault(key, _History()).set(
                EARLIEST_NS if t_ns is None else t_ns, value):
            self.version += 1

    def at(self, station: str, t_ns: int) -> dict[str, TraceValue]:
        out: dict[str, TraceValue] = {}
        for key, h in self._h.get(station, {}).items():
            v = h.at(t_ns)
            if v is not None and v != "":
                out[key] = v
        return out

    def clear(self) -> None:
        self._h.clear()
        self.version += 1

    def trim(self, keep_from_ns: int, max_entries: int = 100_000) -> None:
        """Lookups at ``keep_from_ns`` or later answer as before; older ones may not."""
        for keys in self._h.values():
            for h in keys.values():
                h.trim(keep_from_ns, max_entries)

    def snapshot(self) -> dict[str, dict[str, list[list[Any]]]]:
        """Every entry of every station and key, as JSON-ready ``[[t_ns, value], ...]`` lists."""
        return {st: {k: [[t, v] for t, v in zip(h.times, h.values, strict=True)] for k, h in keys.items() if h.times}
                for st, keys in self._h.items()}

    def restore(self, snap: dict[str, dict[str, list[Any]]]) -> None:
        """Load a ``snapshot``; also the older format that kept one ``[t_ns, value]`` per key."""
        for st, keys in snap.items():
            for k, entries in keys.items():
                pairs = entries if entries and isinstance(entries[0], list) else [entries]
                for t, v in pairs:
                    self.update(st, k, int(t), v)


# ---------------------------------------------------------------------------------------------------------------
# node catalogue
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeInfo:
    node_id: ua.NodeId
    source: str  # "ns=2;s=PilotLine.Coating.Cathode.PumpFlowRate"
    station: str  # "Coating/Cathode"
    signal: str  # "PumpFlowRate"
    unit: str
    trace_key: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    sampling_interval_ms: float | None = None
    deadband: DeadbandConfig | None = None
    eu_range: tuple[float, float] | None = None


def station_and_signal(path: Sequence[str]) -> tuple[str, str]:
    """Browse names below PilotLine -> (station, signal): ``Coating/Cathode/PumpFlowRate`` -> (Coating/Cathode, ...).

    Deeper items (``Drying/Cathode/MassLoadingProfile/P003``) keep the extra levels in the signal name with dots.
    """
    if len(path) == 1:
        return "Line", path[0]
    if len(path) == 2:
        return path[0], path[1]
    return f"{path[0]}/{path[1]}", ".".join(path[2:])


def quality_of(status: ua.StatusCode | None) -> str:
    code = 0 if status is None else int(status.value)
    sev = code >> 30
    return "good" if sev == 0 else "uncertain" if sev == 1 else "bad"


# ---------------------------------------------------------------------------------------------------------------
# subscription taking whole publish responses
# ---------------------------------------------------------------------------------------------------------------


class _NullHandler:
    def datachange_notification(self, node: Node, val: Any, data: Any) -> None:  # pragma: no cover - never called
        pass


class _BatchSubscription(Subscription):
    def __init__(self, session: Any, params: ua.CreateSubscriptionParameters,
                 on_batch: Callable[[list[tuple[int, ua.DataValue]], list[Any], bool, int | None], None]) -> None:
        super().__init__(session, params, _NullHandler())
        self._on_batch = on_batch

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        self.last_publish_at = time.monotonic()
        self.process_message(publish_result.NotificationMessage)

    def process_message(self, message: ua.NotificationMessage) -> None:
        data = message.NotificationData
        seq = int(message.SequenceNumber) if data else None
        changes: list[tuple[int, ua.DataValue]] = []
        events: list[Any] = []
        status_change = False
        for notif in data or ():
            if isinstance(notif, ua.DataChangeNotification):
                changes.extend((item.ClientHandle, item.Value) for item in notif.MonitoredItems)
            elif isinstance(notif, ua.EventNotificationList):
                for ev in notif.Events:
                    item = self._monitored_items.get(ev.ClientHandle)
                    if item is not None and isinstance(item.mfilter, ua.EventFilter):
                        events.append(ev.EventFields)
            elif isinstance(notif, ua.StatusChangeNotification):
                status_change = True
        self._on_batch(changes, events, status_change, seq)


# ---------------------------------------------------------------------------------------------------------------
# the connector
# ---------------------------------------------------------------------------------------------------------------


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


class OpcuaConnector:
    def __init__(self, cfg: OpcuaConfig, line: str, sink: Sink, state_file: Path | None = None,
                 live_sink: LiveSink | None = None) -> None:
        self.cfg = cfg
        self.line = line
        self.sink = sink
        self.live_sink = live_sink
        self.state_file = state_file
        self._acks: list[ua.SubscriptionAcknowledgement] = []
        self._pending_seqs: list[int] = []
        self._pending_events: list[Sample | TraceEvent | Rejected] = []
        self._sub_id: int | None = None
        self._saved: dict[str, Any] | None = self._load_state()
        self._session_file = state_file.with_name(state_file.stem + "-session.json") if state_file else None
        self.state = OpcuaState()
        self.context = TraceContext()
        # acknowledgements wait until the context that tagged their samples is saved: (context version, ack)
        self._acks_waiting: list[tuple[int, ua.SubscriptionAcknowledgement]] = []
        self._saved_version = -1
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
        self._event_fields: list[str] = []
        self._pending: list[Sample] = []
        # newest source time of the held samples per station: an ID update at or before it makes their tags stale
        self._pending_newest: dict[str, int] = {}
        self._retag = False
        self._flush_timer: asyncio.TimerHandle | None = None
        self._connected_evt = asyncio.Event()
        if self._saved:
            self._ctx_server = self._saved.get("server_start")
            if self._saved.get("context"):
                self.context.restore(self._saved["context"])
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

    async def write_setpoint(self, node: str, value: float) -> SetpointResult:
        """Through this connector's session: EURange and grant checked, written once, the server's status back."""
        client, ns = self._client, self.state.namespace_index
        if client is None or ns is None or not self.state.connected:
            return SetpointResult(False, "NotSent", f"not connected to {self.cfg.endpoint}", node, value, False)
        return await write_setpoint(client, ns, node, value, timeout_s=self.cfg.request_timeout_s)

    async def read_grant(self) -> bool:
        """The line's ``RemoteSetpointsEnabled``; False when not connected or unreadable."""
        client, ns = self._client, self.state.namespace_index
        if client is None or ns is None or not self.state.connected:
            return False
        try:
            return await read_grant(client, ns, timeout_s=self.cfg.request_timeout_s)
        except (TimeoutError, OSError, ConnectionError, ua.UaError):
            return False

    def status(self) -> dict[str, Any]:
        s = self.state
        return {
            "state": s.state, "connected": s.connected, "endpoint": self.cfg.endpoint, "reconnects": s.reconnects,
            "connects": s.connects, "last_data_ns": s.last_data_ns, "last_keepalive_ns": s.last_keepalive_ns,
            "last_error": s.last_error, "nodes": s.nodes, "resumed": s.resumed, "samples": s.samples, "events": s.events,
        }

    # -- supervision ---------------------------------------------------------------------------------------------------
    async def _supervise(self) -> None:
        delay = self.cfg.reconnect_initial_s
        while not self._stop.is_set():
            self.state.state = "connecting"
            try:
                await self._session()
                delay = self.cfg.reconnect_initial_s
            except asyncio.CancelledError:
                await self._teardown()
                raise
            except Exception as exc:  # noqa: BLE001 - every failure means: tear down, back off, reconnect
                msg = f"{type(exc).__name__}: {exc}"
                if msg != self.state.last_error:
                    log.warning("OPC UA %s: %s; reconnecting in %.1f s", self.cfg.endpoint, msg, delay)
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
                delay = self.cfg.reconnect_initial_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(delay * 2, self.cfg.reconnect_max_s)

    async def _teardown(self) -> None:
        """Drop the connection but not the server-side session: its subscription can then be transferred."""
        client, self._client = self._client, None
        self._handles = {}
        if client is None:
            return
        with contextlib.suppress(Exception):
            client.uaclient.request_disconnect()
            for name in ("_stale_watchdog_task", "_supervisor_task", "_renew_channel_task"):
                await client._cancel_task(getattr(client, name, None))
            await client._cancel_task(getattr(client.uaclient.session, "_publish_task", None))
            await asyncio.wait_for(client.close_secure_channel(), 1.0)
        with contextlib.suppress(Exception):
            client.disconnect_socket()

    async def _make_client(self) -> Client:
        c = self.cfg
        client = Client(c.endpoint, timeout=c.request_timeout_s, watchdog_intervall=max(c.watchdog_interval_s, 1.0))
        client.session_timeout = int(c.session_timeout_s * 1000)
        client.application_uri = "urn:pilotline:twin:ingest"
        client.name = "pilotline-twin-ingest"
        if self.state_file is not None:
            client.session_state_path = self._session_file
        if c.auth_method == "username":
            client.set_user(c.username)
            client.set_password(c.password)
        if c.security_policy != "None":
            await ensure_client_certificate(c.certificate, c.private_key, client.application_uri)
            from asyncua.crypto import security_policies as sp

            policy = getattr(sp, f"SecurityPolicy{c.security_policy}")
            mode = getattr(ua.MessageSecurityMode, c.security_mode)
            server_cert = str(c.trusted_server_certificates[0]) if c.trusted_server_certificates else None
            if c.trusted_server_certificates:
                from asyncua.crypto.truststore import TrustStore
                from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

                store = TrustStore([Path(p) for p in c.trusted_server_certificates], [])
                await store.load()
                client.certificate_validator = CertificateValidator(
                    CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_SERVER, store)
            await asyncio.wait_for(
                client.set_security(policy, str(c.certificate), str(c.private_key), server_certificate=server_cert,
                                    mode=mode), c.connect_timeout_s)
        return client

    async def _session(self) -> None:
        c = self.cfg
        client = await self._make_client()
        self._client = client
        saved_token = self._persisted_token()
        await asyncio.wait_for(client.connect(), c.connect_timeout_s)
        session = client.uaclient.session
        resumed = saved_token is not None and session.authentication_token.to_string() == saved_token
        session._publish_loop = lambda: self._publish_loop(session)  # acks only what is durable (see module doc)
        ns = await asyncio.wait_for(client.get_namespace_index(c.namespace_uri), c.request_timeout_s)
        self.state.namespace_index = ns
        start_time = await asyncio.wait_for(
            client.get_node(ua.NodeId(ua.ObjectIds.Server_ServerStatus_StartTime)).read_value(), c.request_timeout_s)
        server_start = str(start_time)
        if server_start != self._ctx_server:
            # a new server run may have a new clock: IDs and durable marks of the old one must not apply to it
            self.context.clear()
            self._durable.clear()
            self._ctx_server = server_start
        sub = await self._try_transfer(client, server_start) if resumed else None
        if sub is None:
            sub = await self._new_subscription(client, ns, server_start)
        self._sub_id = sub.subscription_id
        self.state.nodes = len(self._handles)
        self.state.connected = True
        self.state.state = "connected"
        self.state.connects += 1
        if self.state.connects > 1:
            self.state.reconnects += 1
        self.state.last_error = ""
        self._connected_evt.set()
        await self._watchdog(client, sub)

    async def _new_subscription(self, client: Client, ns: int, server_start: str) -> _BatchSubscription:
        c = self.cfg
        infos = await asyncio.wait_for(self._catalogue(client, ns), max(30.0, c.request_timeout_s * 6))
        if not infos:
            raise OpcuaError(f"no variables found under {c.discovery.browse_path!r} in namespace {c.namespace_uri}; "
                             "check opcua.discovery.browse_path / opcua.nodes")
        # the same server run keeps its context: a new subscription's initial values are samples from the past
        await self._prime_context(client, infos)
        interval = c.subscription_interval_ms
        keepalive = max(3, int(1000 / interval))
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=interval,
            RequestedLifetimeCount=max(3 * keepalive, int(3 * c.session_timeout_s * 1000 / interval)),
            RequestedMaxKeepAliveCount=keepalive, MaxNotificationsPerPublish=0, PublishingEnabled=True, Priority=0,
        )
        sub = _BatchSubscription(client.uaclient.session, params, self._on_batch)
        await asyncio.wait_for(sub.init(), c.request_timeout_s)
        self._acks.clear()  # of a subscription that is gone: nothing will be republished from it
        self._acks_waiting.clear()
        self._unacked_oldest.clear()
        self._handles = await self._monitor(sub, infos)
        if c.trace_events:
            await self._subscribe_events(client, sub, ns)
        self._save_state(sub, server_start)
        log.info("OPC UA %s: new subscription %s on %d nodes (namespace %s = %d)", c.endpoint, sub.subscription_id,
                 len(self._handles), c.namespace_uri, ns)
        return sub

    async def _try_transfer(self, client: Client, server_start: str) -> _BatchSubscription | None:
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
        except (TimeoutError, ua.UaError) as exc:
            log.info("OPC UA: subscription %s cannot be transferred (%s); creating a new one", sub_id, exc)
            return None
        if not results or not results[0].StatusCode.is_good():
            log.info("OPC UA: subscription %s is gone (%s); creating a new one", sub_id,
                     results[0].StatusCode.name if results else "no result")
            return None
        handles = {int(h): NodeInfo(ua.NodeId.from_string(d["source"]), d["source"], d["station"], d["signal"],
                                    d["unit"], d.get("trace_key"), tuple((k, v) for k, v in d.get("tags", [])))
                   for h, d in saved["handles"].items()}
        self._handles = handles
        sub = _BatchSubscription(session, ua.CreateSubscriptionParameters(), self._on_batch)
        sub.subscription_id = sub_id
        if saved.get("event_handle") is not None:
            from asyncua.common.events import get_filter_from_event_type

            with contextlib.suppress(Exception):
                ns = self.state.namespace_index
                etype = await client.nodes.base_event_type.get_child(f"{ns}:TraceEventType")
                evfilter = await get_filter_from_event_type([etype])
                self._event_fields = [".".join(q.Name for q in sel.BrowsePath) for sel in evfilter.SelectClauses]
                data = SubscriptionItemData()
                data.client_handle = int(saved["event_handle"])
                data.mfilter = evfilter
                sub._monitored_items[data.client_handle] = data
        self._unacked_oldest.clear()  # what was handed over before is tagged already; republished copies count anew
        backlog = sorted(int(n) for n in (results[0].AvailableSequenceNumbers or []))
        for seq in backlog:  # received by the dead session but never acknowledged: maybe never spooled
            msg = await asyncio.wait_for(session.republish(sub_id, seq), c.request_timeout_s)
            if msg.NotificationData:
                sub.process_message(msg)
        session._subscription_callbacks[sub_id] = sub.publish_callback
        session.ensure_publish_loop()
        self.state.resumed += 1
        log.info("OPC UA %s: took over subscription %s (%d nodes, %d unacknowledged messages republished)",
                 c.endpoint, sub_id, len(handles), len(backlog))
        return sub

    async def _publish_loop(self, session: Any) -> None:
        """asyncua's loop acknowledges a message as soon as the callback returns; ours sends only durable acks."""
        while session._state not in (SessionState.CLOSING, SessionState.CLOSED):
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
            callback = session._subscription_callbacks.get(sub_id)
            if callback is not None:
                try:
                    await callback(response.Parameters)
                except Exception:  # noqa: BLE001
                    log.exception("OPC UA notification handling failed")

    def _persisted_token(self) -> str | None:
        if self._session_file is None:
            return None
        try:
            return str(json.loads(self._session_file.read_text())["authentication_token"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _load_state(self) -> dict[str, Any] | None:
        if self.state_file is None:
            return None
        try:
            d = json.loads(self.state_file.read_text())
            return d if isinstance(d, dict) and "subscription_id" in d else None
        except (OSError, ValueError):
            return None

    def _save_state(self, sub: _BatchSubscription, server_start: str) -> None:
        self._saved = {
            "endpoint": self.cfg.endpoint, "server_start": server_start, "subscription_id": sub.subscription_id,
            "handles": {str(h): {"source": i.source, "station": i.station, "signal": i.signal, "unit": i.unit,
                                 "trace_key": i.trace_key, "tags": list(i.tags)} for h, i in self._handles.items()},
            "event_handle": next((h for h, d in sub._monitored_items.items()
                                  if isinstance(d.mfilter, ua.EventFilter)), None),
            "context": self.context.snapshot(),
        }
        self._write_state()

    def _write_state(self) -> None:
        """Save the subscription, the trace context and the durable marks; then the acknowledgements of the samples
        that this context tagged may go to the server."""
        saved = self._state_to_save()
        if saved is not None:
            self._dump_state(saved)
        self._release_acks(self.context.version)  # saved or not: holding them back would only grow the server's queue

    async def _write_state_async(self) -> None:
        """``_write_state`` with the JSON encoding and the file write in a thread: a long history costs the event
        loop (and the live path) only the snapshot."""
        version = self.context.version
        saved = self._state_to_save()
        if saved is not None:
            await asyncio.to_thread(self._dump_state, saved)
        self._release_acks(version)

    def _state_to_save(self) -> dict[str, Any] | None:
        if self.state_file is None or self._saved is None:
            return None
        self._saved = {**self._saved, "context": self.context.snapshot(), "durable": dict(self._durable)}
        return self._saved

    def _dump_state(self, saved: dict[str, Any]) -> None:
        assert self.state_file is not None
        tmp = self.state_file.with_suffix(".tmp")
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(saved))
            tmp.replace(self.state_file)
        except OSError as exc:
            log.warning("OPC UA: cannot save subscription state to %s: %s", self.state_file, exc)

    def _release_acks(self, saved_version: int) -> None:
        self._saved_version = max(self._saved_version, saved_version)
        if self._acks_waiting:
            ready = [a for v, a in self._acks_waiting if v <= self._saved_version]
            self._acks_waiting = [(v, a) for v, a in self._acks_waiting if v > self._saved_version]
            self._acks.extend(ready)

    def _trim_context(self) -> None:
        """Cut the ID history before the oldest sample that can still arrive, less ``opcua.trace_history_s``."""
        held = [] if self._pending_oldest is None else [self._pending_oldest]
        horizon = min([*self._unacked_oldest.values(), *held], default=self._acked_oldest)
        if horizon is not None:
            self.context.trim(horizon - int(self.cfg.trace_history_s * 1e9), self.cfg.trace_history_max_entries)
        self._acked_oldest = None

    async def _watchdog(self, client: Client, sub: _BatchSubscription) -> None:
        c = self.cfg
        state_node = client.get_node(ua.NodeId(ua.ObjectIds.Server_ServerStatus_State))
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
                    client._save_session_state()  # keeps the token "fresh" for asyncua's resume check
            try:
                server_state = await asyncio.wait_for(state_node.read_value(), c.request_timeout_s)
                if int(server_state) != int(ua.ServerState.Running):
                    raise OpcuaError(f"server state is {server_state}, not Running")
                last_ok = time.monotonic()
            except (TimeoutError, ua.UaError, OSError, ConnectionError) as exc:
                raise OpcuaError(f"watchdog read of ServerStatus failed: {type(exc).__name__}: {exc}") from None
            last_pub = sub.last_publish_at or last_ok
            if time.monotonic() - last_pub > c.stale_after_s:
                raise OpcuaError(f"no publish response (data or keep-alive) for {c.stale_after_s} s: "
                                 "subscription is dead")

    # -- discovery -----------------------------------------------------------------------------------------------------
    async def _catalogue(self, client: Client, ns: int) -> list[NodeInfo]:
        c = self.cfg
        infos: dict[str, NodeInfo] = {}
        if c.discovery.enabled:
            for info in await self._discover(client, ns):
                infos[info.source] = info
        for group_ns, group_tags, group_si, group_db, node in self._configured_nodes():
            info = await self._explicit_node(client, ns, group_ns, group_tags, group_si, group_db, node)
            infos[info.source] = info
        return list(infos.values())

    def _configured_nodes(self) -> list[tuple[str, dict[str, str], float | None, DeadbandConfig | None, Any]]:
        out: list[tuple[str, dict[str, str], float | None, DeadbandConfig | None, Any]] = []
        for n in self.cfg.nodes:
            out.append(("", {}, None, None, n))
        for g in self.cfg.groups:
            for n in g.nodes:
                out.append((g.namespace, g.default_tags, g.sampling_interval_ms, g.deadband, n))
        return out

    async def _explicit_node(self, client: Client, ns: int, group_ns: str, group_tags: dict[str, str],
                             group_si: float | None, group_db: DeadbandConfig | None, n: Any) -> NodeInfo:
        ns_text = n.namespace or group_ns
        if n.identifier.startswith("ns="):
            nid = ua.NodeId.from_string(n.identifier)
        else:
            idx = ns
            if ns_text:
                idx = int(ns_text) if ns_text.isdigit() else await client.get_namespace_index(ns_text)
            ident: Any = n.identifier
            if n.identifier_type == "i":
                ident = int(ident)
            nid = ua.NodeId(ident, idx)
        node = client.get_node(nid)
        unit = n.unit
        eu_range = None
        if not unit:
            unit, eu_range = await self._unit_and_range(client, node)
        path = str(nid.Identifier).split(".")
        station = n.station or (station_and_signal(path[1:-1] + [n.name])[0] if len(path) > 2 else "Line")
        tags = {**self.cfg.default_tags, **group_tags, **n.default_tags}
        return NodeInfo(nid, nid.to_string(), station, n.name, unit, None, tuple(sorted(tags.items())),
                        n.sampling_interval_ms or group_si, n.deadband or group_db, eu_range)

    async def _unit_and_range(self, client: Client, node: Node) -> tuple[str, tuple[float, float] | None]:
        unit = ""
        rng = None
        for child in await node.get_properties():
            name = (await child.read_browse_name()).Name
            if name == "EngineeringUnits":
                eu = await child.read_value()
                unit = ucum_from_eu_information(int(eu.UnitId), eu.DisplayName.Text or "")
            elif name == "EURange":
                r = await child.read_value()
                rng = (float(r.Low), float(r.High))
        return unit, rng

    async def _discover(self, client: Client, ns: int) -> list[NodeInfo]:
        """Every variable below the browse path (AnalogItems get their EngineeringUnits and EURange)."""
        c = self.cfg
        parts = [p for p in c.discovery.browse_path.split("/") if p]
        node = client.nodes.objects
        if parts:
            node = await node.get_child([f"{ns}:{p}" for p in parts])
        base = parts[1:] if parts and parts[0] == ROOT_NAME else parts
        found: list[tuple[list[str], ua.ReferenceDescription]] = []
        queue: list[tuple[Node, list[str]]] = [(node, base)]
        while queue:
            parent, path = queue.pop(0)
            refs = await parent.get_references(refs=ua.ObjectIds.HierarchicalReferences,
                                               direction=ua.BrowseDirection.Forward,
                                               nodeclassmask=ua.NodeClass.Object | ua.NodeClass.Variable)
            for ref in refs:
                if ref.ReferenceTypeId == ua.NodeId(ua.ObjectIds.HasProperty, 0):
                    continue  # EngineeringUnits, EURange ...: metadata, not signals
                name = ref.BrowseName.Name
                if ref.NodeClass == ua.NodeClass.Object:
                    queue.append((client.get_node(ref.NodeId), [*path, name]))
                elif ref.NodeClass == ua.NodeClass.Variable:
                    found.append(([*path, name], ref))
                    queue.append((client.get_node(ref.NodeId), [*path, name]))  # variables may have components
        analog = [(p, r) for p, r in found if r.TypeDefinition in ANALOG_ITEM_TYPES]
        units = await self._units_batch(client, [r.NodeId for _, r in analog])
        unit_of = {r.NodeId.to_string(): u for (_, r), u in zip(analog, units, strict=True)}
        infos: list[NodeInfo] = []
        tags = tuple(sorted(self.cfg.default_tags.items()))
        for path, ref in found:
            if not path:
                continue
            station, signal = station_and_signal(path)
            key = ref.NodeId.to_string()
            unit, rng = unit_of.get(key, ("", None))
            trace_key = TRACE_VARIABLES.get(path[-1]) if self.cfg.discovery.trace_variables else None
            infos.append(NodeInfo(ref.NodeId, key, station, signal, unit, trace_key, tags, None, None, rng))
        return infos

    async def _units_batch(self, client: Client, node_ids: list[ua.NodeId]) -> list[tuple[str, tuple[float, float] | None]]:
        """EngineeringUnits and EURange of many AnalogItems with two TranslateBrowsePaths + one Read."""
        if not node_ids:
            return []
        out: list[tuple[str, tuple[float, float] | None]] = []
        for chunk_start in range(0, len(node_ids), 500):
            chunk = node_ids[chunk_start:chunk_start + 500]
            targets: dict[str, list[ua.NodeId | None]] = {}
            for prop in ("EngineeringUnits", "EURange"):
                paths = []
                for nid in chunk:
                    bp = ua.BrowsePath()
                    bp.StartingNode = nid
                    el = ua.RelativePathElement()
                    el.ReferenceTypeId = ua.NodeId(ua.ObjectIds.HasProperty, 0)
                    el.IsInverse = False
                    el.IncludeSubtypes = True
                    el.TargetName = ua.QualifiedName(prop, 0)
                    rp = ua.RelativePath()
                    rp.Elements = [el]
                    bp.RelativePath = rp
                    paths.append(bp)
                results = await client.uaclient.translate_browsepaths_to_nodeids(paths)
                targets[prop] = [r.Targets[0].TargetId if r.StatusCode.is_good() and r.Targets else None
                                 for r in results]
            to_read = [t for prop in ("EngineeringUnits", "EURange") for t in targets[prop] if t is not None]
            values = await client.read_values([client.get_node(t) for t in to_read]) if to_read else []
            by_id = {t.to_string(): v for t, v in zip(to_read, values, strict=True)}
            for i in range(len(chunk)):
                eu_id, rng_id = targets["EngineeringUnits"][i], targets["EURange"][i]
                unit = ""
                if eu_id is not None:
                    eu = by_id.get(eu_id.to_string())
                    if eu is not None:
                        unit = ucum_from_eu_information(int(eu.UnitId), eu.DisplayName.Text or "")
                rng = None
                if rng_id is not None:
                    r = by_id.get(rng_id.to_string())
                    if r is not None:
                        rng = (float(r.Low), float(r.High))
                out.append((unit, rng))
        return out

    async def _prime_context(self, client: Client, infos: list[NodeInfo]) -> None:
        """Read the current IDs once, so samples of the first publish already carry them."""
        trace_infos = [i for i in infos if i.trace_key]
        if not trace_infos:
            return
        dvs = await client.uaclient.read_attributes([i.node_id for i in trace_infos], ua.AttributeIds.Value)
        for info, dv in zip(trace_infos, dvs, strict=True):
            self._update_context(info, dv, time.time_ns())

    async def _monitor(self, sub: _BatchSubscription, infos: list[NodeInfo]) -> dict[int, NodeInfo]:
        c = self.cfg
        handles: dict[int, NodeInfo] = {}
        requests: list[ua.MonitoredItemCreateRequest] = []
        for info in infos:
            sub._client_handle += 1
            handle = sub._client_handle
            rv = ua.ReadValueId()
            rv.NodeId = info.node_id
            rv.AttributeId = ua.AttributeIds.Value
            mp = ua.MonitoringParameters()
            mp.ClientHandle = handle
            mp.SamplingInterval = info.sampling_interval_ms if info.sampling_interval_ms is not None \
                else c.sampling_interval_ms
            mp.QueueSize = c.queue_size
            mp.DiscardOldest = c.discard_oldest
            db = info.deadband or c.deadband
            wants = db.type == "absolute" or (db.type == "percent" and info.eu_range is not None)
            if wants and info.trace_key is None and info.unit:  # analog values only, never IDs
                if True:
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
        results: list[ua.MonitoredItemCreateResult] = []
        for i in range(0, len(requests), 1000):
            params = ua.CreateMonitoredItemsParameters()
            params.SubscriptionId = sub.subscription_id
            params.ItemsToCreate = requests[i:i + 1000]
            params.TimestampsToReturn = ua.TimestampsToReturn.Both
            results += await asyncio.wait_for(sub.server.create_monitored_items(params), c.request_timeout_s * 4)
        bad = [(req.ItemToMonitor.NodeId.to_string(), r.StatusCode.name) for req, r in zip(requests, results,
                                                                                              strict=True)
               if not r.StatusCode.is_good()]
        if bad:
            log.error("OPC UA: %d node(s) could not be monitored (first: %s); they are left out", len(bad), bad[:3])
            bad_ids = {b[0] for b in bad}
            handles = {h: i for h, i in handles.items() if i.source not in bad_ids}
        return handles

    async def _subscribe_events(self, client: Client, sub: _BatchSubscription, ns: int) -> None:
        c = self.cfg
        try:
            etype = await client.nodes.base_event_type.get_child(f"{ns}:TraceEventType")
        except ua.UaError:
            log.info("OPC UA: server has no TraceEventType; trace events come from MQTT only")
            return
        root = await client.nodes.objects.get_child(f"{ns}:{ROOT_NAME}")
        from asyncua.common.events import get_filter_from_event_type

        evfilter = await get_filter_from_event_type([etype])
        self._event_fields = [".".join(q.Name for q in sel.BrowsePath) for sel in evfilter.SelectClauses]
        sub._client_handle += 1
        rv = ua.ReadValueId()
        rv.NodeId = root.nodeid
        rv.AttributeId = ua.AttributeIds.EventNotifier
        mp = ua.MonitoringParameters()
        mp.ClientHandle = sub._client_handle
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
            from asyncua.common.subscription import SubscriptionItemData

            data = SubscriptionItemData()
            data.client_handle = mp.ClientHandle
            data.node = root
            data.attribute = ua.AttributeIds.EventNotifier
            data.server_handle = res[0].MonitoredItemId
            data.mfilter = evfilter
            sub._monitored_items[mp.ClientHandle] = data
        else:
            log.error("OPC UA: cannot subscribe to trace events: %s", res[0].StatusCode)

    # -- notifications -------------------------------------------------------------------------------------------------
    def _timestamp(self, dv: ua.DataValue, received_ns: int) -> tuple[int, bool]:
        """A sample's time, and whether it is on the reference clock (``opcua.timestamp``) rather than a fallback.

        ``source``: the SourceTimestamp, else the ServerTimestamp, else the receive time (Telegraf's habit)."""
        src = self.cfg.timestamp
        ts = dv.SourceTimestamp if src == "source" else dv.ServerTimestamp if src == "server" else None
        if ts is not None:
            return _datetime_ns(ts), True
        if src == "source" and dv.ServerTimestamp is not None:
            return _datetime_ns(dv.ServerTimestamp), False
        return received_ns, src == "received"

    def _id_time(self, dv: ua.DataValue, received_ns: int) -> int | None:
        """Where an ID value goes in the context history; None = from its start (no time on the reference clock).

        Never a fallback clock: an ID stamped with the server's clock while the samples carry the line's would be
        current hours too early or too late (see the module docstring)."""
        t_ns, on_reference_clock = self._timestamp(dv, received_ns)
        return t_ns if on_reference_clock else None

    def _update_context(self, info: NodeInfo, dv: ua.DataValue, received_ns: int) -> None:
        assert info.trace_key is not None
        v = dv.Value.Value if dv.Value is not None else None
        if info.trace_key == "roll_position_m":
            val: TraceValue | None = float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
        else:
            val = v if isinstance(v, str) and v else None
        t_ns = self._id_time(dv, received_ns)
        if (EARLIEST_NS if t_ns is None else t_ns) <= self._pending_newest.get(info.station, EARLIEST_NS - 1):
            self._retag = True  # the server delivered this ID after samples of the same instant (rare)
        self.context.update(info.station, info.trace_key, t_ns, val)

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
        for handle, dv in changes:
            info = handles.get(handle)
            if info is not None and info.trace_key is not None:
                self._update_context(info, dv, now)
        # pass 2: what the previous publish brought can go now; this publish's samples are held one cycle
        self._flush_pending()
        line = self.line
        out: list[Sample] = []
        durable, pending_durable = self._durable, self._pending_durable
        oldest = self._pending_oldest
        for handle, dv in changes:
            info = handles.get(handle)
            if info is None:
                continue
            variant = dv.Value
            value = variant.Value if variant is not None else None
            quality = quality_of(dv.StatusCode)
            t_ns, timed = self._timestamp(dv, now)
            is_array = isinstance(value, list | tuple) and bool(value) and all(
                isinstance(x, float | int) and not isinstance(x, bool) for x in value)
            if not is_array:
                if value is None:
                    value = float("nan")
                    quality = "bad" if quality == "good" else quality
                elif isinstance(value, list | tuple | bytes | ua.LocalizedText | ua.NodeId):
                    value = str(value)
                elif not isinstance(value, float | int | bool | str):
                    value = str(value)
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
            if is_array:
                # an array item (e.g. a cross-web gauge track): element i is the series "<Signal>.P<iii>", the same
                # series a server publishing one scalar node per track would give
                tags = dict(info.tags)
                out.extend(Sample(t_ns, line, info.station, f"{info.signal}.P{i:03d}", x, info.unit,
                                  quality, info.source, {}, now, tags)  # type: ignore[arg-type]
                           for i, x in enumerate(value))  # type: ignore[arg-type]
                continue
            out.append(Sample(t_ns, line, info.station, info.signal, value, info.unit, quality,  # type: ignore[arg-type]
                              info.source, {}, now, dict(info.tags)))
        self._pending_oldest = oldest
        self.state.samples += len(out)
        self.state.events += len(events)
        tagged = self._tag(out)
        if self.live_sink is not None and tagged:
            try:
                self.live_sink(tagged)
            except Exception:  # noqa: BLE001 - the live path must never cost the store path its data
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
        self._pending_events.extend(self._trace_event(f, now) for f in events)
        if seq is not None:
            self._pending_seqs.append(seq)

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
            done = self._unacked_oldest.pop(token, None)
            if done is not None and (self._acked_oldest is None or done < self._acked_oldest):
                self._acked_oldest = done
            if sub_id is not None:
                acks = [ua.SubscriptionAcknowledgement(SubscriptionId=sub_id, SequenceNumber=n) for n in seqs]
                if self.state_file is None or version <= self._saved_version:  # nothing to save first
                    self._acks.extend(acks)
                else:  # the context that tagged them is not saved yet: a crash now must find it (_write_state)
                    self._acks_waiting.extend((version, a) for a in acks)

        self.sink(out, ack if seqs else None)

    def _trace_event(self, fields: list[ua.Variant], now: int) -> TraceEvent | Rejected:
        values = {name: (f.Value if isinstance(f, ua.Variant) else f) for name, f in zip(self._event_fields, fields,
                                                                                         strict=False)}
        raw = values.get("Payload")
        if not isinstance(raw, str):
            return Rejected("schema", "TraceEventType event without a string Payload", self.cfg.endpoint,
                            json.dumps({k: str(v) for k, v in values.items()}), now)
        try:
            return TraceEvent.from_json(json.loads(raw))
        except (json.JSONDecodeError, RecordError) as exc:
            return Rejected("schema", f"trace event payload: {exc}", self.cfg.endpoint, raw, now)


def _datetime_ns(ts: Any) -> int:
    """asyncua gives naive-UTC or aware datetimes; integer ns without float rounding."""
    if ts.tzinfo is None:
        from datetime import UTC

        ts = ts.replace(tzinfo=UTC)
    return int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1000


async def ensure_client_certificate(cert: Path, key: Path, app_uri: str) -> None:
    """Create a self-signed client certificate and key when absent (Telegraf's habit), keep them otherwise."""
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    cert.parent.mkdir(parents=True, exist_ok=True)
    key.parent.mkdir(parents=True, exist_ok=True)
    await setup_self_signed_certificate(
        key, cert, app_uri, socket.gethostname(), [ExtendedKeyUsageOID.CLIENT_AUTH],
        {"countryName": "DE", "organizationName": "pilotline", "commonName": "pilotline-twin-ingest"},
    )
