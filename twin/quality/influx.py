"""A synchronous InfluxDB client for worker threads: InfluxQL with bound parameters, several statements in one request,
a row cap and a timeout; and line-protocol writes for the lab import.

Why not ``twin.store.query.InfluxQuery``: that one is async and lives on the event loop; a cell record is built in a
worker thread end to end (genealogy + queries + statistics), so its queries block that thread, not the loop.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

Row = dict[str, Any]


class InfluxError(RuntimeError):
    """A query or write failed; ``unavailable`` says whether the database did not answer (retry later, HTTP 503)."""

    def __init__(self, message: str, *, unavailable: bool = False) -> None:
        super().__init__(message)
        self.unavailable = unavailable


class RowCapExceeded(InfluxError):
    """An answer held more rows than ``max_rows``: the question is too wide (narrow it)."""


class InfluxReader:
    """InfluxDB 1.x ``/query`` and ``/write`` (2.x / 3.x: their v1-compatible endpoints with a token)."""

    def __init__(self, url: str, database: str, *, version: int = 1, token: str = "", username: str = "",
                 password: str = "", org: str = "", timeout_s: float = 5.0, max_rows: int = 200_000) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.version = version
        self.org = org
        self.max_rows = max_rows
        headers = {"Authorization": f"Token {token}"} if version == 2 and token else {}
        auth = (username, password) if username else None
        self._client = httpx.Client(timeout=timeout_s, headers=headers, auth=auth)
        self.queries = 0  # statements run (for the record's "influxdb" figures and the benchmark)
        self.requests = 0  # HTTP requests made

    @classmethod
    def from_config(cls, influx: Mapping[str, Any], *, timeout_s: float = 5.0, max_rows: int = 200_000
                    ) -> InfluxReader:
        """From the ``influx:`` section of the twin's configuration (as ``Config.model_dump`` gives it)."""
        version = int(influx.get("version", 1))
        return cls(str(influx.get("url", "http://127.0.0.1:8086")),
                   str(influx.get("database" if version == 1 else "bucket", "pilotline")), version=version,
                   token=str(influx.get("token", "")), username=str(influx.get("username", "")),
                   password=str(influx.get("password", "")), org=str(influx.get("org", "")),
                   timeout_s=timeout_s, max_rows=max_rows)

    def close(self) -> None:
        self._client.close()

    def query(self, statements: Sequence[str], params: Mapping[str, Any] | None = None,
              max_rows: int | None = None) -> list[list[Row]]:
        """Run the statements in one request (``;``-joined, shared bound parameters); rows per statement, each a
        dict with ``_measurement`` and the series' tags. More than ``max_rows`` rows in all: RowCapExceeded."""
        cap = self.max_rows if max_rows is None else max_rows
        data = {"q": ";".join(statements), "db": self.database, "epoch": "ns"}
        if params:
            data["params"] = json.dumps(dict(params))
        self.queries += len(statements)
        self.requests += 1
        try:
            r = self._client.post(f"{self.url}/query", data=data)
        except httpx.HTTPError as exc:
            raise InfluxError(f"InfluxDB at {self.url} unreachable: {exc}", unavailable=True) from None
        if r.status_code != 200:
            raise InfluxError(f"InfluxDB answered HTTP {r.status_code}: {r.text[:300]}",
                              unavailable=r.status_code >= 500)
        body = r.json()
        out: list[list[Row]] = [[] for _ in statements]
        total = 0
        for res in body.get("results", []):
            if "error" in res:
                raise InfluxError(f"InfluxDB: {res['error']}")
            rows = out[int(res.get("statement_id", 0))]
            for series in res.get("series", []):
                cols = series["columns"]
                tags = series.get("tags", {})
                total += len(series["values"])
                if total > cap:
                    raise RowCapExceeded(f"the answer holds more than {cap} rows (quality.max_rows); narrow the "
                                         "selection")
                for values in series["values"]:
                    row = dict(zip(cols, values, strict=True))
                    row.update(tags)
                    row["_measurement"] = series.get("name")
                    rows.append(row)
        return out

    def write(self, lines: bytes) -> None:
        """Write line protocol (ns precision); raises InfluxError with what the database said."""
        if self.version == 1:
            url, params = f"{self.url}/write", {"db": self.database, "precision": "ns"}
        else:
            url, params = f"{self.url}/api/v2/write", {"bucket": self.database, "org": self.org, "precision": "ns"}
        try:
            r = self._client.post(url, params=params, content=lines)
        except httpx.HTTPError as exc:
            raise InfluxError(f"InfluxDB at {self.url} unreachable: {exc}", unavailable=True) from None
        if r.status_code >= 300:
            raise InfluxError(f"InfluxDB refused the write: HTTP {r.status_code}: {r.text[:300]}",
                              unavailable=r.status_code >= 500 or r.status_code == 404)
