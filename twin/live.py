"""Live state of the line: latest value per signal, rolling windows, SPC per roll, and the alarms they raise.

Fed one sample at a time (``update``) from the ingest hook; everything here is O(1) per sample so it keeps up with
ingest. Signal keys are ``<station>/<signal>``. Bad-quality samples update ``latest`` (the operator must see them)
but never enter SPC or the windows the recommender uses.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from twin.alarms import AlarmManager
from twin.service_settings import LiveSettings
from twin.spc import EwmaChart


@dataclass
class Latest:
    value: float
    time_ns: int
    quality: str
    unit: str | None
    roll: str | None
    position_m: float | None
    received_mono: float

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value if math.isfinite(self.value) else None, "time_ns": self.time_ns,
                "quality": self.quality, "unit": self.unit, "roll": self.roll, "position_m": self.position_m}


class _Ring:
    """A fixed-size window of (time_ns, value) in two numpy arrays: appends are O(1) and a read is two slices, not a
    Python loop over a deque (the recommender reads several windows on every gauge sample)."""

    __slots__ = ("t", "v", "n", "head")

    def __init__(self, size: int) -> None:
        self.t = np.empty(size, dtype=np.int64)
        self.v = np.empty(size, dtype=np.float64)
        self.n = 0
        self.head = 0  # next slot to write

    def append(self, time_ns: int, value: float) -> None:
        self.t[self.head] = time_ns
        self.v[self.head] = value
        self.head = (self.head + 1) % len(self.t)
        self.n = min(self.n + 1, len(self.t))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Oldest first, as fresh copies (the caller may keep them while samples arrive)."""
        if self.n < len(self.t):
            return self.t[: self.n].copy(), self.v[: self.n].copy()
        h = self.head
        return np.concatenate((self.t[h:], self.t[:h])), np.concatenate((self.v[h:], self.v[:h]))


@dataclass
class _Run:
    """Per-signal run-length counters for the stuck / out-of-spec checks."""

    last_value: float | None = None
    same_count: int = 0
    oos_count: int = 0
    oos_from_m: float | None = None


class LiveState:
    def __init__(self, settings: LiveSettings, alarms: AlarmManager) -> None:
        self.settings = settings
        self.alarms = alarms
        self.latest: dict[str, Latest] = {}
        self._windows: dict[str, _Ring] = {}
        self._runs: dict[str, _Run] = {}
        self.charts: dict[tuple[str, str], EwmaChart] = {}
        self._roll_order: deque[tuple[str, str]] = deque()
        self._lock = threading.RLock()
        self.version = 0
        self.samples_total = 0

    # -- ingest -----------------------------------------------------------------------------------------------------
    def update(self, key: str, value: float, time_ns: int, quality: str = "good", unit: str | None = None,
               roll: str | None = None, position_m: float | None = None) -> None:
        now = time.monotonic()
        value = float(value)
        with self._lock:
            self.samples_total += 1
            self.version += 1
            self.latest[key] = Latest(value, int(time_ns), quality, unit, roll, position_m, now)
            good = quality == "good" and math.isfinite(value)
            self._check_quality(key, good, time_ns)
            if not good:
                return
            win = self._windows.get(key)
            if win is None:
                win = self._windows[key] = _Ring(self.settings.window_size)
            win.append(int(time_ns), value)
            self._check_stuck(key, value, time_ns)
            if key == self.settings.dew_point_signal:
                self._check_dew_point(key, value, time_ns)
            spec = self.settings.specs.get(key)
            if spec is not None:
                self._spc(key, value, time_ns, roll or "-", position_m)

    def _check_quality(self, key: str, good: bool, time_ns: int) -> None:
        # only the quality signals and the watched ones alarm: a gauge reading bad before material reaches it is normal
        if key not in self.settings.specs and key not in self.settings.watched_signals:
            return
        if good:
            if self.alarms.is_active("sensor_bad", key):
                self.alarms.clear("sensor_bad", key, time_ns)
        else:
            self.alarms.raise_("sensor_bad", key, f"{key}: bad-quality or non-finite value", "warning", time_ns)

    def _check_stuck(self, key: str, value: float, time_ns: int) -> None:
        run = self._runs.setdefault(key, _Run())
        if run.last_value is not None and value == run.last_value:
            run.same_count += 1
        else:
            run.same_count = 1
            if self.alarms.is_active("sensor_stuck", key):
                self.alarms.clear("sensor_stuck", key, time_ns)
        run.last_value = value
        # Only measured signals can be stuck; setpoint actuals legitimately hold still.
        watched = key in self.settings.specs or key in self.settings.watched_signals
        if run.same_count >= self.settings.stuck_after_samples and watched:
            self.alarms.raise_("sensor_stuck", key, f"{key} repeated {value} {run.same_count} times", "warning",
                               time_ns, value=value)

    def _check_dew_point(self, key: str, value: float, time_ns: int) -> None:
        limit = self.settings.dew_point_limit_C
        if value > limit:
            self.alarms.raise_("dew_point_high", key, f"dew point {value:.1f} degC above the limit {limit} degC",
                               "critical", time_ns, value=value, limit=limit)
        elif self.alarms.is_active("dew_point_high", key):
            self.alarms.clear("dew_point_high", key, time_ns)

    def _spc(self, key: str, value: float, time_ns: int, roll: str, position_m: float | None) -> None:
        spec = self.settings.specs[key]
        chart = self.charts.get((key, roll))
        if chart is None:
            chart = EwmaChart(target=spec.centre, lsl=spec.lsl, usl=spec.usl, lam=self.settings.ewma_lambda,
                              L=self.settings.ewma_L)
            self.charts[(key, roll)] = chart
            self._roll_order.append((key, roll))
            while len(self._roll_order) > 200:  # bounded memory: forget the oldest rolls' charts
                self.charts.pop(self._roll_order.popleft(), None)
        chart.add(value, position_m)
        run = self._runs.setdefault(key, _Run())
        source = f"{key}@{roll}"
        if spec.lsl <= value <= spec.usl:
            run.oos_count, run.oos_from_m = 0, None
            if self.alarms.is_active("out_of_spec_stretch", source):
                self.alarms.clear("out_of_spec_stretch", source, time_ns)
        else:
            if run.oos_count == 0:
                run.oos_from_m = position_m
            run.oos_count += 1
            if run.oos_count >= self.settings.out_of_spec_stretch_samples:
                self.alarms.raise_(
                    "out_of_spec_stretch", source,
                    f"{key} out of spec [{spec.lsl}, {spec.usl}] for {run.oos_count} samples on roll {roll}",
                    "critical", time_ns, roll=roll, from_m=run.oos_from_m, to_m=position_m, value=value)

    # -- periodic checks --------------------------------------------------------------------------------------------
    def check_missing(self, now_mono: float | None = None) -> list[str]:
        """Watched and spec'd signals with no sample for ``missing_after_s``; returns the missing keys."""
        now_mono = now_mono if now_mono is not None else time.monotonic()
        missing = []
        with self._lock:
            for key in set(self.settings.watched_signals) | set(self.settings.specs):
                last = self.latest.get(key)
                if last is None:
                    continue  # never seen: a configuration matter, not a sensor failure
                if now_mono - last.received_mono > self.settings.missing_after_s:
                    missing.append(key)
                    self.alarms.raise_("sensor_missing", key, f"no sample from {key} for "
                                       f"{now_mono - last.received_mono:.0f} s", "warning")
                elif self.alarms.is_active("sensor_missing", key):
                    self.alarms.clear("sensor_missing", key)
        return missing

    # -- reads ------------------------------------------------------------------------------------------------------
    def value(self, key: str) -> Latest | None:
        return self.latest.get(key)

    def window(self, key: str, since_ns: int | None = None,
               until_ns: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Good samples of ``key`` in [since, until] as (time_ns int64, value float64) arrays."""
        with self._lock:
            win = self._windows.get(key)
            if win is None or win.n == 0:
                return np.empty(0, dtype=np.int64), np.empty(0)
            t, v = win.arrays()
        if since_ns is None and until_ns is None:
            return t, v
        mask = np.ones(len(t), dtype=bool)
        if since_ns is not None:
            mask &= t >= since_ns
        if until_ns is not None:
            mask &= t <= until_ns
        return t[mask], v[mask]

    def stats(self, key: str) -> dict[str, Any] | None:
        _, v = self.window(key)
        if len(v) == 0:
            return None
        return {"n": int(len(v)), "mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                "min": float(v.min()), "max": float(v.max())}

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"version": self.version, "signals": {k: v.to_dict() for k, v in self.latest.items()}}

    def spc(self, key: str | None = None, roll: str | None = None, with_points: bool = False) -> list[dict[str, Any]]:
        with self._lock:
            out = []
            for (k, r), chart in self.charts.items():
                if (key is not None and k != key) or (roll is not None and r != roll):
                    continue
                item = {"signal": k, "roll": r, **chart.summary()}
                if with_points:
                    item["points"] = [list(p) for p in chart.points]
                out.append(item)
            return out

    def rolls(self) -> list[str]:
        with self._lock:
            return list(dict.fromkeys(r for _, r in self._roll_order))
