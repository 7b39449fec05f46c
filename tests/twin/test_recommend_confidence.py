"""The recommender's confidence is a probability: of the proposals with confidence p, about p land within tolerance.

Scenarios on the process-chain physics with gauge noise, model-plant mismatch and drift (tests/twin/reliability.py);
the full reliability table with more scenarios is in tests/bench/bench_models.py.
"""

from __future__ import annotations

import numpy as np

from tests.twin import reliability
from tests.twin.plantsim import control_settings, new_live
from twin.plant_model import PhysicsModel
from twin.recommend import Proposal, Recommender


def test_of_proposals_with_confidence_p_about_p_land_within_tolerance() -> None:
    out = reliability.run(range(300), PhysicsModel())
    assert out["proposals"] >= 250
    for row in out["table"]:
        if row["count"] >= 15:
            assert abs(row["observed_fraction"] - row["mean_confidence"]) <= 0.12, row
    confident = [r for r in out["table"] if r["p_low"] >= 0.9]
    n = sum(r["count"] for r in confident)
    landed = sum(r["count"] * r["observed_fraction"] for r in confident) / n
    assert n >= 10 and landed >= 0.9, confident  # before issue 13: p ~ 0.997 landed 79 %
    assert out["brier"] < 0.02 and out["brier"] < out["legacy_brier"]


def test_a_noisy_gauge_lowers_the_confidence_even_when_the_model_is_exact() -> None:
    """Gauge noise equal to the tolerance: a single reading is within ±1 tolerance about 68 % of the time however
    well the setpoints are chosen, so a confidence near 1 would be a false promise."""
    settings = control_settings(bias_samples=40)
    live = new_live()
    rng = np.random.default_rng(3)
    t0 = 1_700_000_000_000_000_000
    for i in range(400):
        t_ns = t0 + i * 2_000_000_000
        live.update("Coating/Cathode/PumpFlowRate", 660.0, t_ns)
        live.update("Calendering/Cathode/LineLoad", 84.0, t_ns)
        live.update("Coating/Cathode/WebSpeed", 1.0, t_ns)
        live.update("Drying/Cathode/MassLoading", 13.6 + rng.normal(0, 0.2), t_ns)  # tolerance 0.2
        live.update("Calendering/Cathode/Density", 2.96 + rng.normal(0, 0.002), t_ns)
    p = Recommender(settings, PhysicsModel(), live).recommend("Cathode")
    assert isinstance(p, Proposal), p
    ml = next(e for e in p.expected if e.signal.endswith("MassLoading"))
    assert 0.15 < ml.noise_std < 0.25
    assert ml.probability < 0.72
    assert p.confidence == np.prod([e.probability for e in p.expected])
    assert reliability._legacy_probability(ml) > 0.95  # what the old formula promised
