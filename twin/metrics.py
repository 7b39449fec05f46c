"""Prometheus metrics of the twin, in a registry of its own (so tests and several apps in one process do not collide).

Latencies are histograms observed where they happen (store write, model call, recommendation round); everything that
another component already counts (ingest rate, queue and spool depth, connector state) is read at scrape time through
``TwinCollector`` from a stats callable, so there is one source of truth and nothing to keep in sync.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("twin.metrics")

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
StatsFn = Callable[[], Mapping[str, Any]]


class TwinCollector(Collector):
    """Gauges read at scrape time from ``stats()``; a failing stats call yields no gauges rather than a 500."""

    def __init__(self, stats: StatsFn) -> None:
        self.stats = stats
        self._last_samples: tuple[float, float] | None = None

    def collect(self) -> Iterator[Metric]:
        try:
            s = dict(self.stats())
        except Exception:  # noqa: BLE001 - metrics must not break because a component is down
            log.exception("stats provider failed")
            return
        samples = float(s.get("samples_total", 0))
        now = time.monotonic()
        rate = 0.0
        if self._last_samples is not None and now > self._last_samples[0]:
            rate = max(0.0, (samples - self._last_samples[1]) / (now - self._last_samples[0]))
        self._last_samples = (now, samples)
        yield _gauge("twin_ingest_samples", "samples the twin has received (total)", samples)
        yield _gauge("twin_ingest_rate_per_second", "samples per second since the previous scrape", rate)
        q = GaugeMetricFamily("twin_queue_depth", "records waiting in an in-process queue", labels=["queue"])
        for name, depth in dict(s.get("queues", {})).items():
            q.add_metric([str(name)], float(depth))
        yield q
        yield _gauge("twin_spool_depth_records", "records in the disk spool not yet confirmed by the database",
                     float(s.get("spool_depth", 0)))
        yield _gauge("twin_spool_bytes", "bytes in the disk spool not yet confirmed by the database (what "
                     "spool.max_bytes bounds)", float(s.get("spool_bytes", 0)))
        yield _gauge("twin_spool_max_bytes", "spool.max_bytes: the budget for unconfirmed bytes",
                     float(s.get("spool_max_bytes", 0)))
        yield _gauge("twin_spool_disk_bytes", "bytes the spool's segment files take (confirmed prefix included)",
                     float(s.get("spool_disk_bytes", 0)))
        yield _gauge("twin_spool_full", "1 while the spool refuses frames (budget reached or filesystem full)",
                     1.0 if s.get("spool_full") else 0.0)
        yield _gauge("twin_spool_oldest_age_seconds", "age of the oldest unconfirmed record in the spool",
                     float(s.get("spool_age_s", 0)))
        c = GaugeMetricFamily("twin_connector_up", "1 when a connector is connected", labels=["connector"])
        for name, up in dict(s.get("connectors", {})).items():
            c.add_metric([str(name)], 1.0 if up else 0.0)
        yield c
        r = GaugeMetricFamily("twin_recommendations", "recommendations by state (total)", labels=["state"])
        for state, n in dict(s.get("recommendations", {})).items():
            r.add_metric([str(state)], float(n))
        yield r
        m = GaugeMetricFamily("twin_control_mode", "1 for the active control mode", labels=["mode"])
        for mode in ("off", "advisory", "closed_loop"):
            m.add_metric([mode], 1.0 if s.get("mode") == mode else 0.0)
        yield m
        yield _gauge("twin_alarms_active", "active alarms", float(s.get("alarms_active", 0)))
        yield _gauge("twin_quarantined_records", "records quarantined by validation (total)",
                     float(s.get("quarantined", 0)))


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc)
    g.add_metric([], value)
    return g


class Metrics:
    def __init__(self, stats: StatsFn | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.write_latency = Histogram("twin_store_write_seconds", "InfluxDB batch write latency",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.model_latency = Histogram("twin_model_seconds", "model (surrogate / physics) call latency",
                                       ["model"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.recommend_latency = Histogram("twin_recommendation_round_seconds", "one recommendation round",
                                           buckets=LATENCY_BUCKETS, registry=self.registry)
        self.sample_to_recommendation = Histogram(
            "twin_sample_to_recommendation_seconds",
            "a gauge sample received by the connector -> the live recommendation that includes it is ready",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.predictions = Counter("twin_predictions", "predictions made", ["kind"], registry=self.registry)
        self.http_errors = Counter("twin_http_client_errors", "4xx answers by status", ["status"],
                                   registry=self.registry)
        if stats is not None:
            self.registry.register(TwinCollector(stats))

    def render(self) -> bytes:
        return generate_latest(self.registry)
