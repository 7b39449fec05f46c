"""Write line protocol to InfluxDB 1.x (``/write``) or 2.x / 3.x (influxdb-client, token); config picks which.

A write either succeeds (2xx), fails in a way that retrying can fix (connection refused, timeout, 5xx, 401/403 while
someone fixes a token, 404 before the database exists) or is refused for good (400: unparsable or field-type
conflict; InfluxDB has then stored the valid points of the batch). The caller (``StoreWriter``) retries the first
kind forever with bounded backoff and quarantines the second, so one bad line never blocks the spool.
"""

from __future__ import annotations

import asyncio
import gzip
import re
from typing import Any, Protocol

import httpx

IDENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class WriteError(Exception):
    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class LineWriter(Protocol):
    async def start(self) -> None: ...
    async def write(self, data: bytes) -> None: ...
    async def close(self) -> None: ...


async def ping(writer: LineWriter) -> bool:
    """Is the database answering? For readiness while nothing is written; writers without ``ping`` say yes."""
    fn = getattr(writer, "ping", None)
    if fn is None:
        return True
    try:
        return bool(await fn())
    except Exception:  # noqa: BLE001 - any failure means: not reachable now
        return False


def _classify(status: int, body: str, what: str) -> WriteError:
    retryable = status >= 500 or status in (401, 403, 404, 408, 429)
    hint = ""
    if status in (401, 403):
        hint = " (check influx.username/password or influx.token; data stays in the spool meanwhile)"
    elif status == 404:
        hint = " (database / bucket missing; create it or set influx.create_database)"
    return WriteError(f"{what}: HTTP {status}: {body[:500]}{hint}", retryable=retryable, status=status)


class InfluxV1Writer:
    """InfluxDB 1.x HTTP API: ``POST /write?db=..&precision=ns`` with a gzip body."""

    def __init__(self, url: str, database: str, *, retention_policy: str = "", username: str = "",
                 password: str = "", gzip_body: bool = True, timeout_s: float = 10.0,
                 create_database: bool = True) -> None:
        if not IDENT_RE.fullmatch(database):
            raise ValueError(f"influx.database {database!r} must match {IDENT_RE.pattern}")
        self.url = url.rstrip("/")
        self.database = database
        self.retention_policy = retention_policy
        self.auth = (username, password) if username else None
        self.gzip = gzip_body
        self.timeout_s = timeout_s
        self.create_database = create_database
        self._client: httpx.AsyncClient | None = None
        self._db_ready = False

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.timeout_s, auth=self.auth)

    async def _ensure_database(self) -> None:
        if self._db_ready or not self.create_database:
            return
        assert self._client is not None
        # identifiers cannot be bound parameters in InfluxQL; the name was checked against IDENT_RE above
        r = await self._client.post(f"{self.url}/query", data={"q": f'CREATE DATABASE "{self.database}"'})
        if r.status_code != 200:
            raise _classify(r.status_code, r.text, "CREATE DATABASE")
        self._db_ready = True

    async def write(self, data: bytes) -> None:
        if self._client is None:
            await self.start()
        assert self._client is not None
        try:
            await self._ensure_database()
            params = {"db": self.database, "precision": "ns"}
            if self.retention_policy:
                params["rp"] = self.retention_policy
            headers = {"Content-Type": "text/plain; charset=utf-8"}
            body = data
            if self.gzip:
                body = gzip.compress(data, compresslevel=1)
                headers["Content-Encoding"] = "gzip"
            r = await self._client.post(f"{self.url}/write", params=params, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise WriteError(f"InfluxDB at {self.url} unreachable: {type(exc).__name__}: {exc}",
                             retryable=True) from None
        if r.status_code == 204:
            return
        if r.status_code == 404:
            self._db_ready = False
        raise _classify(r.status_code, r.text, f"write to {self.url} db={self.database}")

    async def ping(self) -> bool:
        """``GET /ping`` answers 204 while influxd serves."""
        if self._client is None:
            await self.start()
        assert self._client is not None
        try:
            r = await self._client.get(f"{self.url}/ping", timeout=min(self.timeout_s, 2.0))  # idle: keep it short
        except httpx.HTTPError:
            return False
        return r.status_code == 204

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class InfluxV2Writer:
    """InfluxDB 2.x / 3.x (and anything speaking ``/api/v2/write``) through influxdb-client, synchronous API.

    influxdb-client's batching is deliberately not used (memory only); each spool batch is one blocking write run in
    a worker thread, with the client's own retries off so that the spool decides.
    """

    def __init__(self, url: str, bucket: str, org: str, token: str, *, gzip_body: bool = True,
                 timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.bucket = bucket
        self.org = org
        self.token = token
        self.gzip = gzip_body
        self.timeout_s = timeout_s
        self._client: Any = None  # influxdb_client.InfluxDBClient, imported on start (optional dependency)
        self._api: Any = None

    async def start(self) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self._client = InfluxDBClient(url=self.url, token=self.token or "none", org=self.org,
                                      enable_gzip=self.gzip, timeout=int(self.timeout_s * 1000), retries=False)
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def _write_sync(self, data: bytes) -> None:
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        assert self._api is not None
        try:
            self._api.write(bucket=self.bucket, org=self.org, record=data.decode(), write_precision="ns")
        except ApiException as exc:
            raise _classify(int(exc.status or 0), str(exc.body or exc.reason), f"v2 write to {self.url}") from None
        except (Urllib3Error, OSError) as exc:
            raise WriteError(f"InfluxDB v2 at {self.url} unreachable: {type(exc).__name__}: {exc}",
                             retryable=True) from None

    async def write(self, data: bytes) -> None:
        if self._api is None:
            await self.start()
        await asyncio.to_thread(self._write_sync, data)

    async def ping(self) -> bool:
        if self._client is None:
            await self.start()
        assert self._client is not None
        return bool(await asyncio.to_thread(self._client.ping))

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
            self._api = None
