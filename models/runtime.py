"""The interface the twin uses: load model cards + ONNX files, predict in batches with a domain check.

    from models.runtime import ModelRegistry
    reg = ModelRegistry.load()                    # models/artifacts
    res = reg.predict("structure", {"cathode_pump_flow_rate_cm3_h": [700.0], ...})
    res.outputs["cathode_dry_mass_loading_mg_cm2"], res.std[...], res.lower[...], res.upper[...]
    res.in_domain, res.violations

Uncertainty: ``lower`` / ``upper`` bound the calibrated 95 % interval of every output, ``std`` is its half-width / 1.96
(models.calibration: split-conformal scale factors per output, stored in the card, computed on physics points the
ensemble never trained on); ``ensemble_std`` is the raw spread of the members, kept for diagnosis (alone it covered
only 60-80 % of fresh points at ±2σ). A card without calibration serves the raw spread as ``std`` and says so
(``calibrated`` False).

Derived outputs: an output whose card entry has ``derived`` is computed from other models' outputs instead of being
read from its own graph column: $/kWh = $/cell / C/3 energy (a ratio fitted on its own drifted 6 % from the ratio of
the two fits at low N/P, issue 13); its spread is the delta-method combination of the two relative spreads, then
calibrated like any other output.

Out-of-domain rows (any input outside the card's [low, high], or a card ``constraints`` entry violated, e.g. N/P < 1:
an anode-limited cell, which the cell model fills differently) get ``in_domain = False`` and a violation entry per
offending input. Their mean *is* still returned (so a dashboard can show it greyed out) unless the registry was
loaded with ``out_of_domain="nan"``; a caller that acts on predictions must check ``in_domain`` first.
Sessions are created once and reused (single-thread intra-op: lowest single-sample latency on a shared 2-core box,
research/models.md 4 finding 4); inputs go in as float32.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import ArrayLike, NDArray

DEFAULT_DIRECTORY = Path(__file__).resolve().parent / "artifacts"


Z95 = 1.959963984540054  # calibrated std = half-width of the 95 % interval / Z95


@dataclass
class PredictionResult:
    outputs: dict[str, NDArray[np.float64]]
    std: dict[str, NDArray[np.float64]]  # calibrated (half-width of the 95 % interval / 1.96) when ``calibrated``
    in_domain: NDArray[np.bool_]
    violations: list[dict[str, str]]
    model_version: str
    units: dict[str, str] = field(default_factory=dict)
    lower: dict[str, NDArray[np.float64]] = field(default_factory=dict)  # 95 % interval
    upper: dict[str, NDArray[np.float64]] = field(default_factory=dict)
    ensemble_std: dict[str, NDArray[np.float64]] = field(default_factory=dict)  # raw spread of the members
    calibrated: bool = False


@dataclass
class _Model:
    card: dict[str, Any]
    input_names: list[str]
    low: NDArray[np.float64]
    high: NDArray[np.float64]
    sessions: dict[str, ort.InferenceSession]
    layout: list[tuple[str, str, int]]  # (output name, file, index in that file's outputs)
    dtypes: dict[str, type]  # float32 for MLP / ridge graphs, float64 for Gaussian processes
    scale_95: dict[str, float]  # output -> split-conformal scale factor of the ensemble spread (calibrated outputs)
    derived: dict[str, dict[str, Any]]  # output -> {"numerator": [model, output], "denominator": [...], "scale"}
    constraints: list[dict[str, Any]]  # {"output", "model", "low" / "high", "reason"} on another model's output


def _fmt(v: float) -> str:
    return f"{v:.6g}"


class ModelRegistry:
    """All surrogates in one directory, by name (the card's ``name``)."""

    def __init__(self, models: dict[str, _Model], out_of_domain: str = "flag") -> None:
        if out_of_domain not in ("flag", "nan"):
            raise ValueError("out_of_domain must be 'flag' (return the mean, flagged) or 'nan'")
        self._models = models
        self._ood = out_of_domain

    @classmethod
    def load(cls, directory: Path | None = None, out_of_domain: str = "flag") -> ModelRegistry:
        directory = Path(directory) if directory is not None else DEFAULT_DIRECTORY
        cards = sorted(directory.glob("*.card.json"))
        if not cards:
            raise FileNotFoundError(f"no *.card.json in {directory}; run `python -m models train` to create them")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        models: dict[str, _Model] = {}
        for path in cards:
            card = json.loads(path.read_text(encoding="utf-8"))
            sessions = {f: ort.InferenceSession(str(directory / f), opts, providers=["CPUExecutionProvider"])
                        for f in sorted({o["file"] for o in card["outputs"] if "derived" not in o})}
            models[card["name"]] = _Model(
                card=card,
                input_names=[i["name"] for i in card["inputs"]],
                low=np.array([i["low"] for i in card["inputs"]], dtype=np.float64),
                high=np.array([i["high"] for i in card["inputs"]], dtype=np.float64),
                sessions=sessions,
                layout=[(o["name"], o["file"], int(o["index"])) for o in card["outputs"] if "derived" not in o],
                dtypes={f: (np.float64 if s.get_inputs()[0].type == "tensor(double)" else np.float32)
                        for f, s in sessions.items()},
                scale_95={o["name"]: float(o["calibration"]["scale_95"]) for o in card["outputs"]
                          if "scale_95" in o.get("calibration", {})},
                derived={o["name"]: dict(o["derived"]) for o in card["outputs"] if "derived" in o},
                constraints=list(card.get("constraints", [])),
            )
        for name, m in models.items():  # a card naming a model that is not here is a broken artifact set
            needed = {c["model"] for c in m.constraints} | {
                d[part][0] for d in m.derived.values() for part in ("numerator", "denominator")}
            absent = sorted(needed - set(models))
            if absent:
                raise FileNotFoundError(f"model {name!r} needs model(s) {absent} (its card's constraints / derived "
                                        f"outputs) but {directory} has no card for them")
        return cls(models, out_of_domain)

    @property
    def names(self) -> list[str]:
        return sorted(self._models)

    def card(self, name: str) -> dict[str, Any]:
        return self._get(name).card

    def _get(self, name: str) -> _Model:
        try:
            return self._models[name]
        except KeyError:
            raise KeyError(f"unknown model {name!r}; available: {self.names}") from None

    def inputs(self, name: str) -> list[str]:
        return list(self._get(name).input_names)

    def predict(self, name: str, inputs: Mapping[str, ArrayLike]) -> PredictionResult:
        """Batch prediction. Scalars and 1-D arrays broadcast against each other; extra keys are ignored."""
        return self._predict(name, inputs, {})

    def _predict(self, name: str, inputs: Mapping[str, ArrayLike],
                 done: dict[str, PredictionResult]) -> PredictionResult:
        """``done``: the other models already evaluated on these inputs in this call (constraints, derived outputs:
        the cost model needs the structure model's N/P and the cell model's energy, the cell model N/P again)."""
        if name in done:
            return done[name]
        m = self._get(name)
        missing = [n for n in m.input_names if n not in inputs]
        if missing:
            raise KeyError(f"model {name!r} needs input(s) {missing}; see reg.card({name!r})['inputs']")
        # one (rows, inputs) matrix filled column by column: scalars broadcast on assignment (np.broadcast_arrays +
        # column_stack cost ~0.3 ms a call, more than the ONNX run of a single row, and the optimiser calls often)
        cols = [np.asarray(inputs[n], dtype=np.float64) for n in m.input_names]
        if any(c.ndim > 1 for c in cols):
            raise ValueError(f"inputs of {name!r} must be scalars or 1-D arrays")
        lengths = sorted({c.shape[0] for c in cols if c.ndim == 1})
        if len(lengths) > 1 and lengths[0] != 1 or len(lengths) > 2:
            raise ValueError(f"inputs of {name!r} must be scalars or 1-D arrays of one common length, got lengths "
                             f"{lengths}")
        x = np.empty((lengths[-1] if lengths else 1, len(cols)))
        for i, c in enumerate(cols):
            x[:, i] = c
        bad = ~np.isfinite(x)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(f"input {m.input_names[c]!r} row {r} is {x[r, c]!r}; every input must be a finite number")
        low_bad = x < m.low
        high_bad = x > m.high
        out_mask = low_bad | high_bad
        in_domain = np.asarray(~out_mask.any(axis=1), dtype=bool)
        violations: list[dict[str, str]] = []
        for r in range(len(x)):
            if in_domain[r]:
                violations.append({})
                continue
            violations.append({
                m.input_names[c]: f"value {_fmt(x[r, c])} outside [{_fmt(m.low[c])}, {_fmt(m.high[c])}]"
                for c in np.flatnonzero(out_mask[r])
            })
        for con in m.constraints:  # a domain that is not a box: e.g. N/P >= 1, on the structure model's answer
            value = self._predict(con["model"], inputs, done).outputs[con["output"]]
            bad_rows = np.zeros(len(x), dtype=bool)
            if "low" in con:
                bad_rows |= value < float(con["low"])
            if "high" in con:
                bad_rows |= value > float(con["high"])
            for r in np.flatnonzero(bad_rows):
                in_domain[r] = False
                lo, hi = _fmt(con.get("low", -math.inf)), _fmt(con.get("high", math.inf))
                violations[r][con["output"]] = (f"value {_fmt(value[r])} outside [{lo}, {hi}] "
                                                f"({con.get('reason', con['model'])})")
        results = {f: s.run(None, {"X": x.astype(m.dtypes[f], copy=False)}) for f, s in m.sessions.items()}
        outputs: dict[str, NDArray[np.float64]] = {}
        spread: dict[str, NDArray[np.float64]] = {}
        for out_name, f, k in m.layout:
            mean, sd = results[f]
            outputs[out_name] = mean[:, k].astype(np.float64)
            spread[out_name] = sd[:, k].astype(np.float64)
        for out_name, d in m.derived.items():
            outputs[out_name], spread[out_name] = self._derive(d, inputs, outputs, spread, name, done)
        calibrated = all(o in m.scale_95 for o in outputs)
        std: dict[str, NDArray[np.float64]] = {}
        lower: dict[str, NDArray[np.float64]] = {}
        upper: dict[str, NDArray[np.float64]] = {}
        for out_name, mean in outputs.items():
            half = spread[out_name] * m.scale_95[out_name] if calibrated else Z95 * spread[out_name]
            std[out_name] = half / Z95
            lower[out_name], upper[out_name] = mean - half, mean + half
        if self._ood == "nan" and not in_domain.all():
            for arrays in (outputs, spread, std, lower, upper):
                for v in arrays.values():
                    v[~in_domain] = math.nan
        order = [o["name"] for o in m.card["outputs"]]
        units = {o["name"]: o["unit"] for o in m.card["outputs"]}

        def ordered(a: dict[str, NDArray[np.float64]]) -> dict[str, NDArray[np.float64]]:
            return {o: a[o] for o in order}

        result = PredictionResult(ordered(outputs), ordered(std), in_domain, violations, m.card["version"], units,
                                  ordered(lower), ordered(upper), ordered(spread), calibrated)
        done[name] = result
        return result

    def _derive(self, d: Mapping[str, Any], inputs: Mapping[str, ArrayLike], own: Mapping[str, NDArray[np.float64]],
                own_spread: Mapping[str, NDArray[np.float64]],
                name: str, done: dict[str, PredictionResult]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """numerator / denominator * scale, each from this model or another one; spreads add in relative terms."""
        parts = []
        for key in ("numerator", "denominator"):
            model, output = d[key]
            if model == name:
                parts.append((own[output], own_spread[output]))
            else:
                res = self._predict(model, inputs, done)
                parts.append((res.outputs[output], res.ensemble_std[output]))
        (a, sa), (b, sb) = parts
        value = a / b * float(d.get("scale", 1.0))
        rel = np.sqrt((sa / a) ** 2 + (sb / b) ** 2)
        return value, np.abs(value) * rel
