"""Station state from the station's own state text, and an idle station is not an alarm: its gauges fall silent
because no material passes them (issue 14: idle stations raised sensor_missing)."""

from __future__ import annotations

from twin.alarms import AlarmManager
from twin.live import LiveState
from twin.service_settings import LiveSettings, SpecLimits

DENSITY = "Calendering/Cathode/CoatingDensity"


def _live() -> LiveState:
    settings = LiveSettings(specs={DENSITY: SpecLimits(lsl=2.87, usl=3.05, target=2.96)}, missing_after_s=10.0)
    return LiveState(settings, AlarmManager())


def test_a_silent_gauge_of_an_idle_station_raises_no_missing_alarm_and_clears_one() -> None:
    live = _live()
    live.update_text("Calendering/Cathode/State", "running", 1)
    live.update(DENSITY, 2.96, 1)
    t0 = live.latest[DENSITY].received_mono
    # the gauge stops while the station says it runs: a real missing sensor
    assert live.check_missing(now_mono=t0 + 11.0) == [DENSITY]
    assert live.alarms.is_active("sensor_missing", DENSITY)
    assert live.station_state("Calendering/Cathode", now_mono=t0 + 11.0)["state"] == "running"
    # the calender finishes its roll and waits for the next: idle, the alarm clears and none is raised again
    live.update_text("Calendering/Cathode/State", "Idle", 2)
    assert live.check_missing(now_mono=t0 + 60.0) == []
    assert not live.alarms.is_active("sensor_missing", DENSITY)
    assert live.station_state("Calendering/Cathode")["state"] == "idle"
    assert not any(a.kind == "sensor_missing" and a.active for a in live.alarms.list())


def test_station_state_words_and_fallbacks() -> None:
    live = _live()
    assert live.station_state("Formation/CH-01")["state"] == "no_data"
    for text, state in (("charge", "running"), ("idle", "idle"), ("FAULT", "fault"), ("rest", "running")):
        live.update_text("Formation/CH-01/Step", text, 1)
        got = live.station_state("Formation/CH-01")
        assert got["state"] == state and got["text"] == text, (text, got)
    # no state text: running while values change, idle once nothing new comes (sources report on change), fault
    # when a signal that had good values reads bad; bad before any good value is a variable not written yet
    live.update("Coating/Cathode/WebSpeed", 1.0, 1)
    t0 = live.latest["Coating/Cathode/WebSpeed"].received_mono
    assert live.station_state("Coating/Cathode", now_mono=t0 + 1)["state"] == "running"
    assert live.station_state("Coating/Cathode", now_mono=t0 + 30)["state"] == "idle"
    live.update("Coating/Cathode/PumpFlowRate", float("nan"), 2, quality="bad")
    assert live.station_state("Coating/Cathode")["state"] == "running"
    live.update("Coating/Cathode/PumpFlowRate", 700.0, 3)
    live.update("Coating/Cathode/PumpFlowRate", float("nan"), 4, quality="bad")
    assert live.station_state("Coating/Cathode")["state"] == "fault"
    # a sub-station's signals are its own: the channel's Step says nothing of the cycler as a whole
    assert live.station_state("Formation")["state"] == "no_data"
    assert "Formation/CH-01" in live.stations() and "Coating/Cathode" in live.stations()
    assert live.snapshot()["texts"]["Formation/CH-01/Step"]["text"] == "rest"
    # all stations at once, as the live stream sends them: the same answers as one by one
    now = t0 + 30
    assert live.station_states(now_mono=now) == {st: live.station_state(st, now_mono=now) for st in live.stations()}
