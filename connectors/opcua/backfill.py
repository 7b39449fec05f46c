"""History backfill: after a *new* subscription, read what the server historised while no subscription of ours
existed (OPC UA HistoryRead, ReadRawModifiedDetails, Part 11 6.5.3), so a server restart or an expired subscription
loses nothing the server kept.

A transferred subscription loses nothing (the server queued it); a new one starts at each node's current value.
Between a node's newest stored sample (the connector's durable mark, ``[t_ns, "quality|value"]`` per node source,
kept in the state file) and the new subscription's first value of that node lies the gap. For every monitored node
whose server node offers history (AccessLevel HistoryRead bit, or the Historizing attribute) the gap is read raw:

- **exclusive at both ends**: values at or before the mark are stored already, the first value of the new
  subscription (its initial value) and everything after it come through the subscription. A node whose first value
  did not arrive in time (or has no source time) is read to the end of its history;
- **trace-ID nodes first**, fed into the connector's trace context at their source times (from the ID node's own
  mark *inclusive*: the ID current when the gap began tags its first samples; after a server restart the context
  was cleared), so that the measurements read next are tagged with the IDs current at *their* source times; the
  context is not trimmed below the oldest gap while a backfill runs (``oldest_ns``). An *empty* ID in the history
  is stored but not replayed into the context: every server run historises its variables' creation values, stamped
  with its own clock, not the line's (the live path treats an empty initial value the same way), so a real "no
  roll" period in a gap keeps the previous ID;
- **batched by the server's operation limits**: at most ``MaxNodesPerHistoryReadData`` nodes per request (default
  ``DEFAULT_NODES_PER_READ`` when the server names none) and ``VALUES_PER_READ`` values per node, so that a response
  carries at most ``VALUES_PER_REQUEST`` values (a busy server encodes it within the request timeout); continuation
  points followed (and released when a node reached ``opcua.history_backfill_max_values``). A server that stops at
  NumValuesPerNode without a continuation point (asyncua's) is asked again from the last time read. A failed request
  is retried from where it stopped (``RETRIES`` per session, with backoff);
- **the same sink as live samples** (validation, spool, InfluxDB), never the live sink: they are history. The sink's
  backpressure is honoured (a refused batch is offered again once it has room). Acknowledged batches move a node's
  durable mark forward only (never behind what the subscription stored since). Counted in ``backfilled``.

A gap left unfinished by a cut (or by the retries running out) is kept in memory and read on the next session,
transferred or not; a crash of the process in the middle of a backfill loses what was not read yet (the marks moved
on with the subscription).
Web-speed trace nodes (``integrate_speed``) are not replayed into the context: their integral is the live path's
running state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.uaerrors import UaError

from connectors.backoff import Backoff
from connectors.opcua import asyncua_adapter as adapter
from connectors.opcua.browse import NodeInfo
from connectors.opcua.trace import sample_time
from connectors.opcua.values import checked_samples, plain_value
from connectors.records import Rejected, Sample

if TYPE_CHECKING:
    from connectors.opcua.connector import OpcuaConnector

log = logging.getLogger("connectors.opcua.backfill")

DEFAULT_NODES_PER_READ = 100  # nodes per HistoryRead when the server names no MaxNodesPerHistoryReadData
VALUES_PER_READ = 500  # NumValuesPerNode
VALUES_PER_REQUEST = 2_000  # nodes per request x VALUES_PER_READ: short work for the server, whose other requests
# (our watchdog's, asyncua's own keep-alive read) wait behind it: asyncua drops the connection when one times out
RETRIES = 5  # failed HistoryRead requests are retried this often per session, from where they stopped
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 5.0
GROUP_WINDOW_NS = 1_000_000_000  # nodes whose gaps start within this of each other share a request
FIRST_VALUES_WAIT_S = 10.0  # how long the new subscription's initial values are awaited (they bound the gaps)
ATTRIBUTE_CHUNK = 1000  # nodes per Read of AccessLevel / Historizing


@dataclass
class Gap:
    """One node's values to read: source times ``(after_ns, before_ns)``; ``before_ns`` None = to the end."""

    info: NodeInfo
    after_ns: int
    after_mark: str
    before_ns: int | None = None
    read: int = 0  # values handed over so far (bounded by opcua.history_backfill_max_values)
    done: bool = False
    with_start: bool = False  # an ID node: its value at after_ns goes into the context too (not stored again)
    store: bool = True  # False: an ID node read into the context only (``prime``)

    @property
    def key(self) -> str:
        return self.info.source


class Backfill:
    """The connector's history backfill: ``keep_marks`` at every session start, ``new_subscription`` once a new
    subscription exists, ``first_value`` for each initial value, ``start`` / ``stop`` with the session."""

    def __init__(self, conn: OpcuaConnector) -> None:
        self.conn = conn
        self._marks: dict[str, list[Any]] = {}  # the durable marks before this session's subscription existed
        self._first: dict[str, int | None] = {}  # per node source: the new subscription's first value's time
        self._due: bool = False  # a new subscription exists whose gaps are not computed yet
        self._left: list[Gap] = []  # gaps of an earlier session a cut interrupted
        self._task: asyncio.Task[None] | None = None
        self.oldest_ns: int | None = None  # the oldest gap start while a backfill runs: the context keeps it
        self.runs = 0

    # -- hooks the connector calls ---------------------------------------------------------------------------------
    def keep_marks(self, durable: dict[str, list[Any]]) -> None:
        """The newest stored sample per node before the subscription of this session exists (or is cleared with a
        server restart): where each gap begins. Kept as they were while an earlier new subscription's gaps were
        never computed (a cut came first): the subscription since has moved the durable marks past that gap."""
        if self._due:
            return
        self._marks = {k: list(v) for k, v in durable.items()}
        self._first = {}  # initial values may arrive before new_subscription() is called

    def new_subscription(self) -> None:
        self._due = self.conn.cfg.history_backfill

    def first_value(self, info: NodeInfo, dv: ua.DataValue, received_ns: int) -> None:
        t_ns, on_reference_clock = sample_time(dv, received_ns, self.conn.cfg.timestamp)
        empty_id = info.trace_key is not None and not (dv.Value is not None and dv.Value.Value not in (None, ""))
        self._first[info.source] = t_ns if on_reference_clock and not empty_id else None

    async def prime(self, client: Client, infos: Sequence[NodeInfo]) -> None:
        """Before a new subscription's monitored items exist: the ID nodes' history from their marks to now, into
        the context only. The subscription's initial values are tagged as they arrive, and a node unchanged since
        some time in the gap has an initial value from within it: its IDs must be known by then (after a server
        restart the context was cleared; else it knows the IDs before the gap and now, not between). Stored later,
        with the gaps. A failure here costs the initial values their IDs of the gap, never the session."""
        if not self.conn.cfg.history_backfill or not self._marks:
            return
        ids = [i for i in infos if i.trace_key is not None and i.source in self._marks
               and not getattr(i, "integrate_speed", False)]
        if not ids:
            return
        try:
            historized = await self._historized(client, [i.node_id for i in ids])
            gaps = [Gap(i, int(self._marks[i.source][0]), str(self._marks[i.source][1]), None, with_start=True,
                        store=False) for i, ok in zip(ids, historized, strict=True) if ok]
            await self._read(client, gaps, await self._nodes_per_read(client))
        except (TimeoutError, UaError, OSError, ConnectionError) as exc:
            log.warning("OPC UA %s: reading the IDs' history before subscribing failed (%s: %s)",
                        self.conn.cfg.endpoint, type(exc).__name__, exc)

    def start(self, client: Client) -> None:
        if not self.conn.cfg.history_backfill or (not self._due and not self._left):
            return
        self._task = asyncio.create_task(self._run(client), name="opcua-backfill")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.oldest_ns = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- the backfill ----------------------------------------------------------------------------------------------
    async def _run(self, client: Client) -> None:
        """Compute the gaps once the first values are in, read them; a failed request is retried (``RETRIES``,
        with backoff) from where it stopped: a busy server must not cost the gap until the next reconnect."""
        retry = Backoff(RETRY_INITIAL_S, RETRY_MAX_S)
        for attempt in range(1, RETRIES + 1):
            try:
                if self._due:
                    await self._await_first_values()
                    self._left.extend(await self._gaps(client))
                    self._due = False
                await self._backfill(client)
                return
            except (TimeoutError, UaError, OSError, ConnectionError) as exc:
                log.warning("OPC UA %s: history backfill failed (%s: %s), attempt %d of %d", self.conn.cfg.endpoint,
                            type(exc).__name__, exc, attempt, RETRIES)
                await asyncio.sleep(retry.next_delay())
        log.error("OPC UA %s: history backfill gave up for this session with %d node(s) unread; they are read after "
                  "the next reconnect", self.conn.cfg.endpoint, len(self._left))

    async def _backfill(self, client: Client) -> None:
        gaps = self._carry_over()
        if not gaps:
            return
        self.oldest_ns = min(g.after_ns for g in gaps)
        self.runs += 1
        t0, before = time.monotonic(), self.conn.state.backfilled
        log.info("OPC UA %s: reading the history of %d node(s) since their last stored values",
                 self.conn.cfg.endpoint, len(gaps))
        try:
            limit = await self._nodes_per_read(client)
            await self._read(client, [g for g in gaps if g.info.trace_key is not None], limit)  # IDs first: they
            await self._read(client, [g for g in gaps if g.info.trace_key is None], limit)  # tag what comes next
        finally:
            self._left = [g for g in self._left if not g.done]
            self.oldest_ns = None
        log.info("OPC UA %s: backfilled %d value(s) from the server's history in %.1f s", self.conn.cfg.endpoint,
                 self.conn.state.backfilled - before, time.monotonic() - t0)

    async def _await_first_values(self) -> None:
        deadline = time.monotonic() + max(FIRST_VALUES_WAIT_S, 20 * self.conn.cfg.subscription_interval_ms / 1000)
        while self.conn._initial_due and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    def _carry_over(self) -> list[Gap]:
        """The gaps not read yet, on the current handles (node ids are re-resolved per session)."""
        infos = {i.source: i for i in self.conn._handles.values()}
        kept: list[Gap] = []
        for g in self._left:
            info = infos.get(g.key)
            if info is not None and not g.done:
                g.info = info
                kept.append(g)
        self._left = kept
        return list(kept)

    async def _gaps(self, client: Client) -> list[Gap]:
        """One gap per monitored node with a mark, history access and an empty-free range."""
        infos = list({i.source: i for i in self.conn._handles.values()}.values())
        with_mark = [i for i in infos if i.source in self._marks and not getattr(i, "integrate_speed", False)]
        historized = await self._historized(client, [i.node_id for i in with_mark])
        gaps: list[Gap] = []
        ids: list[tuple[NodeInfo, int, str, int | None]] = []
        for info, ok in zip(with_mark, historized, strict=True):
            if not ok:
                continue
            t_mark, mark = int(self._marks[info.source][0]), str(self._marks[info.source][1])
            first = self._first.get(info.source)
            if info.trace_key is not None:
                ids.append((info, t_mark, mark, first))
            elif first is None or first > t_mark:  # else: nothing changed since (or the clock went back)
                gaps.append(Gap(info, t_mark, mark, first))
        # an ID node's first value may say nothing about the line's time (a restarted server's empty creation
        # value, stamped with its own clock): its gap then ends where the measurements' gaps end. Its value at the
        # mark is read in any case: after a server restart the context no longer has the ID the gap began with
        ends = [g.before_ns for g in gaps if g.before_ns is not None]
        bound = max(ends) if ends and all(g.before_ns is not None for g in gaps) else None
        for info, t_mark, mark, first in ids:
            end = first if first is not None and first > t_mark else bound
            gaps.append(Gap(info, t_mark, mark, end if end is None or end > t_mark else t_mark + 1, with_start=True))
        return gaps

    async def _historized(self, client: Client, node_ids: list[ua.NodeId]) -> list[bool]:
        out: list[bool] = []
        timeout = self.conn.cfg.request_timeout_s
        for i in range(0, len(node_ids), ATTRIBUTE_CHUNK):
            chunk = node_ids[i:i + ATTRIBUTE_CHUNK]
            access = await asyncio.wait_for(client.uaclient.read_attributes(chunk, AttributeIds.AccessLevel), timeout)
            hist = await asyncio.wait_for(client.uaclient.read_attributes(chunk, AttributeIds.Historizing), timeout)
            for a, h in zip(access, hist, strict=True):
                level = a.Value.Value if a.Value is not None and _good(a) else 0
                on = h.Value.Value if h.Value is not None and _good(h) else False
                out.append(bool(int(level or 0) & ua.AccessLevel.HistoryRead.mask) or on is True)
        return out

    async def _nodes_per_read(self, client: Client) -> int:
        limit_id = ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerHistoryReadData
        node = client.get_node(adapter.node_id(limit_id))
        try:
            limit = int(await asyncio.wait_for(node.read_value(), self.conn.cfg.request_timeout_s))
        except (TimeoutError, UaError, TypeError, ValueError):
            limit = 0
        return min(limit if limit > 0 else DEFAULT_NODES_PER_READ, max(1, VALUES_PER_REQUEST // VALUES_PER_READ))

    async def _read(self, client: Client, gaps: list[Gap], nodes_per_read: int) -> None:
        """Read the gaps in groups (nodes whose gaps start close together share a request and its details)."""
        todo = sorted(gaps, key=lambda g: g.after_ns)
        while todo:
            head = todo[0].after_ns
            group = [g for g in todo[:nodes_per_read] if g.after_ns - head <= GROUP_WINDOW_NS]
            todo = todo[len(group):]
            await self._read_group(client, group)

    async def _read_group(self, client: Client, group: list[Gap]) -> None:
        max_values = self.conn.cfg.history_backfill_max_values
        start_ns = min(g.after_ns for g in group)
        ends = [g.before_ns for g in group]
        end_ns = None if any(e is None for e in ends) else max(e for e in ends if e is not None)
        if end_ns is not None and end_ns <= start_ns:
            for g in group:
                g.done = True
            return
        points: dict[str, bytes | None] = {g.key: None for g in group}
        active = list(group)
        while active:
            dvs_per_node, cps = await self._history_read(client, active, start_ns, end_ns, points)
            again: list[Gap] = []
            for gap, dvs, cp in zip(active, dvs_per_node, cps, strict=True):
                newest = await self._take(gap, dvs)
                full = len(dvs) >= VALUES_PER_READ
                if gap.read >= max_values:
                    if cp:
                        await self._release(client, gap, cp)
                    log.warning("OPC UA: backfill of %s stopped at opcua.history_backfill_max_values=%d",
                                gap.key, max_values)
                    gap.done = True
                elif cp:
                    points[gap.key] = cp
                    again.append(gap)
                elif full and newest is not None and newest > start_ns:
                    # no continuation point although the page is full (asyncua's server): ask again from the last
                    # time read, on its own (its start differs from the group's)
                    points[gap.key] = None
                    await self._read_group(client, [gap])
                else:
                    gap.done = True
            active = again

    async def _history_read(self, client: Client, gaps: Sequence[Gap], start_ns: int, end_ns: int | None,
                            points: dict[str, bytes | None]) -> tuple[list[list[ua.DataValue]], list[bytes | None]]:
        details = ua.ReadRawModifiedDetails()
        details.IsReadModified = False
        details.StartTime = _datetime(start_ns)
        details.EndTime = _datetime(end_ns) if end_ns is not None else ua.get_win_epoch()
        details.NumValuesPerNode = VALUES_PER_READ
        details.ReturnBounds = False
        params = ua.HistoryReadParameters()
        params.HistoryReadDetails = details
        params.TimestampsToReturn = ua.TimestampsToReturn.Both
        params.ReleaseContinuationPoints = False
        params.NodesToRead = [_read_value_id(g.info.node_id, points.get(g.key)) for g in gaps]
        results = await asyncio.wait_for(client.uaclient.history_read(params), self.conn.cfg.request_timeout_s * 4)
        dvs: list[list[ua.DataValue]] = []
        cps: list[bytes | None] = []
        for gap, r in zip(gaps, results, strict=True):
            if not r.StatusCode.is_good():
                log.warning("OPC UA: HistoryRead of %s: %s; its gap is not backfilled", gap.key, r.StatusCode.name)
                dvs.append([])
                cps.append(None)
                continue
            data = r.HistoryData
            dvs.append(list(getattr(data, "DataValues", None) or []))
            cps.append(r.ContinuationPoint or None)
        return dvs, cps

    async def _release(self, client: Client, gap: Gap, cp: bytes) -> None:
        params = ua.HistoryReadParameters()
        params.HistoryReadDetails = ua.ReadRawModifiedDetails()
        params.ReleaseContinuationPoints = True
        params.NodesToRead = [_read_value_id(gap.info.node_id, cp)]
        with contextlib.suppress(TimeoutError, UaError):
            await asyncio.wait_for(client.uaclient.history_read(params), self.conn.cfg.request_timeout_s)

    async def _take(self, gap: Gap, dvs: list[ua.DataValue]) -> int | None:
        """The values of the gap (exclusive at both ends) into the context (IDs) and the sink; returns the newest
        source time read (also outside the gap), for paging. Moves ``gap.after_ns`` on as they are handed over."""
        conn = self.conn
        info, clock, line = gap.info, conn.cfg.timestamp, conn.line
        max_values = conn.cfg.history_backfill_max_values
        now = time.time_ns()
        out: list[Sample] = []
        rejected: list[Rejected] = []
        marks: dict[str, list[Any]] = {}
        newest: int | None = None
        for dv in dvs:
            t_ns, timed = sample_time(dv, now, clock)
            if not timed:
                continue  # no time on the reference clock: cannot be placed in the gap
            newest = t_ns if newest is None else max(newest, t_ns)
            if t_ns < gap.after_ns or (gap.before_ns is not None and t_ns >= gap.before_ns):
                continue
            value, quality, is_array = plain_value(dv)
            mark = f"{quality}|{value!r}"
            if info.trace_key is not None and value not in ("", None) and value == value:
                conn._update_context(info, dv, now)  # the ID current from its time on (also the one at the mark)
            if not gap.store:
                gap.after_ns, gap.after_mark, gap.with_start = t_ns, mark, False
                continue
            if t_ns == gap.after_ns and (mark == gap.after_mark or not gap.with_start):
                continue  # stored already (the mark itself)
            if gap.read >= max_values:
                break
            gap.read += 1
            marks[info.source] = [t_ns, mark]
            got = checked_samples(info, line, t_ns, value, quality, is_array, now)  # as the live path does
            if isinstance(got, Rejected):
                rejected.append(got)
                continue
            out.extend(got)
        if marks:
            gap.after_ns, gap.after_mark = marks[info.source]
            gap.with_start = False
        if out or rejected:
            records: list[Sample | Rejected] = [*conn._tag(out), *rejected]
            await self._hand_over(records, marks)
            conn.state.backfilled += len(out)
        return newest

    async def _hand_over(self, records: list[Any], marks: dict[str, list[Any]]) -> None:
        conn = self.conn

        def ack() -> None:  # durable: a mark only moves forward (the subscription may have stored newer ones)
            changed = False
            for source, m in marks.items():
                cur = conn._durable.get(source)
                if cur is None or m[0] > cur[0]:
                    conn._durable[source] = m
                    changed = True
            if changed:
                conn._durable_version += 1

        poll = Backoff(0.05, 1.0)
        while conn.sink(records, ack) is False:  # the pipeline has no room: offer them again when it has
            await asyncio.sleep(poll.next_delay())
            while conn.ready is not None and not conn.ready():
                await asyncio.sleep(poll.next_delay())


def _good(dv: ua.DataValue) -> bool:
    return dv.StatusCode is None or dv.StatusCode.is_good()


def _datetime(t_ns: int) -> datetime:
    return datetime.fromtimestamp(t_ns // 1_000_000_000, UTC).replace(microsecond=(t_ns // 1000) % 1_000_000)


def _read_value_id(node_id: ua.NodeId, cp: bytes | None) -> ua.HistoryReadValueId:
    rv = ua.HistoryReadValueId()
    rv.NodeId = node_id
    rv.ContinuationPoint = cp  # None = the first page
    return rv

