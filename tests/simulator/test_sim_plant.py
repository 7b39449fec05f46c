"""The plant in-process: Table A1 at nominal, the +5 % pump step after its transport delay, physics properties."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import models.process_chain as pc
from simulator.plant import Plant
from simulator.scenario import load_scenario
from simulator.web_lane import BETA_GAUGE_M, WET_CALIPER_M
from tests.simulator.sim_helpers import START, plant, quiet, run

# Seed 001 Appendix Table A1 (ProZell cathode): the gauges at nominal setpoints must agree within 1 %.
TABLE_A1 = {
    "Coating.Cathode.WetFilmThickness": 92.8,
    "Coating.Cathode.WetMassLoading": 20.5,
    "Drying.Cathode.MassLoading": 14.3,
    "Drying.Cathode.DryFilmThickness": 59.2,
    "Drying.Cathode.Porosity": 43.9,
    "Drying.Cathode.CoatingDensity": 2.42,
    "Calendering.Cathode.CalenderedThickness": 48.5,
    "Calendering.Cathode.Porosity": 31.5,
    "Calendering.Cathode.CoatingDensity": 2.95,
    "Calendering.Cathode.ActiveVolumeFraction": 0.58,
    "Mixing.Cathode.SlurryDensity": 2.20,
    "Mixing.Cathode.SolidContent": 70.0,
}


def test_nominal_cathode_reproduces_table_a1_without_noise() -> None:
    last = run(plant(), 1500)
    for path, expected in TABLE_A1.items():
        value, status = last[path]
        assert status == "Good"
        assert value == pytest.approx(expected, rel=0.01), path


def test_nominal_cathode_reproduces_table_a1_on_average_with_noise() -> None:
    """With instrument noise on, the mean of many gauge samples still lands within 1 % of Table A1."""
    p = plant(quiet(noise_scale=1.0))
    sums = {k: 0.0 for k in TABLE_A1}
    counts = {k: 0 for k in TABLE_A1}
    for _ in range(2400):
        out = p.step(1.0)
        for k in TABLE_A1:
            if k in out and out[k][1] == "Good":
                sums[k] += out[k][0]
                counts[k] += 1
    for k, expected in TABLE_A1.items():
        assert counts[k] > 300, k
        assert sums[k] / counts[k] == pytest.approx(expected, rel=0.01), k


def test_pump_step_moves_mass_loading_five_percent_after_the_transport_delay() -> None:
    p = plant(quiet(line={"roll_length_m": 100}))
    run(p, 600)
    base = p.step(1.0)["Drying.Cathode.MassLoading"][0]
    p.set_setpoint("Coating.Cathode.PumpFlowRateSetpoint", 696.0 * 1.05)
    delay_s = BETA_GAUGE_M / 1.0 * 60.0  # 7 m at 1 m/min
    before = run(p, delay_s - 10)["Drying.Cathode.MassLoading"][0]
    assert before == pytest.approx(base, rel=1e-9), "the beta gauge must not see the step before the web gets there"
    after = run(p, 60)["Drying.Cathode.MassLoading"][0]  # 5 pump time constants later
    assert after / base == pytest.approx(1.05, rel=1e-3)
    wet = p.step(1.0)["Coating.Cathode.WetFilmThickness"][0]
    assert wet == pytest.approx(92.8 * 1.05, rel=1e-3)
    assert WET_CALIPER_M < BETA_GAUGE_M


def test_line_load_step_thins_the_calendered_film() -> None:
    p = plant()
    before = run(p, 1500)["Calendering.Cathode.CalenderedThickness"][0]
    p.set_setpoint("Calendering.Cathode.LineLoadSetpoint", 120.0)
    after = run(p, 120)["Calendering.Cathode.CalenderedThickness"][0]
    expected = pc.run_chain({"line_load_N_mm": 120.0})["calendering"]["calendered_thickness_um"]
    assert after < before
    assert after == pytest.approx(float(expected), rel=0.002)


def test_setpoint_outside_range_or_unknown_is_refused_and_changes_nothing() -> None:
    p = plant()
    with pytest.raises(ValueError, match="EURange"):
        p.set_setpoint("Coating.Cathode.PumpFlowRateSetpoint", 5000.0)
    with pytest.raises(ValueError, match="not a setpoint"):
        p.set_setpoint("Drying.Cathode.MassLoading", 1.0)
    assert p.setpoint("Coating.Cathode.PumpFlowRateSetpoint") == 696.0


def test_genealogy_ids_and_events_follow_the_contract() -> None:
    import re

    p = plant()
    run(p, 2400)
    events = p.trace.drain()
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1))
    pattern = re.compile(r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)+$")
    kinds = {(e["kind"], e["type"]) for e in events}
    for needed in ("RawMaterialLot", "SlurryBatch", "CoatedRoll", "RollSegment", "CalenderedRoll", "SlitCoil",
                   "ElectrodeSheet", "CellStack", "Cell", "FormationRun"):
        assert ("created", needed) in kinds, needed
    created: set[str] = set()
    for e in events:
        assert pattern.match(e["id"]) and len(e["id"]) <= 64, e["id"]
        for i in e["inputs"]:
            assert i["id"] in created, f"{e['id']} names input {i['id']} before it was created"
        if e["kind"] == "created":
            created.add(e["id"])
    sheets = [e for e in events if e["type"] == "ElectrodeSheet" and e["kind"] == "created"]
    c_sheet = next(e for e in sheets if e["id"].startswith("ES-C-"))
    (coil,) = c_sheet["inputs"]
    assert coil["id"].startswith("SC-C-") and coil["to_m"] - coil["from_m"] == pytest.approx(2.0)
    a_sheet = next(e for e in sheets if e["id"].startswith("ES-A-"))
    assert a_sheet["inputs"][0]["to_m"] - a_sheet["inputs"][0]["from_m"] == pytest.approx(2.1)
    fr = next(e for e in events if e["type"] == "FormationRun")
    assert fr["inputs"][0]["type"] == "Cell" and fr["equipment"].startswith("CH-")


def test_formation_result_follows_the_cell_structure() -> None:
    """Heavier cathode coating -> more capacity: the cycler result is tied to the roll stretch the sheets came from."""
    caps = []
    for flow in (696.0, 760.0):
        p = plant(quiet(setpoints={"Coating.Cathode.PumpFlowRateSetpoint": flow}))
        run(p, 2400)
        results = [m for _, m in p.formation.messages if m["schema"] == "pilotline.cycler.result.v1"]
        assert results
        caps.append(results[0]["charge_capacity_Ah"])
    assert caps[1] / caps[0] == pytest.approx(760.0 / 696.0, rel=0.01)


@settings(max_examples=40, deadline=None)
@given(flow=st.floats(300, 1500), speed=st.floats(0.3, 3.0), solids=st.floats(0.4, 0.85))
def test_mass_balance_dry_equals_wet_times_solid_content(flow: float, speed: float, solids: float) -> None:
    r = pc.run_chain({"pump_flow_rate_cm3_h": flow, "web_speed_m_min": speed, "solid_content": solids})
    assert float(r["drying"]["dry_mass_loading_mg_cm2"]) == pytest.approx(
        float(r["coating"]["wet_mass_loading_mg_cm2"]) * solids, rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(flow=st.floats(300, 1500), speed=st.floats(0.3, 3.0), load=st.floats(10, 250), factor=st.floats(1.01, 1.5))
def test_monotonic_responses(flow: float, speed: float, load: float, factor: float) -> None:
    base = {"pump_flow_rate_cm3_h": flow, "web_speed_m_min": speed, "line_load_N_mm": load}
    r0 = pc.flatten(pc.run_chain(base))
    more_flow = pc.flatten(pc.run_chain(base | {"pump_flow_rate_cm3_h": flow * factor}))
    faster = pc.flatten(pc.run_chain(base | {"web_speed_m_min": speed * factor}))
    harder = pc.flatten(pc.run_chain(base | {"line_load_N_mm": load * factor}))
    assert more_flow["drying.dry_mass_loading_mg_cm2"] > r0["drying.dry_mass_loading_mg_cm2"]
    assert faster["drying.dry_mass_loading_mg_cm2"] < r0["drying.dry_mass_loading_mg_cm2"]
    assert harder["calendering.calendered_thickness_um"] < r0["calendering.calendered_thickness_um"]
    assert harder["calendering.calendered_porosity"] < r0["calendering.calendered_porosity"]


@settings(max_examples=40, deadline=None)
@given(load=st.floats(0, 300), temp=st.floats(15, 120))
def test_volume_fractions_and_porosity_sum_to_one(load: float, temp: float) -> None:
    c = pc.run_chain({"line_load_N_mm": load, "roll_temperature_C": temp})["calendering"]
    total = sum(float(c[k]) for k in ("active_volume_fraction", "conductive_volume_fraction",
                                      "binder_volume_fraction", "calendered_porosity"))
    assert total == pytest.approx(1.0, abs=1e-12)


@settings(max_examples=15, deadline=None)
@given(flow=st.floats(400, 1200), speed=st.floats(0.5, 2.0))
def test_plant_steady_state_matches_the_process_chain(flow: float, speed: float) -> None:
    """Whatever the setpoints, the settled gauges equal the pure physics (the plant adds only dynamics)."""
    p = plant(quiet(setpoints={"Coating.Cathode.PumpFlowRateSetpoint": flow,
                               "Coating.Cathode.WebSpeedSetpoint": speed}))
    last = run(p, 60.0 * 8.0 / speed, dt=2.0)
    expected = pc.run_chain({"pump_flow_rate_cm3_h": flow, "web_speed_m_min": speed})
    m, _ = last["Drying.Cathode.MassLoading"]
    w, _ = last["Coating.Cathode.WetMassLoading"]
    assert m == pytest.approx(float(expected["drying"]["dry_mass_loading_mg_cm2"]), rel=1e-6)
    assert m == pytest.approx(w * 0.70, rel=1e-6)  # mass balance at the gauges
    assert not math.isnan(m)


def test_drift_scenario_moves_the_product_off_target() -> None:
    """drift.yaml: falling solid content and pump wear thin the cathode coating; compaction resistance rising makes
    the calender compact less, so the calendered porosity climbs (what the twin's closed loop must correct)."""
    sc = load_scenario(Path(__file__).resolve().parents[2] / "simulator" / "scenarios" / "drift.yaml")
    p = Plant(sc, 0, "PL1", START)
    ml, por = [], []
    for _ in range(4 * 3600 // 2):
        out = p.step(2.0)
        if "Drying.Cathode.MassLoading" in out:
            ml.append(out["Drying.Cathode.MassLoading"][0])
        if "Calendering.Cathode.Porosity" in out:
            por.append(out["Calendering.Cathode.Porosity"][0])
    early_ml, late_ml = sum(ml[:100]) / 100, sum(ml[-100:]) / 100
    early_por, late_por = sum(por[:100]) / 100, sum(por[-100:]) / 100
    assert late_ml < 0.95 * early_ml
    assert late_por > early_por + 1.0


def test_same_seed_same_plant_run_down_to_the_cyclers() -> None:
    """The whole plant (gauges, trace events, cycler messages) is a function of seed and scenario."""
    def trace(seed: int) -> tuple[list[object], list[object], list[object]]:
        p = plant(quiet(noise_scale=1.0, batch_variation=1.0), seed=seed)
        outs = [p.step(1.0) for _ in range(2400)]
        return outs, p.trace.drain(), list(p.formation.messages)

    a, b, c = trace(5), trace(5), trace(6)
    assert a == b
    assert a[2] and a[1]
    assert a[0] != c[0] and a[2] != c[2]
