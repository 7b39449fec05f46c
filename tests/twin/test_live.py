"""Live state, SPC and alarms: EWMA and Cpk against numpy, every alarm kind raised and cleared, bad input refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.alarms import AlarmManager
from twin.live import LiveState
from twin.service_settings import LiveSettings, SpecLimits
from twin.spc import EwmaChart

ML = "Drying/Cathode/MassLoading"


def _live(**kw: object) -> LiveState:
    settings = LiveSettings(specs={ML: SpecLimits(lsl=13.88, usl=14.74, target=14.31)}, window_size=100,
                            stuck_after_samples=5, out_of_spec_stretch_samples=3, missing_after_s=10.0,
                            watched_signals=["DryRoom/DewPoint"], **kw)  # type: ignore[arg-type]
    return LiveState(settings, AlarmManager())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=13.0, max_value=15.5, allow_nan=False), min_size=2, max_size=200))
def test_spc_matches_numpy(xs: list[float]) -> None:
    c = EwmaChart(target=14.31, lsl=13.88, usl=14.74, lam=0.2, L=3.0)
    for i, x in enumerate(xs):
        c.add(x, position_m=float(i))
    a = np.asarray(xs)
    assert c.mean == pytest.approx(a.mean(), abs=1e-9)
    z = 14.31
    for x in xs:
        z = 0.2 * x + 0.8 * z
    assert c.z == pytest.approx(z, abs=1e-9)
    sd = a.std(ddof=1)
    if sd > 1e-9:
        assert c.cpk == pytest.approx(min(14.74 - a.mean(), a.mean() - 13.88) / (3 * sd), rel=1e-6, abs=1e-9)
    lcl, ucl = c.limits()
    assert lcl <= 14.31 <= ucl
    assert len(c.points) == len(xs)


def test_spc_refuses_non_finite() -> None:
    with pytest.raises(ValueError, match="finite"):
        EwmaChart(target=1, lsl=0, usl=2).add(math.nan)
    with pytest.raises(ValueError, match="lsl < usl"):
        SpecLimits(lsl=2, usl=1)
    with pytest.raises(ValueError, match="outside"):
        SpecLimits(lsl=1, usl=2, target=3)


def test_alarms_raise_clear_and_ack() -> None:
    live = _live()
    al = live.alarms
    t = 1_700_000_000_000_000_000
    # dew point above the limit, then back
    live.update("DryRoom/DewPoint", -35.0, t)
    assert al.is_active("dew_point_high", "DryRoom/DewPoint")
    live.update("DryRoom/DewPoint", -45.0, t + 1)
    assert not al.is_active("dew_point_high", "DryRoom/DewPoint")
    # out-of-spec stretch on one roll, with its positions
    for i in range(3):
        live.update(ML, 13.5, t + i, roll="CR-C-000001", position_m=10.0 + i)
    a = next(x for x in al.list() if x.kind == "out_of_spec_stretch")
    assert a.details["from_m"] == 10.0 and a.details["to_m"] == 12.0 and a.severity == "critical"
    live.update(ML, 14.3, t + 10, roll="CR-C-000001", position_m=13.0)
    assert not a.active
    # stuck: the same value five times
    for i in range(5):
        live.update(ML, 14.2, t + 20 + i, roll="CR-C-000001", position_m=14.0 + i)
    assert al.is_active("sensor_stuck", ML)
    live.update(ML, 14.25, t + 30, roll="CR-C-000001", position_m=20.0)
    assert not al.is_active("sensor_stuck", ML)
    # bad quality: shown as latest, never charted
    n_before = live.charts[(ML, "CR-C-000001")].n
    live.update(ML, math.nan, t + 31, quality="bad", roll="CR-C-000001")
    assert al.is_active("sensor_bad", ML) and live.value(ML).quality == "bad"  # type: ignore[union-attr]
    assert live.charts[(ML, "CR-C-000001")].n == n_before
    # missing: no sample for longer than missing_after_s
    missing = live.check_missing(now_mono=live.latest[ML].received_mono + 11.0)
    assert ML in missing and al.is_active("sensor_missing", ML)
    # ack: an alarm stays listed until cleared and acknowledged
    oos = a.id
    al.ack(oos, "op")
    assert all(x.id != oos for x in al.list()) and any(x.id == oos for x in al.list(include_history=True))
    with pytest.raises(KeyError, match="no alarm"):
        al.ack(99999, "op")
    with pytest.raises(ValueError, match="unknown alarm kind"):
        al.raise_("volcano", "x", "y")


def test_windows_and_snapshot_are_json_safe() -> None:
    live = _live()
    for i in range(150):
        live.update(ML, 14.0 + i * 0.001, 1000 + i, unit="mg/cm2", roll="CR-C-000001", position_m=i * 0.1)
    t, v = live.window(ML)
    assert len(v) == 100 and t[0] == 1050  # bounded by window_size
    t2, _ = live.window(ML, since_ns=1140)
    assert len(t2) == 10
    live.update(ML, math.inf, 2000, quality="bad")
    snap = live.snapshot()
    assert snap["signals"][ML]["value"] is None  # inf never reaches JSON
    assert live.stats(ML)["n"] == 100  # type: ignore[index]
