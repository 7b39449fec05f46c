"""The twin's per-station loops on the simulator's plant physics in-process (simulated time): safety, not score.

Short runs of scenarios from the family (simulator.scenario.draw_scenario) through tests/twin/familysim.py: every write
within the hard bounds and the maximum step from the plant's own setpoint, audited, none without the grant; a gauge
dropout drops the closed loop to advisory with an alarm; no setpoint moved back against its last move within the
loop's dwell; the closed loop engages within one transport delay of the line starting, before the calender's caliper
has seen material. The score against open loop and a tuned PI is tests/bench/bench_control_family.py.
"""

from __future__ import annotations

import pytest

from simulator.scenario import FamilyRanges, draw_scenario
from tests.twin.familysim import PUMP_SP, cathode_product, run_twin

PHYSICS = "physics"  # the exact chain: fast, and the surrogate adds nothing to the safety properties
TRANSPORT_DELAY_S = 7.0 / 1.0 * 60.0  # beta gauge 7 m after the die at the nominal 1 m/min

pytestmark = pytest.mark.timeout(240)


def _limits() -> dict[str, tuple[float, float, float, float]]:
    product, _ = cathode_product()
    return {m.setpoint_node: (m.low, m.high, m.max_step, loop.dwell_s)
            for loop in product.loops.values() for m in loop.manipulated}


async def test_writes_bounded_audited_granted_and_dropout_falls_back() -> None:
    quiet = FamilyRanges(speed_steps=(1, 1), dropouts=(1, 1), dropout_at_s=(2400.0, 2400.0), dropout_s=(60.0, 60.0),
                         dropout_nodes=("Drying.Cathode.MassLoading",))
    sc = draw_scenario(5, quiet)
    run = await run_twin(sc, 5, 3600.0, PHYSICS, grant_off_at_s=3000.0)
    limits = _limits()
    assert run.writes, "the twin never wrote"
    assert not run.violations, run.violations
    for w in run.writes:
        low, high, step, _ = limits[w.node]
        assert low <= w.after <= high and abs(w.after - w.before) <= step * (1 + 1e-9), w
        assert w.t_s < 3000.0, f"a write after the grant was withdrawn: {w}"
    audit = [e.to_dict() for e in run.audit.list(limit=100_000)]  # type: ignore[attr-defined]
    audited = [e for e in audit if e["action"] == "write"]
    assert len(audited) == len(run.writes)
    assert all(e["who"].startswith("closed-loop") and e["model_version"] and e["before"] is not None
               for e in audited)
    # the dropout (at 2400 s) and the withdrawn grant (3000 s) each drop the loop to advisory, audited and alarmed
    fallbacks = [e for e in audit if e["action"] == "fallback"]
    assert run.fallbacks == len(fallbacks) >= 2, fallbacks
    assert any("MassLoading" in e["why"] for e in fallbacks)
    assert any("grant" in e["why"] for e in fallbacks)
    assert run.controller.alarms.is_active("control_fallback", "control")  # type: ignore[attr-defined]
    # engaged from the first round, well within one transport delay, the coating loop moving before the calender
    # caliper has any reading (the first coated roll is not calendered yet)
    assert run.engaged_s is not None and run.engaged_s <= TRANSPORT_DELAY_S
    first = run.first_move_s
    assert first[f"PilotLine/{PUMP_SP.replace('.', '/')}"] <= TRANSPORT_DELAY_S + 120.0


async def test_no_setpoint_moves_back_within_its_dwell() -> None:
    # no measured disturbance changes (no batch steps, no speed steps): nothing lifts the dwell
    steady = FamilyRanges(solid_content_per_batch_abs=(0.0, 0.0), batch_variation=(0.0, 0.0), speed_steps=(0, 0),
                          dropouts=(0, 0), noise_scale=(2.0, 2.0), pump_wear_per_h=(0.05, 0.05),
                          compaction_resistance_per_h_abs=(0.08, 0.08))
    sc = draw_scenario(2, steady)
    run = await run_twin(sc, 2, 5400.0, PHYSICS)
    limits = _limits()
    assert not run.violations, run.violations
    last: dict[str, tuple[float, float]] = {}
    moves = 0
    for w in run.writes:
        direction = 1.0 if w.after > w.before else -1.0
        if w.node in last:
            t_prev, d_prev = last[w.node]
            dwell = limits[w.node][3]
            assert direction == d_prev or w.t_s - t_prev >= dwell, (
                f"{w.node} moved back {w.t_s - t_prev:.0f} s after its last move (dwell {dwell} s)")
        last[w.node] = (w.t_s, direction)
        moves += 1
    assert moves >= 3, "too few moves to say anything about the dwell"
