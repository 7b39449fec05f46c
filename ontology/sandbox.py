"""Run a user's read-only SPARQL query, or one page of an export, with a hard time limit and a result limit.

For the persistent Oxigraph store the query runs in a child process, killed when it runs out of time, so a runaway
query can hold neither the service's event loop, nor its GIL, nor a CPU past its limit; the children run at a lower
priority (`WORKER_NICE`) so that ingest and the API keep the CPUs they need. A child reads a *snapshot*: a RocksDB
checkpoint of the store (hard links, `Store.backup`), never the live directory. Opening the live directory read-only
beside the writer is undefined behaviour in RocksDB (pyoxigraph's `Store.read_only` says so): compaction deletes SST
files the reader's manifest still lists, and queries failed with "Corruption: IO error: No such file" while the line
wrote. A checkpoint's files are immutable and outlive compaction. A snapshot is reused while nothing was written since,
and at most `snapshot_max_age_s` behind the live store otherwise; it is deleted once no query or export cursor uses it.

The other backends (rdflib's memory store, a remote endpoint, in-memory Oxigraph) run the query in a thread; past the
limit the caller gets an error and the thread's result is dropped. Such a thread cannot be killed: `on_done` is called
only when it really ends, so whoever counts running queries keeps counting it.
Updates never reach a store: they are refused before any execution (see `check_read_only`).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import logging
import os
import select
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyparsing import ParseException
from rdflib.plugins.sparql.parser import parseQuery, parseUpdate

from ontology.queryproc import (
    _PAGE,
    Answer,
    ExportPage,
    _collect,
    _nt,
    _ox_answer,
    _ox_page,
)

__all__ = ["Answer", "ExportPage", "QueryEngine", "check_read_only", "rdflib_answer", "run_in_thread"]

log = logging.getLogger(__name__)

WORKER_NICE = 19
"""Niceness of each query process: under CPU contention a nice-0 service gets ~70x the CPU share of a query (CFS
weights 1024 vs 15); measured in tests/bench/bench_sparql_stall.py."""
SNAPSHOT_MAX_AGE_S = 10.0
"""While the line writes, user queries read a snapshot at most this old. A snapshot is a RocksDB checkpoint: it
flushes the memtable and syncs files, and at 1 s under live ingest (x60) that I/O doubled the service's /health p50
(tests/bench/bench_sparql_stall.py); with nothing written since the last one, a snapshot is reused however old."""
IDLE_WORKERS = 4
"""Query processes kept alive between queries (more are started when more queries run at once, then ended)."""
MAX_MEMORY_MB = 1024
"""Heap one query process may take (RLIMIT_DATA): an ORDER BY over a cross product grows until its time limit
otherwise, and the machine's memory is the service's too."""


class ReadOnlyError(PermissionError):
    """The request was a SPARQL update; this endpoint only reads."""


class QueryTimeout(TimeoutError):
    """The query ran past its time limit and was stopped."""


class QueryOverMemory(QueryTimeout):
    """The query took more memory than its process may (``max_memory_mb``) and was stopped: like a timeout, a limit
    the query reached, not a fault of the service."""


class QuerySyntaxError(ValueError):
    """Not a valid SPARQL 1.1 query (or one the engine refuses)."""


class QueryFailed(RuntimeError):
    """The query was valid but could not be answered (the query process died, the store could not be read)."""


class CursorError(ValueError):
    """An export cursor that this server did not give out, or one that has expired (`expired` says which)."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


_PARSING = threading.Lock()
"""rdflib's SPARQL grammar (pyparsing) keeps parse state in shared objects: two threads parsing at once failed with
"Param.postParse2() missing 1 required positional argument". Parsing holds the GIL anyway, so one at a time costs
nothing."""


def check_read_only(text: str) -> str:
    """Return the query form (SELECT, ASK, CONSTRUCT, DESCRIBE); refuse updates and SERVICE (no outbound calls)."""
    if not isinstance(text, str) or not text.strip():
        raise QuerySyntaxError("empty query: send a SPARQL 1.1 SELECT, ASK, CONSTRUCT or DESCRIBE")
    with _PARSING:
        try:
            parsed = parseQuery(text)
        except ParseException as exc:
            try:
                parseUpdate(text)
            except ParseException:
                raise QuerySyntaxError(f"SPARQL syntax error at line {exc.lineno}, column {exc.col}: "
                                       f"{exc.msg}") from None
            raise ReadOnlyError("SPARQL updates are refused: this endpoint is read-only") from None
    if "ServiceGraphPattern" in repr(parsed):
        raise ReadOnlyError("SERVICE (federated queries) is refused: this endpoint answers from its own graph only")
    return str(parsed[1].name).replace("Query", "").upper()


# ---------------------------------------------------------------------------------------------------------------------
# snapshots of the persistent store

@dataclass
class _Snapshot:
    id: str
    path: Path
    version: int
    made: float  # time.monotonic()
    refs: int = 0
    pinned_until: float = 0.0  # time.monotonic(); an export cursor keeps its snapshot until then


class Snapshots:
    """RocksDB checkpoints of the live store under `root`, shared by queries, kept while used or pinned.

    `version()` changes whenever the store was written (the store's written-triples counter): a snapshot taken at
    version v answers like the store at v."""

    def __init__(self, store: Any, root: Path, version: Callable[[], int],
                 max_age_s: float = SNAPSHOT_MAX_AGE_S) -> None:
        self.store = store
        self.root = root
        self.version = version
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._making = threading.Lock()  # one checkpoint at a time; who waits for it then uses it
        self._current: _Snapshot | None = None
        self._all: dict[str, _Snapshot] = {}
        self._serial = itertools.count(1)
        if root.exists():
            shutil.rmtree(root)  # left by a previous run: nothing can use them any more
        root.mkdir(parents=True)

    def _fresh(self, snap: _Snapshot | None) -> bool:
        return snap is not None and (snap.version == self.version()
                                     or time.monotonic() - snap.made < self.max_age_s)

    def acquire(self) -> _Snapshot:
        """A snapshot no older than `max_age_s` (or with nothing written since); release() it when done."""
        with self._lock:
            if self._fresh(self._current):
                assert self._current is not None
                self._current.refs += 1
                return self._current
        with self._making:
            with self._lock:
                if self._fresh(self._current):
                    assert self._current is not None
                    self._current.refs += 1
                    return self._current
            version = self.version()  # read first: the checkpoint holds at least every write counted here
            sid = f"{time.time_ns()}-{next(self._serial)}"
            path = self.root / sid
            try:
                self.store.backup(str(path))
            except OSError as exc:  # disk full, store closed
                shutil.rmtree(path, ignore_errors=True)
                raise QueryFailed(f"could not take a snapshot of the store: {exc}") from exc
            snap = _Snapshot(sid, path, version, time.monotonic(), refs=1)
            with self._lock:
                old, self._current = self._current, snap
                self._all[sid] = snap
                self._reap(old)
            return snap

    def get(self, sid: str) -> _Snapshot:
        """The pinned snapshot `sid` of an export cursor (CursorError if it has expired); release() it when done."""
        with self._lock:
            snap = self._all.get(sid)
            if snap is None or (snap is not self._current and snap.pinned_until < time.monotonic()):
                raise CursorError("this export cursor has expired: start the export again without a cursor",
                                  expired=True)
            snap.refs += 1
            return snap

    def release(self, snap: _Snapshot) -> None:
        with self._lock:
            snap.refs -= 1
            self._reap(snap)

    def pin(self, snap: _Snapshot, seconds: float) -> None:
        with self._lock:
            snap.pinned_until = max(snap.pinned_until, time.monotonic() + seconds)

    def pinned(self) -> list[float]:
        """Seconds left of each pinned snapshot (open export cursors)."""
        now = time.monotonic()
        with self._lock:
            for snap in list(self._all.values()):
                self._reap(snap)
            return sorted(s.pinned_until - now for s in self._all.values() if s.pinned_until > now)

    def _reap(self, snap: _Snapshot | None) -> None:
        if snap is None or snap is self._current or snap.refs > 0 or snap.pinned_until > time.monotonic():
            return
        self._all.pop(snap.id, None)
        shutil.rmtree(snap.path, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            self._current = None
            self._all.clear()
        shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------------
# query processes

class _Worker:
    def __init__(self, max_memory_mb: int = MAX_MEMORY_MB) -> None:
        self.max_memory_mb = max_memory_mb
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
        nice = shutil.which("nice")
        prefix = [nice, "-n", str(WORKER_NICE)] if nice else []  # low priority from the interpreter's first byte
        self.proc = subprocess.Popen([*prefix, sys.executable, "-m", "ontology.queryproc", str(WORKER_NICE),
                                      str(max_memory_mb)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=root)

    def ask(self, request: dict[str, Any], wait_s: float, limit_s: float) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], wait_s)
        if not ready:
            raise QueryTimeout(f"query stopped after {limit_s:g} s (the limit); narrow it or add LIMIT")
        line = self.proc.stdout.readline()
        if not line:
            if self.proc.wait(timeout=10) < 0:  # killed by a signal: the allocator's abort at the heap cap
                raise QueryOverMemory(f"the query needed more than its {self.max_memory_mb} MiB of memory and was "
                                      "stopped; narrow it or add LIMIT")
            raise QueryFailed(f"the query process ended without an answer (exit {self.proc.returncode})")
        return json.loads(line)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


class OxigraphSandbox:
    """Query processes over snapshots of a persistent pyoxigraph store; safe to call from many threads at once."""

    def __init__(self, store: Any, snapshot_root: Path, version: Callable[[], int],
                 snapshot_max_age_s: float = SNAPSHOT_MAX_AGE_S) -> None:
        self.snapshots = Snapshots(store, snapshot_root, version, snapshot_max_age_s)
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._closed = False
        self.max_memory_mb = MAX_MEMORY_MB

    def _take(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise QueryFailed("the genealogy store is closed")
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
                worker.kill()
        return _Worker(self.max_memory_mb)

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < IDLE_WORKERS and worker.alive():
                self._idle.append(worker)
                return
        worker.kill()

    def _ask(self, snap: _Snapshot, request: dict[str, Any], wait_s: float, limit_s: float) -> dict[str, Any]:
        worker = self._take()
        try:
            reply = worker.ask({**request, "path": str(snap.path)}, wait_s, limit_s)
        except QueryTimeout:  # a limit reached (TimeoutError is an OSError: not a broken pipe)
            worker.kill()
            raise
        except OSError as exc:  # the process died between queries (a broken pipe)
            worker.kill()
            raise QueryFailed(f"the query process failed: {exc}") from exc
        except BaseException:
            worker.kill()  # ran out of time or died: the CPU it held is free once this returns
            raise
        self._give_back(worker)
        if reply["status"] == "error":
            if reply.get("kind") == "syntax":
                raise QuerySyntaxError(reply["message"])
            raise QueryFailed(reply["message"])
        return reply

    def run(self, text: str, form: str, limit: int, timeout_s: float) -> Answer:
        deadline = time.monotonic() + timeout_s
        snap = self.snapshots.acquire()
        try:
            left = deadline - time.monotonic()
            if left <= 0:
                raise QueryTimeout(f"query stopped after {timeout_s:g} s (the limit): the snapshot took it all")
            reply = self._ask(snap, {"op": "query", "query": text, "form": form, "limit": limit}, left, timeout_s)
        finally:
            self.snapshots.release(snap)
        return Answer(**reply["answer"])

    def page(self, cursor: str | None, limit: int, timeout_s: float, keep_s: float,
             max_open: int, pin: bool = True) -> ExportPage:
        """One export page from the snapshot the cursor names (a new snapshot without a cursor), pinned for
        `keep_s` more seconds while pages follow (unless `pin` is False: then no cursor is given out).
        At most `max_open` cursors are open at once (ExportsBusy)."""
        offset = 0
        if cursor is None:
            snap = self.snapshots.acquire()
        else:
            sid, offset = decode_cursor(cursor)
            snap = self.snapshots.get(sid)
        try:
            reply = self._ask(snap, {"op": "page", "offset": offset, "limit": limit}, timeout_s, timeout_s)
            lines, more = reply["lines"], bool(reply["more"])
            next_cursor = None
            if more and pin:
                open_now = self.snapshots.pinned()
                if snap.pinned_until <= time.monotonic() and len(open_now) >= max_open:
                    raise ExportsBusy(f"{len(open_now)} exports are open (the most at once is {max_open}); finish "
                                      "one or wait until a cursor expires", retry_after_s=open_now[0])
                self.snapshots.pin(snap, keep_s)
                next_cursor = encode_cursor(snap.id, offset + len(lines))
        finally:
            self.snapshots.release(snap)
        return ExportPage("".join(line + "\n" for line in lines), len(lines), more, next_cursor)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()
        self.snapshots.close()


class ExportsBusy(RuntimeError):
    """Too many export cursors are open; `retry_after_s` says when the oldest expires."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def encode_cursor(snapshot_id: str, offset: int) -> str:
    raw = json.dumps({"s": snapshot_id, "o": int(offset)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int]:
    """(snapshot id, offset); CursorError for anything this server did not give out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        sid, offset = data["s"], data["o"]
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise CursorError("malformed export cursor: pass the X-Next-Cursor value of the previous page as is") from None
    if not isinstance(sid, str) or not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise CursorError("malformed export cursor: pass the X-Next-Cursor value of the previous page as is")
    return sid, offset


# ---------------------------------------------------------------------------------------------------------------------
# thread backends

def run_in_thread(run: Callable[[], Answer], timeout_s: float,
                  on_done: Callable[[], None] | None = None) -> Answer:
    """`run()` in a thread, waited for at most `timeout_s`; `on_done` is called when the thread really ends."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["answer"] = run()
        except Exception as exc:  # noqa: BLE001
            box["error"] = exc
        finally:
            if on_done is not None:
                on_done()

    worker = threading.Thread(target=target, daemon=True, name="sparql-query")
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise QueryTimeout(f"query stopped waiting after {timeout_s:g} s (the limit); narrow it or add LIMIT")
    if "error" in box:
        error = box["error"]
        if isinstance(error, (QuerySyntaxError, QueryFailed, ReadOnlyError, CursorError)):
            raise error
        raise QuerySyntaxError(f"{type(error).__name__}: {error}")
    return box["answer"]


def rdflib_answer(graph: Any, text: str, form: str, limit: int) -> Answer:
    result = graph.query(text)
    if form == "ASK":
        return Answer(form, {"head": {}, "boolean": bool(result.askAnswer)})
    return _collect(result, form, limit, lambda r: [str(v) for v in r.vars],
                    lambda r: ({str(k): row[k] for k in r.vars} for row in r))


class QueryEngine:
    """Where a store's user queries and export pages run: `OxigraphSandbox` for a persistent Oxigraph store, a thread
    otherwise. Export pages of the thread backends count by offset on the live graph: exactly once across pages only
    while nothing is written in between (the Oxigraph sandbox reads a pinned snapshot instead)."""

    def __init__(self, graph: Any, ox_store: Any, lock: AbstractContextManager[Any], path: Path | None,
                 version: Callable[[], int], snapshot_max_age_s: float = SNAPSHOT_MAX_AGE_S) -> None:
        self.graph = graph
        self.ox = ox_store
        self.lock = lock
        self.sandbox = (OxigraphSandbox(ox_store, path / "sparql-snapshots", version, snapshot_max_age_s)
                        if ox_store is not None and path is not None else None)

    @property
    def snapshot_max_age_s(self) -> float:
        """How far (s) behind a line that writes user queries may read (a new snapshot costs a memtable flush)."""
        return self.sandbox.snapshots.max_age_s if self.sandbox is not None else 0.0

    @snapshot_max_age_s.setter
    def snapshot_max_age_s(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"snapshot_max_age_s must be >= 0, got {seconds}")
        if self.sandbox is not None:
            self.sandbox.snapshots.max_age_s = seconds

    @property
    def max_memory_mb(self) -> int:
        """The heap (MiB) one query process may take: past it the process ends and its query fails, alone."""
        return self.sandbox.max_memory_mb if self.sandbox is not None else MAX_MEMORY_MB

    @max_memory_mb.setter
    def max_memory_mb(self, mib: int) -> None:
        if mib < 256:  # a query process needs about 200 MiB of address space to open a RocksDB snapshot at all
            raise ValueError(f"max_memory_mb must be >= 256, got {mib}")
        if self.sandbox is not None:
            self.sandbox.max_memory_mb = mib

    def run(self, text: str, *, max_results: int, timeout_s: float,
            on_done: Callable[[], None] | None = None) -> Answer:
        if self.sandbox is None:
            return run_in_thread(lambda: self._in_thread(text, max_results), timeout_s, on_done)
        try:
            return self.sandbox.run(text, check_read_only(text), max_results, timeout_s)
        finally:
            if on_done is not None:
                on_done()

    def _in_thread(self, text: str, max_results: int) -> Answer:
        form = check_read_only(text)
        if self.ox is not None:
            return _ox_answer(self.ox, text, form, max_results)
        with self.lock:
            return rdflib_answer(self.graph, text, form, max_results)

    def page(self, cursor: str | None, *, limit: int, timeout_s: float, keep_s: float = 600.0, max_open: int = 4,
             pin: bool = True, on_done: Callable[[], None] | None = None) -> ExportPage:
        """Up to `limit` triples of the default graph from where `cursor` left off (None: the first page)."""
        if self.sandbox is None:
            return run_in_thread(lambda: self._page_in_thread(cursor, limit, pin), timeout_s,  # type: ignore[arg-type,return-value]
                                 on_done)
        try:
            return self.sandbox.page(cursor, limit, timeout_s, keep_s, max_open, pin)
        finally:
            if on_done is not None:
                on_done()

    def _page_in_thread(self, cursor: str | None, limit: int, pin: bool) -> ExportPage:
        offset = 0
        if cursor is not None:
            sid, offset = decode_cursor(cursor)
            if sid != "live":
                raise CursorError("this export cursor has expired: start the export again without a cursor",
                                  expired=True)
        if self.ox is not None:
            lines, more = _ox_page(self.ox, offset, limit)
        else:
            with self.lock:
                rows = self.graph.query(_PAGE.format(offset=int(offset), limit=int(limit) + 1))
                lines = [f"{_nt(s)} {_nt(p)} {_nt(o)} ." for s, p, o in rows]
            more = len(lines) > limit
            lines = lines[:limit]
        return ExportPage("".join(line + "\n" for line in lines), len(lines), more,
                          encode_cursor("live", offset + len(lines)) if more and pin else None)

    def close(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()

