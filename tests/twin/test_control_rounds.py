"""A round takes over a live evaluation only when it is newer than the last round's own (issue 15).

The round stores its own evaluation as the loop's live recommendation; the next round took that over as if a gauge
sample had triggered it since, so with no live evaluation in between (an accelerated line, a gauge idle between
rolls, rounds driven in process time) it re-applied the previous round's proposal, computed on the state before the
last write: a duplicate write whose ``before`` is stale.
"""

from __future__ import annotations

from tests.twin.plantsim import Plant, control_settings, new_live
from twin.alarms import AlarmManager
from twin.audit import AuditLog
from twin.auth import Principal, Role
from twin.control import Controller
from twin.plant_model import PhysicsModel
from twin.recommend import Recommender

ENGINEER = Principal("eng", Role.engineer)


async def test_a_round_does_not_reuse_the_previous_rounds_evaluation() -> None:
    plant, live = Plant(seed=3), new_live()
    plant.drifted(live, until_s=4200.0)  # solid content has drifted: mass loading low, the loop has work to do

    async def grant() -> bool:
        return True

    ctl = Controller(Recommender(control_settings(), PhysicsModel(), live), AuditLog(), AlarmManager(), plant.write,
                     grant)
    await ctl.set_mode("closed_loop", ENGINEER, "test")
    first = await ctl.run_round()
    assert plant.writes, f"the first round wrote nothing: {first}"
    n_writes = len(plant.writes)
    plant.run(live, plant.t_s + 60.0)  # new samples, but no live evaluation between the rounds
    second = await ctl.run_round()
    recs = [r for r in second if hasattr(r, "proposal")]
    assert not recs or recs[0].proposal is not first[0].proposal, "the second round re-applied the first's proposal"
    for r in recs:  # a fresh evaluation starts from where the first round's writes left the setpoints
        written = {node: v for node, v in plant.writes[:n_writes]}
        for ch in r.proposal.setpoints:
            if ch.node in written:
                assert ch.before == written[ch.node]
