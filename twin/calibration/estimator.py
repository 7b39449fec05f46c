"""Online calibration of one electrode's process-chain parameters on one line and product.

Every observation is a roll's record from the line: the coater's inputs over the roll (flow meter, web speed, coating
width) with the roll's mean wet film, beta-gauge dry loading and dry film thickness, or, when the roll has been
calendered, those coating inputs with the calender's line load and roll temperature and its mean calendered
thickness. Roll records need no transport-delay model (the line joined coater, gauges and calender by roll ID and
position) and a roll mean carries the information of thousands of gauge readings, so one filter update per roll is
enough; the observation error of a roll mean is not the gauge noise divided by sqrt(n) but what varies within and
between rolls that the chain does not model (batch-to-batch solid content, gauge calibration): ``rel_std`` of the
reading (0.4 % by default, measured on the simulator's nominal line: bench_calibration).

The filter (``ukf.UnscentedFilter``) keeps the *candidate* estimate. What predictions and the recommender use is the
*accepted* version: version 0 is the literature parameter set; a new version is accepted when the residual test says
the accepted one no longer fits (or an engineer accepts the candidate through the API). The residual test is a
two-sided tabular CUSUM (Page 1954; Montgomery, Introduction to SQC, ch. 9) per observed output on the accepted
version's standardised residuals z = (measured - predicted) / (rel_std x measured): S+ = max(0, S+ + z - k),
S- = max(0, S- - z - k), mismatch when either exceeds h (k = 0.5, h = 5: an in-control average run length of ~465
rolls per output, and a 3-sigma shift found in ~2 rolls).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from twin.calibration import parameters as cp
from twin.calibration.ukf import UnscentedFilter

# what the roll records report -> the chain output it measures
COATING_OBSERVED: dict[str, str] = {
    "wet_film_thickness_um_mean": "coating.wet_film_thickness_um",
    "mass_loading_mg_cm2_mean": "drying.dry_mass_loading_mg_cm2",
    "dry_film_thickness_um_mean": "drying.dry_film_thickness_um",
}
CALENDER_OBSERVED: dict[str, str] = {"calendered_thickness_um_mean": "calendering.calendered_thickness_um"}
COATING_INPUTS = ("pump_flow_rate_cm3_h", "web_speed_m_min", "coating_width_mm")
CALENDER_INPUTS = ("line_load_N_mm", "roll_temperature_C")
SHADOW_ROLLS = 20


@dataclass(frozen=True)
class Observation:
    subject: str                  # the roll the record is about
    inputs: dict[str, float]      # process-chain inputs as the line reported them
    measured: dict[str, float]    # chain output ("step.name") -> roll mean
    time_ns: int = 0
    new_batch: bool = False       # coated (partly) from a slurry batch no earlier record of this electrode named


@dataclass
class Version:
    number: int
    time_ns: int
    values: dict[str, float]
    std: dict[str, float]                 # one standard deviation, in the parameter's unit
    coords: list[float]                   # filter mean (ln ratios / k)
    cov: list[list[float]]                # filter covariance in those coordinates
    observations: int                     # rolls the estimate had seen
    who: str
    why: str

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("coords", "cov")}


@dataclass
class ObserveResult:
    residuals: dict[str, float]           # measured - accepted version's prediction
    z: dict[str, float]                   # standardised residuals
    cusum: dict[str, tuple[float, float]]
    mismatch: list[str]                   # outputs whose CUSUM crossed h at this observation
    nis: float
    update_s: float
    candidate_z: dict[str, float] = field(default_factory=dict)  # the candidate's, before it learnt this roll


@dataclass
class Settings:
    rel_std: float = 0.004
    cusum_k: float = 0.5
    cusum_h: float = 5.0
    walk_scale: float = 1.0


@dataclass
class ElectrodeCalibration:
    line: str
    product: str
    electrode: str
    settings: Settings = field(default_factory=Settings)
    versions: list[Version] = field(default_factory=list)
    accepted: int = 0
    observations: int = 0
    cusum: dict[str, list[float]] = field(default_factory=dict)
    mismatch: list[str] = field(default_factory=list)   # outputs in mismatch since the last acceptance
    last: ObserveResult | None = None
    # shadow evaluation: squared standardised one-step-ahead residuals of the accepted version and of the candidate
    # on the same recent rolls, so an engineer sees whether accepting the candidate would have predicted better
    shadow: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=SHADOW_ROLLS))

    def __post_init__(self) -> None:
        prior = np.array([p.prior_std for p in cp.PARAMETERS]) ** 2
        self.filter = UnscentedFilter(np.zeros(len(cp.PARAMETERS)), np.diag(prior))
        self.walk = np.diag((np.array([p.walk_std for p in cp.PARAMETERS]) * self.settings.walk_scale) ** 2)
        self.batch_walk = np.diag(np.array([p.batch_std for p in cp.PARAMETERS]) ** 2)
        self.m_ref = cp.reference_loading_mg_cm2(self.electrode)
        if not self.versions:
            self.versions.append(self._version(0, "literature", "process-chain parameter set (models.process_chain)"))

    @property
    def key(self) -> str:
        return f"{self.line}/{self.product}/{self.electrode}"

    # -- estimates ---------------------------------------------------------------------------------------------------
    def _values_std(self, x: np.ndarray, P: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
        values = {k: float(v) for k, v in cp.from_coords(self.electrode, x).items()}
        sd = np.sqrt(np.clip(np.diag(P), 0.0, None))
        # ln-ratio coordinates: std of the value ~ value x std of its log (first order)
        std = {p.name: float(values[p.name] * sd[i] if p.log else sd[i]) for i, p in enumerate(cp.PARAMETERS)}
        return values, std

    def _version(self, number: int, who: str, why: str) -> Version:
        values, std = self._values_std(self.filter.x, self.filter.P)
        return Version(number, time.time_ns(), values, std, self.filter.x.tolist(), self.filter.P.tolist(),
                       self.observations, who, why)

    def current(self) -> Version:
        return self.versions[self.accepted]

    def candidate(self) -> dict[str, Any]:
        values, std = self._values_std(self.filter.x, self.filter.P)
        sd = np.sqrt(np.clip(np.diag(self.filter.P), 1e-300, None))
        corr = self.filter.P / np.outer(sd, sd)
        return {"values": values, "std": std, "observations": self.observations,
                "correlation": {"parameters": list(cp.NAMES), "matrix": np.round(corr, 3).tolist()}}

    def predict(self, inputs: Mapping[str, Any], version: Version | None = None) -> dict[str, np.ndarray]:
        v = version or self.current()
        return cp.evaluate(self.electrode, inputs, v.values, self.m_ref)

    # -- one roll record ---------------------------------------------------------------------------------------------
    def observe(self, obs: Observation) -> ObserveResult:
        t0 = time.perf_counter()
        outputs = [k for k, v in obs.measured.items() if math.isfinite(v) and v > 0]
        if not outputs:
            raise ValueError(f"observation of {obs.subject} measures nothing usable: {obs.measured}")
        y = np.array([obs.measured[k] for k in outputs])
        sigma = self.settings.rel_std * np.abs(y)
        # residual test on the accepted version, before the filter learns from this roll
        pred = self.predict(obs.inputs)
        residuals = {k: float(obs.measured[k] - np.asarray(pred[k]).reshape(-1)[0]) for k in outputs}
        z = {k: residuals[k] / float(s) for k, s in zip(outputs, sigma, strict=True)}
        crossed = []
        k_, h = self.settings.cusum_k, self.settings.cusum_h
        for name in outputs:
            s = self.cusum.setdefault(name, [0.0, 0.0])
            s[0] = max(0.0, s[0] + z[name] - k_)
            s[1] = max(0.0, s[1] - z[name] - k_)
            if max(s) > h:
                crossed.append(name)
                if name not in self.mismatch:
                    self.mismatch.append(name)
        # the candidate: random walk, then the unscented update through the chain
        self.filter.predict(self.walk + (self.batch_walk if obs.new_batch else 0.0))

        def observe_fn(X: np.ndarray) -> np.ndarray:
            values = cp.from_coords(self.electrode, X)
            out = cp.evaluate(self.electrode, obs.inputs, values, self.m_ref)
            return np.column_stack([np.broadcast_to(out[k], (X.shape[0],)) for k in outputs])

        upd = self.filter.update(y, np.diag(sigma ** 2), observe_fn)
        self.observations += 1
        # the filter's predicted observation is the candidate's one-step-ahead prediction of this roll
        cz = {k: float((obs.measured[k] - upd.predicted[i]) / sigma[i]) for i, k in enumerate(outputs)}
        self.shadow.append((float(np.mean(np.square(list(z.values())))), float(np.mean(np.square(list(cz.values()))))))
        self.last = ObserveResult(residuals, z, {k: (v[0], v[1]) for k, v in self.cusum.items()}, crossed,
                                  upd.nis, time.perf_counter() - t0, cz)
        return self.last

    def shadow_view(self) -> dict[str, Any]:
        """RMS standardised one-step-ahead residual of the accepted version and of the candidate over the same roll
        records since the accepted version was accepted (at most the last 20; 1 = as good as the residual test's
        scale; the literature model on a mismatched line: tens)."""
        if not self.shadow:
            return {"rolls": 0, "accepted_rms_z": None, "candidate_rms_z": None}
        acc, cand = zip(*self.shadow, strict=True)
        return {"rolls": len(self.shadow), "accepted_rms_z": math.sqrt(float(np.mean(acc))),
                "candidate_rms_z": math.sqrt(float(np.mean(cand)))}

    # -- versions ----------------------------------------------------------------------------------------------------
    def accept(self, who: str, why: str) -> Version:
        """The candidate becomes the accepted version; the residual test starts again against it."""
        v = self._version(len(self.versions), who, why)
        self.versions.append(v)
        self.accepted = v.number
        self._reset_test()
        return v

    def rollback(self, number: int, who: str, why: str) -> Version:
        """A new version with an earlier one's values (the history is never rewritten); the filter restarts there."""
        if not 0 <= number < len(self.versions):
            raise KeyError(f"{self.key} has versions 0..{len(self.versions) - 1}, not {number}")
        old = self.versions[number]
        self.filter.x = np.array(old.coords, dtype=float)
        self.filter.P = np.array(old.cov, dtype=float)
        v = self._version(len(self.versions), who, f"rollback to version {number}: {why}")
        self.versions.append(v)
        self.accepted = v.number
        self._reset_test()
        return v

    def _reset_test(self) -> None:
        self.cusum = {}
        self.mismatch = []
        self.shadow.clear()

    # -- persistence -------------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"line": self.line, "product": self.product, "electrode": self.electrode,
                "accepted": self.accepted, "observations": self.observations,
                "filter": {"x": self.filter.x.tolist(), "P": self.filter.P.tolist()},
                "cusum": self.cusum, "mismatch": self.mismatch,
                "versions": [asdict(v) for v in self.versions]}

    @classmethod
    def from_state(cls, data: Mapping[str, Any], settings: Settings) -> ElectrodeCalibration:
        cal = cls(str(data["line"]), str(data["product"]), str(data["electrode"]), settings,
                  versions=[Version(**v) for v in data["versions"]])
        cal.accepted = int(data["accepted"])
        cal.observations = int(data["observations"])
        cal.filter.x = np.array(data["filter"]["x"], dtype=float)
        cal.filter.P = np.array(data["filter"]["P"], dtype=float)
        cal.cusum = {k: [float(a), float(b)] for k, (a, b) in data.get("cusum", {}).items()}
        cal.mismatch = list(data.get("mismatch", []))
        return cal
