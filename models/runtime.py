"""The interface the twin uses: load model cards + ONNX files, predict in batches with a domain check.

    from models.runtime import ModelRegistry
    reg = ModelRegistry.load()                    # models/artifacts
    res = reg.predict("structure", {"cathode_pump_flow_rate_cm3_h": [700.0], ...})
    res.outputs["cathode_dry_mass_loading_mg_cm2"], res.std[...], res.in_domain, res.violations

Out-of-domain rows (any input outside the card's [low, high]) get ``in_domain = False`` and a violation entry per
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


@dataclass
class PredictionResult:
    outputs: dict[str, NDArray[np.float64]]
    std: dict[str, NDArray[np.float64]]
    in_domain: NDArray[np.bool_]
    violations: list[dict[str, str]]
    model_version: str
    units: dict[str, str] = field(default_factory=dict)


@dataclass
class _Model:
    card: dict[str, Any]
    input_names: list[str]
    low: NDArray[np.float64]
    high: NDArray[np.float64]
    sessions: dict[str, ort.InferenceSession]
    layout: list[tuple[str, str, int]]  # (output name, file, index in that file's outputs)
    dtypes: dict[str, type]  # float32 for MLP / ridge graphs, float64 for Gaussian processes


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
                        for f in sorted({o["file"] for o in card["outputs"]})}
            models[card["name"]] = _Model(
                card=card,
                input_names=[i["name"] for i in card["inputs"]],
                low=np.array([i["low"] for i in card["inputs"]], dtype=np.float64),
                high=np.array([i["high"] for i in card["inputs"]], dtype=np.float64),
                sessions=sessions,
                layout=[(o["name"], o["file"], int(o["index"])) for o in card["outputs"]],
                dtypes={f: (np.float64 if s.get_inputs()[0].type == "tensor(double)" else np.float32)
                        for f, s in sessions.items()},
            )
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
        results = {f: s.run(None, {"X": x.astype(m.dtypes[f], copy=False)}) for f, s in m.sessions.items()}
        outputs: dict[str, NDArray[np.float64]] = {}
        std: dict[str, NDArray[np.float64]] = {}
        for out_name, f, k in m.layout:
            mean, sd = results[f]
            outputs[out_name] = mean[:, k].astype(np.float64)
            std[out_name] = sd[:, k].astype(np.float64)
            if self._ood == "nan" and not in_domain.all():
                outputs[out_name][~in_domain] = math.nan
                std[out_name][~in_domain] = math.nan
        units = {o["name"]: o["unit"] for o in m.card["outputs"]}
        return PredictionResult(outputs, std, in_domain, violations, m.card["version"], units)
