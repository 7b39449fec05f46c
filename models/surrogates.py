"""Surrogate families, their validation (seed 002) and selection (seed 001), per output.

Every family works in transformed coordinates: log of every strictly positive input (products and ratios of
process parameters, e.g. eq. 10 h_wet = Q / (v w), become sums) and log of every output (all are positive), each
standardised. Families:

- ``mlp``: deep ensemble of K tanh MLPs (L-BFGS, different seeds) on the full training set; spread = uncertainty;
- ``poly_ridge``: polynomial features (degree chosen by inner validation) + ridge, K bootstrap members;
- ``gp``: Gaussian processes (ARD RBF + white noise) conditioned on K random subsets with shared hyperparameters;
  exported in float64 (skl2onnx's GP graph is useless in float32, research/models.md 4 finding 2) and using the
  member spread rather than the GP's own std (unreliable in ONNX when the GP nearly interpolates, finding 2).

Selection per output: lowest held-out RMSE %; a candidate within 10 % of the best RMSE % wins instead if its
corrected Akaike information criterion (AICc, seed 001) is lower. With ``prefer_fast`` (used for every exported model:
the twin predicts per sample and the recommender calls the models thousands of times per decision), the fastest
family whose held-out metrics meet the targets with a 2x margin (RMSE % <= 0.5, R2 >= 0.995) is exported instead.
Validation as seed 002: RMSE % (eq. 4, relative to the true value), R2 (eq. 5) on held-out points, and the 95 % interval
of R2 over ``resamplings`` random 80/20 train/test splits (each refit with one member of the selected family).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.linear_model import Ridge
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

FloatArray = NDArray[np.float64]
EXPORTABLE = ("mlp", "poly_ridge", "gp")
# Single-row latency of the exported graphs measured in this project (tests/bench/bench_models.py): MLP ~20 us,
# polynomial ridge 0.6-1.1 ms (skl2onnx's PolynomialFeatures graph), GP ensemble ~5 ms.
FASTEST_FIRST = ("mlp", "poly_ridge", "gp")
TARGET_R2 = 0.99
TARGET_RMSE_PCT = 1.0


@dataclass
class Coordinates:
    """log / standardisation shared by all families of one surrogate (exported into the ONNX graph)."""

    log_mask: NDArray[np.bool_]
    y_mu: FloatArray
    y_sd: FloatArray

    @classmethod
    def fit(cls, x_low: Sequence[float], y: FloatArray) -> Coordinates:
        if np.any(y <= 0) or not np.all(np.isfinite(y)):
            raise ValueError("surrogate outputs must be finite and positive (they are fitted in log space)")
        ly = np.log(y)
        return cls(np.asarray(x_low) > 0, ly.mean(axis=0), ly.std(axis=0) + 1e-12)

    def x(self, x: FloatArray) -> FloatArray:
        return np.where(self.log_mask, np.log(np.maximum(x, 1e-12)), x)

    def y(self, y: FloatArray) -> FloatArray:
        return (np.log(y) - self.y_mu) / self.y_sd

    def y_back(self, z: FloatArray) -> FloatArray:
        return np.exp(z * self.y_sd + self.y_mu)


@dataclass
class Family:
    name: str
    members: list[Any]
    n_params: float
    extra: dict[str, Any] = field(default_factory=dict)

    def predict_z(self, xt: FloatArray) -> tuple[FloatArray, FloatArray]:
        preds = np.stack([np.asarray(m.predict(xt)).reshape(len(xt), -1) for m in self.members])
        return preds.mean(axis=0), preds.std(axis=0)


def rmse_pct(y_true: FloatArray, y_pred: FloatArray) -> FloatArray:
    """Seed 002 eq. 4, per column."""
    return 100.0 * np.sqrt(np.mean(((y_pred - y_true) / y_true) ** 2, axis=0))


def r2(y_true: FloatArray, y_pred: FloatArray) -> FloatArray:
    """Seed 002 eq. 5, per column."""
    ss_res = np.sum((y_true - y_pred) ** 2, axis=0)
    ss_tot = np.sum((y_true - y_true.mean(axis=0)) ** 2, axis=0)
    return 1.0 - ss_res / np.maximum(ss_tot, 1e-300)


def aicc(rss: FloatArray, n: int, k: float) -> FloatArray:
    """Corrected AIC; infinite when the model has as many parameters as points (over-parameterised)."""
    if n - k - 1 <= 0:
        return np.full(np.shape(rss), np.inf)
    return n * np.log(np.maximum(rss, 1e-300) / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1)


def _mlp(seed: int, hidden: tuple[int, ...], max_iter: int) -> Pipeline:
    return Pipeline([("scale", StandardScaler()),
                     ("mlp", MLPRegressor(hidden_layer_sizes=hidden, activation="tanh", solver="lbfgs",
                                          alpha=1e-6, max_iter=max_iter, tol=1e-10, random_state=seed))])


def _poly(degree: int, alpha: float) -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("poly", PolynomialFeatures(degree)),
                     ("scale2", StandardScaler()), ("ridge", Ridge(alpha=alpha))])


def fit_mlp(xt: FloatArray, z: FloatArray, members: int = 5, hidden: tuple[int, ...] = (64, 64),
            max_iter: int = 3000, seed: int = 0) -> Family:
    fitted = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for k in range(members):
            fitted.append(_mlp(seed + k, hidden, max_iter).fit(xt, z))
    d, m = xt.shape[1], z.shape[1]
    sizes = (d, *hidden, m)
    n_params = float(sum(a * b + b for a, b in pairwise(sizes))) / m  # per output (shared hidden layers)
    return Family("mlp", fitted, n_params, {"hidden": list(hidden), "members": members})


def _ridge_dof(pipe: Pipeline, xt: FloatArray) -> float:
    """Effective degrees of freedom of ridge: sum s^2 / (s^2 + alpha) over the singular values of the features."""
    feats = pipe[:-1].transform(xt)
    s = np.linalg.svd(feats, compute_uv=False)
    alpha = pipe[-1].alpha
    return float(np.sum(s**2 / (s**2 + alpha))) + 1.0


def fit_poly_ridge(xt: FloatArray, z: FloatArray, members: int = 5, seed: int = 0,
                   degrees: Sequence[int] = (1, 2, 3), alphas: Sequence[float] = (1e-6, 1e-4, 1e-2)) -> Family:
    rng = np.random.default_rng(seed)
    n = len(xt)
    idx = rng.permutation(n)
    cut = int(0.8 * n)
    tr, va = idx[:cut], idx[cut:]
    best: tuple[float, int, float] | None = None
    for deg in degrees:
        n_feat = _n_poly_features(xt.shape[1], deg)
        if n_feat > 4 * n:  # too many features for the data: skip rather than memorise
            continue
        for alpha in alphas:
            p = _poly(deg, alpha).fit(xt[tr], z[tr])
            err = float(np.mean((p.predict(xt[va]) - z[va]) ** 2))
            if best is None or err < best[0]:
                best = (err, deg, alpha)
    assert best is not None
    _, deg, alpha = best
    fitted = []
    for _ in range(members):
        b = rng.integers(0, n, n)
        fitted.append(_poly(deg, alpha).fit(xt[b], z[b]))
    full = _poly(deg, alpha).fit(xt, z)
    return Family("poly_ridge", fitted, _ridge_dof(full, xt), {"degree": deg, "alpha": alpha, "members": members})


def _n_poly_features(d: int, degree: int) -> int:
    from math import comb

    return comb(d + degree, degree)


def fit_gp(xt: FloatArray, z: FloatArray, members: int = 3, max_train: int = 400, member_train: int = 1200,
           seed: int = 0, kernel: Any = None) -> Family:
    """Hyperparameters by marginal likelihood on ``max_train`` points; then ``members`` GPs with that kernel fixed,
    each conditioned on a different random 80 % subset (at most ``member_train`` points): their spread is the
    uncertainty, and conditioning without re-optimising keeps the cost at one Cholesky per member."""
    rng = np.random.default_rng(seed)
    d = xt.shape[1]
    if kernel is None:
        idx = rng.permutation(len(xt))[:max_train]
        k0 = ConstantKernel(1.0, (1e-3, 1e3)) * RBF(np.ones(d), (1e-2, 1e3)) + WhiteKernel(1e-4, (1e-9, 1e-1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp0 = GaussianProcessRegressor(k0, normalize_y=False, random_state=seed)
            gp0.fit(StandardScaler().fit_transform(xt[idx]), z[idx])
        kernel = gp0.kernel_
    fitted = []
    n_sub = min(member_train, max(2, int(0.8 * len(xt))))
    for _ in range(members):
        idx = rng.permutation(len(xt))[:n_sub]
        gp = Pipeline([("scale", StandardScaler()),
                       ("gp", GaussianProcessRegressor(kernel, optimizer=None, normalize_y=False))])
        fitted.append(gp.fit(xt[idx], z[idx]))
    k_eff = _gp_dof(fitted[0], xt[rng.permutation(len(xt))[:n_sub]])
    return Family("gp", fitted, k_eff, {"members": members, "kernel": str(kernel), "member_train": n_sub,
                                        "kernel_object": kernel})


def _gp_dof(gp: Pipeline, xt: FloatArray) -> float:
    """Effective degrees of freedom of a GP smoother: trace K (K + s2 I)^-1."""
    g = gp[-1]
    xs = gp[0].transform(xt)
    k_all = g.kernel_(xs)
    noise = g.kernel_.k2.noise_level if hasattr(g.kernel_, "k2") else 0.0
    k_signal = k_all - noise * np.eye(len(xs))
    return float(np.trace(k_signal @ np.linalg.inv(k_all)))


FITTERS: dict[str, Callable[..., Family]] = {"mlp": fit_mlp, "poly_ridge": fit_poly_ridge, "gp": fit_gp}


@dataclass
class Selection:
    outputs: list[str]
    chosen: dict[str, str]  # output -> family
    candidates: dict[str, dict[str, dict[str, float]]]  # output -> family -> metrics
    families: dict[str, Family]


def evaluate_family(fam: Family, coords: Coordinates, x_test: FloatArray, y_test: FloatArray,
                    x_train: FloatArray, y_train: FloatArray) -> dict[str, FloatArray]:
    zt, _ = fam.predict_z(coords.x(x_test))
    pred = coords.y_back(zt)
    z_tr, _ = fam.predict_z(coords.x(x_train))
    rss = np.sum((z_tr - coords.y(y_train)) ** 2, axis=0)
    return {"rmse_pct": rmse_pct(y_test, pred), "r2": r2(y_test, pred),
            "aicc": aicc(rss, len(x_train), fam.n_params)}


def select(outputs: list[str], coords: Coordinates, x_tr: FloatArray, y_tr: FloatArray, x_te: FloatArray,
           y_te: FloatArray, families: Sequence[str] = ("mlp", "poly_ridge", "gp"),
           options: dict[str, dict[str, Any]] | None = None, log: Any = print,
           prefer_fast: bool = False) -> Selection:
    options = options or {}
    fitted: dict[str, Family] = {}
    cand: dict[str, dict[str, dict[str, float]]] = {o: {} for o in outputs}
    for name in families:
        import time

        t0 = time.perf_counter()
        fam = FITTERS[name](coords.x(x_tr), coords.y(y_tr), **options.get(name, {}))
        fitted[name] = fam
        m = evaluate_family(fam, coords, x_te, y_te, x_tr, y_tr)
        for j, o in enumerate(outputs):
            cand[o][name] = {k: float(v[j]) for k, v in m.items()}
        log(f"    {name}: fitted in {time.perf_counter() - t0:.1f} s; worst held-out RMSE % "
            f"{float(np.max(m['rmse_pct'])):.3f}, min R2 {float(np.min(m['r2'])):.5f}")
    chosen: dict[str, str] = {}
    for o in outputs:
        ranked = sorted((c for c in cand[o] if c in EXPORTABLE), key=lambda c: cand[o][c]["rmse_pct"])
        comfortable = [c for c in FASTEST_FIRST if c in ranked and cand[o][c]["rmse_pct"] <= 0.5 * TARGET_RMSE_PCT
                       and cand[o][c]["r2"] >= 1.0 - 0.5 * (1.0 - TARGET_R2)]
        if prefer_fast and comfortable:
            chosen[o] = comfortable[0]
            continue
        best = ranked[0]
        for c in ranked[1:]:
            if cand[o][c]["rmse_pct"] <= 1.1 * cand[o][best]["rmse_pct"] and cand[o][c]["aicc"] < cand[o][best]["aicc"]:
                best = c
        chosen[o] = best
    return Selection(outputs, chosen, cand, fitted)


def resampled_r2(family: str, options: dict[str, Any], coords: Coordinates, x: FloatArray, y: FloatArray,
                 columns: Sequence[int], n: int = 50, seed: int = 123, n_jobs: int = 2,
                 kernel: Any = None, selected: dict[str, Any] | None = None,
                 mlp_max_iter: int | None = None) -> FloatArray:
    """R2 on the held-out 20 % of ``n`` random 80/20 splits, one member refit per split (seed 002 CI95).

    Gaussian processes keep the main fit's hyperparameters and polynomial ridge its degree and alpha (re-tuning
    them 50 times is the expensive part); MLPs may be refit with fewer iterations (``mlp_max_iter``), which makes
    the interval a conservative (lower) estimate for the exported ensemble."""
    from joblib import Parallel, delayed

    opts = dict(options)
    opts["members"] = 1
    if family == "gp" and kernel is not None:
        opts["kernel"] = kernel  # hyperparameters of the main fit, re-conditioned on each split
    if family == "poly_ridge" and selected:
        opts["degrees"], opts["alphas"] = (selected["degree"],), (selected["alpha"],)
    if family == "mlp" and mlp_max_iter is not None:
        opts["max_iter"] = mlp_max_iter  # cheaper refits: the interval is then a conservative bound
    n_jobs = n_jobs if len(x) >= 500 else 1  # worker start-up costs more than small fits

    def one(s: int) -> FloatArray:
        rng = np.random.default_rng(seed + s)
        idx = rng.permutation(len(x))
        cut = int(0.8 * len(x))
        tr, te = idx[:cut], idx[cut:]
        fam = FITTERS[family](coords.x(x[tr]), coords.y(y[tr]), seed=s, **opts)
        z, _ = fam.predict_z(coords.x(x[te]))
        return r2(y[te][:, columns], coords.y_back(z)[:, columns])

    return np.asarray(Parallel(n_jobs=n_jobs)(delayed(one)(s) for s in range(n)))
