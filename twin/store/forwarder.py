"""Move batches from the spool to the database: confirm on 2xx, retry with bounded backoff, never drop silently.

One write per ``flush_interval_s`` at most, unless ``batch_size`` lines are waiting (then at once, back to back, until
the backlog is gone): a line publishing a few values many times a second costs one HTTP request, one confirm and one
cursor update per interval instead of one per publish (issue 11: the per-publish costs were most of ingest's CPU).
Idle, it sleeps until the next readiness ping instead of polling the spool: every append wakes it (``notify``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from connectors.backoff import Backoff
from connectors.records import Rejected
from twin.store.influx import LineWriter, WriteError, ping
from twin.store.spool import Batch, Spool

log = logging.getLogger(__name__)


@dataclass
class ForwarderStats:
    written_lines: int = 0
    written_batches: int = 0
    failed_attempts: int = 0
    refused_batches: int = 0
    last_error: str = ""
    last_write_ns: int = 0
    database_up: bool = False  # the last write (or, while idle, the last ping) succeeded
    last_probe_ns: int = 0


class Forwarder:
    def __init__(
        self,
        spool: Spool,
        writer: LineWriter,
        *,
        batch_size: int = 5000,
        flush_interval_s: float = 0.5,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 10.0,
        on_refused: Callable[[Rejected], None] | None = None,
        on_confirmed: Callable[[Batch, int], None] | None = None,
        probe_interval_s: float = 2.0,
    ) -> None:
        self.spool = spool
        self.writer = writer
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.on_refused = on_refused
        self.on_confirmed = on_confirmed
        self.probe_interval_s = probe_interval_s  # while idle, ping the database this often (readiness)
        self.stats = ForwarderStats()
        self._wake = asyncio.Event()
        self._stopping = False
        self._hurry = False  # drain(): no waiting for the flush interval
        self._next_send_mono = 0.0  # no write before this, unless batch_size lines wait

    def notify(self) -> None:
        """Something was appended: do not wait for the flush interval."""
        self._wake.set()

    async def run(self) -> None:
        await self.writer.start()
        try:
            while True:
                wait_s = self._next_send_mono - time.monotonic()
                if wait_s > 0 and not (self._hurry or self._stopping) and self.spool.depth_lines < self.batch_size:
                    await asyncio.sleep(wait_s)  # gather what arrives meanwhile into this write
                self._wake.clear()  # an append from here on wakes the idle wait below
                batch = None
                try:
                    if self.spool.depth_lines:  # (no thread hop to find nothing)
                        batch = await asyncio.to_thread(self.spool.read_batch, self.batch_size)
                except OSError as exc:  # a segment dropped under us (drop_oldest) or disk trouble
                    log.error("spool read failed: %s; reading again from the cursor", exc)
                    self.spool.rewind()
                    await asyncio.sleep(self.retry_initial_s)
                    continue
                if batch is None:
                    if self._stopping:
                        return
                    if self.spool.cursor_unsaved:  # idle: write the cursor the confirms left for later
                        await asyncio.to_thread(self.spool.flush_cursor)
                    await self._probe_if_idle()
                    # every append notifies: sleep until the next readiness ping is due (or a flush interval)
                    last = max(self.stats.last_write_ns, self.stats.last_probe_ns)
                    idle_s = max(self.flush_interval_s, self.probe_interval_s - (time.time_ns() - last) / 1e9)
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout=idle_s)
                    except TimeoutError:
                        pass
                    continue
                self._next_send_mono = time.monotonic() + self.flush_interval_s
                await self._send(batch)
        finally:
            await self.writer.close()

    async def _send(self, batch: Batch) -> None:
        backoff = Backoff(self.retry_initial_s, self.retry_max_s)
        data = batch.data
        while True:
            try:
                await self.writer.write(data)
            except WriteError as exc:
                self.stats.failed_attempts += 1
                self.stats.last_error = str(exc)
                if not exc.retryable:
                    self.stats.refused_batches += 1
                    log.error("database refused a batch of %d lines for good: %s (kept in quarantine)",
                              batch.lines, exc)
                    if self.on_refused is not None:
                        self.on_refused(Rejected("database_refused", str(exc), "influx", data, time.time_ns()))
                    break
                if self.stats.database_up:
                    log.warning("database write failed, retrying with backoff (data is safe in the spool): %s", exc)
                self.stats.database_up = False
                await asyncio.sleep(backoff.next_delay())
                continue
            if not self.stats.database_up:
                log.info("database writes succeed again")
            self.stats.database_up = True
            self.stats.written_lines += batch.lines
            self.stats.written_batches += 1
            self.stats.last_write_ns = time.time_ns()
            break
        await asyncio.to_thread(self.spool.confirm, batch)
        if self.on_confirmed is not None:
            self.on_confirmed(batch, time.time_ns())

    async def _probe_if_idle(self) -> None:
        """Nothing to write: ping now and then, so that ``database_up`` (readiness) follows the database anyway."""
        now = time.time_ns()
        last = max(self.stats.last_write_ns, self.stats.last_probe_ns)
        if now - last < self.probe_interval_s * 1e9:
            return
        self.stats.last_probe_ns = now
        up = await ping(self.writer)
        if up != self.stats.database_up:
            log.info("database %s (ping while idle)", "reachable" if up else "unreachable")
        self.stats.database_up = up

    async def drain(self, timeout_s: float) -> bool:
        """Wait until the spool is empty (or ``timeout_s``); True when everything is confirmed."""
        deadline = time.monotonic() + timeout_s
        self._hurry = True
        try:
            while time.monotonic() < deadline:
                if self.spool.depth_lines == 0:
                    return True
                self.notify()
                await asyncio.sleep(0.05)
            return self.spool.depth_lines == 0
        finally:
            self._hurry = False

    def stop_when_empty(self) -> None:
        self._stopping = True
        self.notify()
