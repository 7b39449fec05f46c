"""Historical access for the simulator's OPC UA server (``--historize``): asyncua's history, made cheap enough to run
at the line's rate.

asyncua historizes a node through an internal subscription and stores every data change with
``HistoryStorageInterface.save_node_value``. Its ``HistorySQLite`` cannot serve this address space as it is (it
names a table after ``repr(identifier)``, and its own SQL-injection check refuses the quotes of a string NodeId;
sqlite3 cannot read back its aware timestamps without a fraction of a second), and it commits (an fsync) after every
single value and bounds a node's history with a ``DELETE`` that scans the table, per value. ``BatchedHistorySQLite``
keeps its table layout and its read semantics (``read_node_history``: source time range, insertion order, the limit,
a continuation point past ``max_history_data_response_size``) but buffers the inserts in memory and writes them in
one transaction every ``FLUSH_INTERVAL_S`` (WAL, ``synchronous=NORMAL``: a restarted server process finds everything
flushed before it stopped; a machine crash may cost the last interval), trims each node to its newest
``max_values_per_node`` rows by rowid, and indexes the source time. Reads flush first, so a HistoryRead sees every
value published so far.

Without a path the history is asyncua's in-memory ``HistoryDict`` (gone with the server object: a server restart
loses it, as a server without persistent history would).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.server.history import HistoryDict, HistoryStorageInterface
from asyncua.ua.ua_binary import variant_from_binary, variant_to_binary

log = logging.getLogger("simulator.history")

FLUSH_INTERVAL_S = 0.2


class BatchedHistorySQLite(HistoryStorageInterface):
    """asyncua's SQLite table layout (one table per node: _Id, ServerTimestamp, SourceTimestamp, StatusCode, Value,
    VariantType, VariantBinary), one transaction per ``FLUSH_INTERVAL_S`` instead of one per value, and every database
    call of a flush or a read in one hop to a worker thread (asyncua's goes through aiosqlite, a thread hop per
    statement: a flush of 400 nodes was 400 hops, and a HistoryRead of ten nodes took 1.5 s on a loaded server)."""

    def __init__(self, path: Path, max_values_per_node: int) -> None:
        self.path = path
        self.max_values_per_node = max_values_per_node
        self.max_history_data_response_size = 10_000
        self._rows: dict[str, list[tuple[Any, ...]]] = {}
        self._db: sqlite3.Connection | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def init(self) -> None:
        self._db = sqlite3.connect(self.path, check_same_thread=False, detect_types=sqlite3.PARSE_DECLTYPES)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._flusher = asyncio.create_task(self._flush_loop(), name="history-flush")

    @staticmethod
    def table_name(node_id: ua.NodeId) -> str:
        # asyncua names the table after repr(identifier): a string NodeId gets quotes, which its own SQL-injection
        # check refuses ("2_'PilotLine.LineId'"); the names here are only ever double-quoted
        return f"{node_id.NamespaceIndex}_{node_id.Identifier!s}".replace('"', "_")

    async def new_historized_node(self, node_id: ua.NodeId, period: timedelta | None, count: int = 0) -> None:
        # period/count are ours (max_values_per_node); an existing table (a restarted server) is kept
        table = self.table_name(node_id)
        async with self._lock:
            await asyncio.to_thread(self._create, table)
        self._rows.setdefault(table, [])

    def _create(self, table: str) -> None:
        assert self._db is not None
        self._db.execute(f'CREATE TABLE IF NOT EXISTS "{table}" (_Id INTEGER PRIMARY KEY NOT NULL, '
                         "ServerTimestamp TIMESTAMP, SourceTimestamp TIMESTAMP, StatusCode INTEGER, Value TEXT, "
                         "VariantType TEXT, VariantBinary BLOB)")
        self._db.execute(f'CREATE INDEX IF NOT EXISTS "{table}.source" ON "{table}" (SourceTimestamp)')
        self._db.commit()

    async def save_node_value(self, node_id: ua.NodeId, datavalue: ua.DataValue) -> None:
        assert datavalue.Value is not None and datavalue.StatusCode is not None
        self._rows.setdefault(self.table_name(node_id), []).append((
            _stamp(datavalue.ServerTimestamp), _stamp(datavalue.SourceTimestamp), datavalue.StatusCode.value,
            str(datavalue.Value.Value), datavalue.Value.VariantType.name,
            sqlite3.Binary(variant_to_binary(datavalue.Value))))

    async def read_node_history(self, node_id: ua.NodeId, start: datetime | None, end: datetime | None,
                                nb_values: int) -> tuple[list[ua.DataValue], datetime | None]:
        """asyncua's query and paging (``HistorySQLite.read_node_history``), on timestamps stored as naive-UTC text
        with microseconds: asyncua stores aware datetimes, and sqlite3's TIMESTAMP converter cannot read one back
        without a fraction of a second ("12:00:09+00:00" failed the whole HistoryRead)."""
        await self.flush()
        order = "ASC"
        epoch = ua.get_win_epoch()
        if start is None or start == epoch:
            order, start = "DESC", epoch
        if end is None or end == epoch:
            end = datetime.now(UTC) + timedelta(days=3650)
        lo, hi = (start, end) if start < end else (end, start)
        if start > end:
            order = "DESC"
        query = (f'SELECT * FROM "{self.table_name(node_id)}" WHERE "SourceTimestamp" BETWEEN ? AND ? '
                 f'ORDER BY "_Id" {order} LIMIT ?')
        async with self._lock:
            rows = await asyncio.to_thread(self._select, query, (_stamp(lo), _stamp(hi), nb_values or -1))
        dvs = [ua.DataValue(variant_from_binary(Buffer(row[6])), StatusCode=ua.StatusCode(row[3]),
                            ServerTimestamp=_utc(row[1]),  # type: ignore[arg-type]  # a datetime
                            SourceTimestamp=_utc(row[2]))  # type: ignore[arg-type]
               for row in rows]
        cont = None
        if len(dvs) > self.max_history_data_response_size:
            cont = dvs[self.max_history_data_response_size].SourceTimestamp
            dvs = dvs[:self.max_history_data_response_size]
        return dvs, cont

    def _select(self, query: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        assert self._db is not None
        try:
            return self._db.execute(query, args).fetchall()
        except sqlite3.Error as exc:
            log.error("history: read failed: %s", exc)
            return []

    async def flush(self) -> None:
        async with self._lock:
            pending = {t: rows for t, rows in self._rows.items() if rows}
            if not pending or self._db is None:
                return
            for table in pending:
                self._rows[table] = []
            await asyncio.to_thread(self._write, pending)

    def _write(self, pending: dict[str, list[tuple[Any, ...]]]) -> None:
        assert self._db is not None
        try:
            for table, rows in pending.items():
                self._db.executemany(f'INSERT INTO "{table}" VALUES (NULL, ?, ?, ?, ?, ?, ?)', rows)
                if self.max_values_per_node:
                    self._db.execute(f'DELETE FROM "{table}" WHERE _Id <= (SELECT MAX(_Id) FROM "{table}") - ?',
                                     (self.max_values_per_node,))
            self._db.commit()
        except sqlite3.Error as exc:
            log.error("history: writing %d node(s) failed: %s", len(pending), exc)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            await self.flush()

    async def new_historized_event(self, source_id: ua.NodeId, evtypes: list[Any], period: timedelta | None,
                                   count: int = 0) -> None:
        raise NotImplementedError("the simulator historises data changes only")

    async def save_event(self, event: Any) -> None:
        raise NotImplementedError("the simulator historises data changes only")

    async def read_event_history(self, source_id: ua.NodeId, start: datetime | None, end: datetime | None,
                                 nb_values: int, evfilter: Any) -> tuple[list[Any], datetime | None]:
        return [], None

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None


def _stamp(t: datetime | None) -> str | None:
    """Naive UTC text with microseconds, always: sorts as text and reads back through sqlite3's converter."""
    if t is None:
        return None
    if t.tzinfo is not None:
        t = t.astimezone(UTC).replace(tzinfo=None)
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")


def _utc(t: datetime | None) -> datetime | None:
    return None if t is None else t.replace(tzinfo=UTC)


def make_storage(path: Path | None, max_values_per_node: int) -> HistoryStorageInterface:
    """SQLite at ``path`` (survives a server restart), else in memory; at most ``max_values_per_node`` per node."""
    if path is None:
        return _BoundedHistoryDict(max_values_per_node)
    path.parent.mkdir(parents=True, exist_ok=True)
    return BatchedHistorySQLite(path, max_values_per_node)


class _BoundedHistoryDict(HistoryDict):
    """asyncua's in-memory history, bounded by count only (its ``period`` counts from the wall clock, the line's
    source timestamps from the simulated one), of the values that have a source time."""

    def __init__(self, max_values_per_node: int) -> None:
        super().__init__()
        self.max_values_per_node = max_values_per_node

    async def new_historized_node(self, node_id: ua.NodeId, period: timedelta | None, count: int = 0) -> None:
        await super().new_historized_node(node_id, None, self.max_values_per_node)

    async def save_node_value(self, node_id: ua.NodeId, datavalue: ua.DataValue) -> None:
        # a value without a SourceTimestamp (a measurement waiting for its first sample) has no place in a history
        # read by time, and asyncua's read compares every stored timestamp (None would fail the whole HistoryRead);
        # the SQLite storage keeps it as a NULL that no time range selects
        if datavalue.SourceTimestamp is not None:
            await super().save_node_value(node_id, datavalue)
