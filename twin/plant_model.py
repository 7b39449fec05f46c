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


def domain_violations(inputs: Mapping[str, float], ranges: Mapping[str, tuple[float, float]],
                      source: str = "") -> list[str]:
    """Every input that is not finite or lies outside its range, as a sentence naming the value and the range."""
    bad = []
    for name, value in inputs.items():
        v = float(value)
        lo_hi = ranges.get(name)
        if not np.isfinite(v):
            bad.append(f"{name}={v} is not finite")
        elif lo_hi is not None and not lo_hi[0] <= v <= lo_hi[1]:
            bad.append(f"{name}={v:g} outside [{lo_hi[0]:g}, {lo_hi[1]:g}]{source}")
    return bad


@dataclass
class ModelAnswer:
    outputs: dict[str, np.ndarray]
    std: dict[str, np.ndarray] = field(default_factory=dict)
    in_domain: np.ndarray | None = None
    violations: list[str] = field(default_factory=list)
    model_version: str = ""


class PlantModel(Protocol):
    @property
    def version(self) -> str: ...

    def evaluate(self, electrode: str, inputs: Mapping[str, Any]) -> ModelAnswer: ...

    def check_domain(self, inputs: Mapping[str, float], electrode: str = "cathode") -> list[str]: ...

    def domain(self, electrode: str) -> dict[str, tuple[float, float]]: ...


class PhysicsModel:
    """``models.process_chain`` (seed 001 eq. 8-16), vectorised over rows."""

    version = "process_chain@seed001-eq8-16"

    def __init__(self, domain: Mapping[str, tuple[float, float]] | None = None) -> None:
        self.domain_ranges = dict(PHYSICS_DOMAIN if domain is None else domain)

    def domain(self, electrode: str) -> dict[str, tuple[float, float]]:
        return dict(self.domain_ranges)

    def check_domain(self, inputs: Mapping[str, float], electrode: str = "cathode") -> list[str]:
        return domain_violations(inputs, self.domain_ranges)

    def evaluate(self, electrode: str, inputs: Mapping[str, Any]) -> ModelAnswer:
        result = process_chain.flatten(process_chain.run_chain(dict(inputs), electrode))
        return ModelAnswer(outputs=dict(result), model_version=self.version)


class RegistryModel:
    """The ONNX structure surrogate of ``models.runtime`` (card ``structure``): both electrodes in one model, inputs
    ``<electrode>_<process-chain input>`` and outputs ``<electrode>_<process-chain output>`` (plus ``np_ratio``).

    ``evaluate(electrode, inputs)`` fills the electrode's missing inputs, and all of the other electrode's, from the
    process-chain defaults, and answers in the physics' ``step.output`` names with the ensemble std; the card's
    ranges are the domain (checked by the runtime: out-of-domain rows are flagged, never silently used).
    """

    def __init__(self, registry: Any, name: str = "structure") -> None:
        self.registry = registry
        self.name = name
        self.card = registry.card(name)
        self.version = f"{name}@{self.card.get('version', '?')}"
        self.input_names: list[str] = list(registry.inputs(name))
        self.ranges = {i["name"]: (float(i["low"]), float(i["high"])) for i in self.card["inputs"]}
        self._ranges_by_electrode = {
            e: {k[len(e) + 1:]: v for k, v in self.ranges.items() if k.startswith(f"{e}_")}
            for e in process_chain.PARAMETER_SETS
        }
        outputs = [o["name"] if isinstance(o, Mapping) else str(o) for o in self.card["outputs"]]
        physics_keys = process_chain.flatten(process_chain.run_chain({}, "cathode")).keys()
        self._defaults: dict[str, float] | None = None
        # "cathode_dry_mass_loading_mg_cm2" -> (cathode, "drying.dry_mass_loading_mg_cm2")
        self.output_map: dict[str, tuple[str, str]] = {}
        for out in outputs:
            electrode, _, short = out.partition("_")
            match = [k for k in physics_keys if k.split(".", 1)[1] == short]
            if electrode in process_chain.PARAMETER_SETS and match:
                self.output_map[out] = (electrode, match[0])

    def defaults(self) -> dict[str, float]:
        if self._defaults is None:
            self._defaults = self._process_chain_defaults()
        return dict(self._defaults)

    def _process_chain_defaults(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name in self.input_names:
            electrode, _, key = name.partition("_")
            params = process_chain.PARAMETER_SETS.get(electrode)
            if params is not None and hasattr(params, key):
                out[name] = float(getattr(params, key))
        return out

    def surrogate_inputs(self, per_electrode: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """``{"cathode": {...}, "anode": {...}}`` process-chain inputs -> the card's input names (defaults filled)."""
        x: dict[str, Any] = self.defaults()
        for electrode, inputs in per_electrode.items():
            for key, value in inputs.items():
                name = f"{electrode}_{key}"
                if name in x or name in self.input_names:
                    x[name] = value
        missing = [n for n in self.input_names if n not in x]
        if missing:
            raise KeyError(f"surrogate {self.name!r} needs {missing}, which have no process-chain default")
        return x

    def domain(self, electrode: str) -> dict[str, tuple[float, float]]:
        return dict(self._ranges_by_electrode.get(electrode, {}))

    def check_domain(self, inputs: Mapping[str, float], electrode: str = "cathode") -> list[str]:
        return domain_violations(inputs, self._ranges_by_electrode.get(electrode, {}),
                                 f" (surrogate {self.name} card)")

    def predict_raw(self, per_electrode: Mapping[str, Mapping[str, Any]]) -> Any:
        return self.registry.predict(self.name, self.surrogate_inputs(per_electrode))

    def evaluate(self, electrode: str, inputs: Mapping[str, Any]) -> ModelAnswer:
        res = self.predict_raw({electrode: inputs})
        outputs: dict[str, np.ndarray] = {}
        std: dict[str, np.ndarray] = {}
        for out, (e, key) in self.output_map.items():
            if e == electrode:
                outputs[key] = np.asarray(res.outputs[out], dtype=float)
                std[key] = np.asarray(res.std[out], dtype=float)
        violations = sorted({f"{k}: {v}" for row in res.violations for k, v in row.items()})
        return ModelAnswer(outputs=outputs, std=std, in_domain=np.asarray(res.in_domain, dtype=bool),
                           violations=violations, model_version=f"{self.name}@{res.model_version}")


def _get(obj: Any, key: str, default: Any) -> Any:
    return obj.get(key, default) if isinstance(obj, Mapping) else default
