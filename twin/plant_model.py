"""The model the recommender optimises on: process-chain physics, or the ONNX surrogates when they are loaded.

Both answer ``evaluate(electrode, inputs) -> {"step.output": array}`` for a batch of input rows, plus a domain check
and a model version, so the recommender does not care which one it has. The physics is exact for the simulator's
plant (it is the same chain) apart from the disturbances the bias estimator learns; the surrogate adds a standard
deviation that lowers the recommendation's confidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from models import process_chain

# Domain of validity of the physics as the twin uses it (inputs outside are refused, not extrapolated): the ranges
# the process-chain tests and the surrogate design space of issue 3 cover. Units in the names.
PHYSICS_DOMAIN: dict[str, tuple[float, float]] = {
    "pump_flow_rate_cm3_h": (300.0, 1400.0),
    "web_speed_m_min": (0.3, 3.0),
    "coating_width_mm": (50.0, 300.0),
    "solid_content": (0.35, 0.85),
    "line_load_N_mm": (5.0, 200.0),
    "roll_temperature_C": (15.0, 120.0),
}


@dataclass
class ModelAnswer:
    outputs: dict[str, np.ndarray]
    std: dict[str, np.ndarray] = field(default_factory=dict)
    in_domain: np.ndarray | None = None
    violations: list[str] = field(default_factory=list)
    model_version: str = ""


class PlantModel(Protocol):
    version: str

    def evaluate(self, electrode: str, inputs: Mapping[str, Any]) -> ModelAnswer: ...

    def check_domain(self, inputs: Mapping[str, float]) -> list[str]: ...


class PhysicsModel:
    """``models.process_chain`` (seed 001 eq. 8-16), vectorised over rows."""

    version = "process_chain@seed001-eq8-16"

    def __init__(self, domain: Mapping[str, tuple[float, float]] | None = None) -> None:
        self.domain = dict(PHYSICS_DOMAIN if domain is None else domain)

    def check_domain(self, inputs: Mapping[str, float]) -> list[str]:
        bad = []
        for name, value in inputs.items():
            lo_hi = self.domain.get(name)
            v = float(value)
            if not np.isfinite(v):
                bad.append(f"{name}={v} is not finite")
            elif lo_hi is not None and not lo_hi[0] <= v <= lo_hi[1]:
                bad.append(f"{name}={v:g} outside [{lo_hi[0]:g}, {lo_hi[1]:g}]")
        return bad

    def evaluate(self, electrode: str, inputs: Mapping[str, Any]) -> ModelAnswer:
        result = process_chain.flatten(process_chain.run_chain(dict(inputs), electrode))
        return ModelAnswer(outputs=dict(result), model_version=self.version)


class RegistryModel:
    """A surrogate from ``models.runtime.ModelRegistry``; falls back to the physics for outputs it does not have.

    ``name`` is the registry model; its card lists the inputs it needs and their ranges (the domain).
    """

    def __init__(self, registry: Any, name: str, fallback: PhysicsModel | None = None) -> None:
        self.registry = registry
        self.name = name
        self.fallback = fallback or PhysicsModel()
        card = registry.card(name)
        self.card = card
        self.version = f"{name}@{getattr(card, 'version', None) or _get(card, 'version', '?')}"

    def check_domain(self, inputs: Mapping[str, float]) -> list[str]:
        return self.fallback.check_domain(inputs)

    def evaluate(self, electrode: str, inputs: Mapping[str, Any]) -> ModelAnswer:
        physics = self.fallback.evaluate(electrode, inputs)
        try:
            res = self.registry.predict(self.name, {"electrode": electrode, **dict(inputs)})
        except (KeyError, ValueError):
            return physics
        outputs = dict(physics.outputs)
        std: dict[str, np.ndarray] = {}
        for key, value in dict(getattr(res, "outputs", {})).items():
            outputs[key] = np.asarray(value, dtype=float)
        for key, value in dict(getattr(res, "std", {}) or {}).items():
            std[key] = np.asarray(value, dtype=float)
        in_domain = getattr(res, "in_domain", None)
        return ModelAnswer(outputs=outputs, std=std,
                           in_domain=None if in_domain is None else np.asarray(in_domain, dtype=bool),
                           violations=[str(v) for v in (getattr(res, "violations", None) or [])],
                           model_version=str(getattr(res, "model_version", self.version)))


def _get(obj: Any, key: str, default: Any) -> Any:
    return obj.get(key, default) if isinstance(obj, Mapping) else default
