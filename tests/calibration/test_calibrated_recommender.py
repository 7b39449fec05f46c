"""The recommender optimises on the calibrated model once a version is accepted (issue 13 item 2)."""

from __future__ import annotations

import math

import numpy as np

from tests.twin.plantsim import Plant, control_settings, new_live
from twin.calibration import CalibratedModel, Calibration
from twin.calibration import parameters as cp
from twin.plant_model import PhysicsModel
from twin.recommend import Proposal, Recommender
from twin.service_settings import CalibrationSettings


def _mass_loading_bias(model: object) -> tuple[float, str]:
    plant, live = Plant(), new_live()
    plant.drifted(live)  # the plant's solid content is 0.66 (literature 0.70): the loading reads low
    p = Recommender(control_settings(), model, live).recommend("Cathode")  # type: ignore[arg-type]
    assert isinstance(p, Proposal), p
    ml = next(e for e in p.expected if e.signal.endswith("MassLoading"))
    return ml.bias, p.model_version


def test_a_calibrated_solid_content_takes_the_bias_out_of_the_recommendation() -> None:
    cal = Calibration(CalibrationSettings(state_file=None), "L", control_settings())
    est = cal.get("cathode")
    before, version = _mass_loading_bias(CalibratedModel(PhysicsModel(), cal))
    assert version == PhysicsModel.version  # version 0 accepted: the configured model answers
    i = cp.NAMES.index("solid_content")
    est.filter.x[i] = math.log(0.66 / 0.70)
    est.filter.P = np.diag(np.full(len(cp.NAMES), 1e-6))
    est.observations = 1
    cal.accept("cathode", "eng", "lab: solid content 66 %")
    after, version = _mass_loading_bias(CalibratedModel(PhysicsModel(), cal))
    assert version == "process_chain+calibration@cathode:1"
    assert before < -0.5 and abs(after) < 0.15 * abs(before), (before, after)


def test_the_whole_cell_surrogate_call_is_withdrawn_once_calibrated() -> None:
    class Surrogate:
        version = "structure@1"

        def predict_raw(self, per_electrode: object) -> str:
            return "literature"

    cal = Calibration(CalibrationSettings(state_file=None), "L", control_settings())
    model = CalibratedModel(Surrogate(), cal)  # type: ignore[arg-type]
    assert getattr(model, "predict_raw", None) is not None
    cal.get("cathode").observations = 1
    cal.accept("cathode", "eng", "test")
    assert getattr(model, "predict_raw", None) is None
