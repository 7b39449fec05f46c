"""A scenario sets the plant's true parameters (issue 13 item 5): the simulated line then differs from the chain."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import models.process_chain as pc
from simulator.plant import Plant
from simulator.scenario import ScenarioError, parse_scenario


def _run(plant_section: dict | None, steps: int = 700) -> dict[str, float]:
    data = {"noise_scale": 0.0, "batch_variation": 0.0}
    if plant_section is not None:
        data["plant"] = plant_section
    plant = Plant(parse_scenario(data), seed=1, line_id="L", start_time=datetime(2026, 1, 1, tzinfo=UTC))
    out: dict[str, float] = {}
    for _ in range(steps):
        out.update({k: v[0] for k, v in plant.step(1.0).items() if isinstance(v[0], float)})
    return out


def test_default_plant_is_the_literature_chain() -> None:
    out = _run(None)
    ref = pc.flatten(pc.run_chain(electrode="cathode"))
    assert out["Drying.Cathode.MassLoading"] == pytest.approx(float(ref["drying.dry_mass_loading_mg_cm2"]), rel=1e-6)
    assert out["Coating.Cathode.WetFilmThickness"] == pytest.approx(float(ref["coating.wet_film_thickness_um"]),
                                                                    rel=1e-6)


def test_true_parameters_move_the_gauges_as_the_chain_says() -> None:
    true = {"solid_content": 0.66, "rho_active_g_cm3": 4.5, "pump_delivery_efficiency": 0.92,
            "dry_porosity_ref": 0.47}
    out = _run({"cathode": true})
    chain = {k: v for k, v in true.items() if k != "pump_delivery_efficiency"}
    chain["pump_flow_rate_cm3_h"] = pc.CATHODE_PROZELL.pump_flow_rate_cm3_h * 0.92
    ref = pc.flatten(pc.run_chain(chain, "cathode"))
    assert out["Drying.Cathode.MassLoading"] == pytest.approx(float(ref["drying.dry_mass_loading_mg_cm2"]), rel=1e-6)
    assert out["Drying.Cathode.DryFilmThickness"] == pytest.approx(float(ref["drying.dry_film_thickness_um"]),
                                                                   rel=1e-6)
    # the flow meter reads what the pump is told (the lost volume is invisible to it); the caliper sees the film
    assert out["Coating.Cathode.PumpFlowRate"] == pytest.approx(pc.CATHODE_PROZELL.pump_flow_rate_cm3_h)
    assert out["Coating.Cathode.WetFilmThickness"] == pytest.approx(float(ref["coating.wet_film_thickness_um"]))
    # the anode keeps its defaults
    ref_a = pc.flatten(pc.run_chain(electrode="anode"))
    assert out["Drying.Anode.MassLoading"] == pytest.approx(float(ref_a["drying.dry_mass_loading_mg_cm2"]), rel=1e-6)


@pytest.mark.parametrize(("section", "message"), [
    ({"cathode": {"solid_contnet": 0.6}}, "unknown parameter"),
    ({"separator": {"solid_content": 0.6}}, "unknown electrode"),
    ({"cathode": {"solid_content": 1.2}}, "strictly between"),
    ({"cathode": {"pump_delivery_efficiency": "high"}}, "finite number"),
    ({"cathode": {"min_porosity": float("nan")}}, "finite number"),
    ([1, 2], "plant must map"),
])
def test_bad_plant_sections_are_refused_with_the_key(section: object, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_scenario({"plant": section})


def test_the_bundled_mismatch_scenario_is_the_tests_plant() -> None:
    from pathlib import Path

    from simulator.scenario import load_scenario

    from .linerun import MISMATCH
    sc = load_scenario(Path(__file__).resolve().parents[2] / "simulator" / "scenarios" / "mismatch.yaml")
    assert sc.plant == MISMATCH
