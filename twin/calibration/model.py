"""The plant model the twin predicts and recommends with: the process chain with the accepted calibrated parameters.

Until a version other than the literature one is accepted for an electrode, the configured model (ONNX surrogate or
physics) answers unchanged. Once one is, that electrode is evaluated on the process chain with the calibrated values
(twin/calibration/parameters.py ``evaluate``): the surrogates were trained at the literature parameters and cannot
take solid content, densities, drying and compaction parameters outside their design (retraining them from a
calibrated set is issue 13 item 3). The version string names the calibration version, so every prediction and
recommendation says which parameters it was made with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from twin.calibration import parameters as cp
from twin.calibration.manager import Calibration, model_version
from twin.plant_model import PHYSICS_DOMAIN, ModelAnswer, PlantModel, domain_violations


class CalibratedModel:
    def __init__(self, base: PlantModel, calibration: Calibration) -> None:
        self.base = base
        self.calibration = calibration

    def __getattr__(self, name: str) -> Any:  # predict_raw, registry, card ... of the configured model
        if name == "predict_raw" and any(self._version(e) is not None for e in ("cathode", "anode")):
            # the surrogate's whole-cell call would answer at the literature parameters: once calibrated, a cell's
            # structure comes from its electrodes' segment predictions (twin/predict.py without predict_raw)
            raise AttributeError(name)
        return getattr(self.base, name)

    def _version(self, electrode: str) -> Any:
        if not self.calibration.settings.apply_to_models:
            return None
        return self.calibration.accepted(electrode)

    @property
    def version(self) -> str:
        parts = [f"{e}:{v.number}" for e in ("cathode", "anode") if (v := self._version(e)) is not None]
        return self.base.version if not parts else f"process_chain+calibration@{','.join(parts)}"

    def domain(self, electrode: str) -> dict[str, tuple[float, float]]:
        return dict(PHYSICS_DOMAIN) if self._version(electrode) is not None else self.base.domain(electrode)

    def check_domain(self, inputs: Mapping[str, float], electrode: str = "cathode") -> list[str]:
        if self._version(electrode) is None:
            return self.base.check_domain(inputs, electrode)
        return domain_violations(inputs, PHYSICS_DOMAIN)

    def evaluate(self, electrode: str, inputs: Mapping[str, Any]) -> ModelAnswer:
        v = self._version(electrode)
        if v is None:
            return self.base.evaluate(electrode, inputs)
        cal = self.calibration.get(electrode)
        out = cp.evaluate(electrode, inputs, v.values, cal.m_ref)
        return ModelAnswer(outputs={k: np.asarray(x) for k, x in out.items()},
                           model_version=model_version(cal.key, v.number))
