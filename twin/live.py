"""Live state of the line: latest value per signal, rolling windows, SPC per roll, and the alarms they raise.

Fed one sample at a time (``update``; text samples such as a machine's state or the roll it runs: ``update_text``)
from the ingest hook; everything here is O(1) per sample so it keeps up with ingest. Signal keys are
``<station>/<signal>``. Bad-quality samples update ``latest`` (the operator must see them) but never enter SPC or the
windows the recommender uses.

Station state (running / idle / fault / no_data) comes from the station's own state text where it has one
(``live.state_signals``: a PackML-like ``State``, a cycler channel's ``Step``), else from whether its values still
change.
An idle station is not an alarm: its gauges fall silent because no material passes them, so ``check_missing`` does
not raise ``sensor_missing`` for a signal of an idle station.
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


@dataclass
class LatestText:
    """The newest text sample of a signal (a state, a step, an ID the machine shows)."""

    text: str
    time_ns: int
    quality: str
    received_mono: float


StationState = str  # "running" | "idle" | "fault" | "no_data"


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
        self.texts: dict[str, LatestText] = {}
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

    def update_text(self, key: str, text: str, time_ns: int, quality: str = "good") -> None:
        """A text sample: kept as the signal's newest text (a station's state is read from these)."""
        with self._lock:
            self.samples_total += 1
            self.version += 1
            self.texts[key] = LatestText(str(text)[:200], int(time_ns), quality, time.monotonic())

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
                if self._stated(key.rsplit("/", 1)[0]) == "idle":
                    # no material under the gauge: silence is expected, and a missing alarm raised while the
                    # station still ran is cleared once it says it is idle
                    if self.alarms.is_active("sensor_missing", key):
                        self.alarms.clear("sensor_missing", key)
                    continue
                if now_mono - last.received_mono > self.settings.missing_after_s:
                    missing.append(key)
                    self.alarms.raise_("sensor_missing", key, f"no sample from {key} for "
                                       f"{now_mono - last.received_mono:.0f} s", "warning")
                elif self.alarms.is_active("sensor_missing", key):
                    self.alarms.clear("sensor_missing", key)
        return missing

    # -- station state ----------------------------------------------------------------------------------------------
    def _stated(self, station: str) -> StationState | None:
        """What the station's own state text says (running / idle / fault), or None when it has none."""
        for name in self.settings.state_signals:
            t = self.texts.get(f"{station}/{name}")
            if t is None:
                continue
            word = t.text.strip().lower()
            if t.quality == "bad":
                return "fault"
            if word in (w.lower() for w in self.settings.idle_states):
                return "idle"
            if word in (w.lower() for w in self.settings.fault_states):
                return "fault"
            return "running"
        return None

    def station_state(self, station: str, now_mono: float | None = None) -> dict[str, Any]:
        """State of one station (and its sub-stations, e.g. a cycler's channels), with why.

        running / idle / fault from the station's state text where it has one; without one: fault when a signal that
        had good values now reads bad, idle when no new value arrived for ``missing_after_s`` (sources report on
        change), no_data before any sample, else running."""
        now_mono = now_mono if now_mono is not None else time.monotonic()
        prefix = station + "/"
        with self._lock:
            stated = self._stated(station)
            newest = max((v.received_mono for k, v in self.latest.items() if k.startswith(prefix)
                          and "/" not in k[len(prefix):]), default=None)
            # bad after good: a value that never was good is a variable the machine has not written yet
            bad = sorted(k for k, v in self.latest.items() if k.startswith(prefix) and "/" not in k[len(prefix):]
                         and v.quality == "bad" and k in self._windows)
            text = next((self.texts[f"{station}/{n}"].text for n in self.settings.state_signals
                         if f"{station}/{n}" in self.texts), None)
        if stated is not None:
            return {"state": stated, "why": f"the station says {text!r}", "text": text}
        if newest is None:
            return {"state": "no_data", "why": "no sample yet", "text": None}
        if bad:
            return {"state": "fault", "why": f"bad-quality value of {', '.join(bad[:3])}", "text": None}
        if now_mono - newest > self.settings.missing_after_s:
            # sources report on change: nothing new for a while is a machine at rest, not one gone (a lost
            # connection is the connector_down alarm)
            return {"state": "idle", "why": f"no new value for {now_mono - newest:.0f} s", "text": None}
        return {"state": "running", "why": "values changing", "text": None}

    def station_states(self, now_mono: float | None = None) -> dict[str, dict[str, Any]]:
        """``station_state`` of every station, in one pass over the signals (the live stream sends it every tick)."""
        now_mono = now_mono if now_mono is not None else time.monotonic()
        newest: dict[str, float] = {}
        bad: dict[str, list[str]] = {}
        with self._lock:
            for k, v in self.latest.items():
                st = k.rsplit("/", 1)[0] if "/" in k else ""
                if v.received_mono > newest.get(st, -math.inf):
                    newest[st] = v.received_mono
                if v.quality == "bad" and k in self._windows:
                    bad.setdefault(st, []).append(k)
            stations = set(newest) | {k.rsplit("/", 1)[0] for k in self.texts if "/" in k}
            stated = {st: self._stated(st) for st in stations}
            texts = {st: next((self.texts[f"{st}/{n}"].text for n in self.settings.state_signals
                               if f"{st}/{n}" in self.texts), None) for st in stations}
        out: dict[str, dict[str, Any]] = {}
        for st in sorted(stations):
            if not st:
                continue
            if stated[st] is not None:
                out[st] = {"state": stated[st], "why": f"the station says {texts[st]!r}", "text": texts[st]}
            elif st not in newest:
                out[st] = {"state": "no_data", "why": "no sample yet", "text": None}
            elif bad.get(st):
                out[st] = {"state": "fault", "why": f"bad-quality value of {', '.join(sorted(bad[st])[:3])}",
                           "text": None}
            elif now_mono - newest[st] > self.settings.missing_after_s:
                out[st] = {"state": "idle", "why": f"no new value for {now_mono - newest[st]:.0f} s", "text": None}
            else:
                out[st] = {"state": "running", "why": "values changing", "text": None}
        return out

    def stations(self) -> list[str]:
        """Every station a sample or text has come from."""
        with self._lock:
            keys = list(self.latest) + list(self.texts)
        return sorted({k.rsplit("/", 1)[0] for k in keys if "/" in k})

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
            return {"version": self.version, "signals": {k: v.to_dict() for k, v in self.latest.items()},
                    "texts": {k: {"text": v.text, "time_ns": v.time_ns, "quality": v.quality}
                              for k, v in self.texts.items()}}

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
