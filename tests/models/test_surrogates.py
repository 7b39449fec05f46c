"""Surrogate families, seed 002 metrics, and ONNX graphs that equal the fitted models."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from models import onnx_export
from models import surrogates as sg


def _data(n: int = 160, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[float]]:
    rng = np.random.default_rng(seed)
    low = [1.0, 0.5, -20.0]
    x = np.column_stack([rng.uniform(1, 3, n), rng.uniform(0.5, 2, n), rng.uniform(-20, -5, n)])
    y = np.column_stack([x[:, 0] / x[:, 1], np.exp(0.02 * x[:, 2]) * x[:, 0] ** 0.5])
    return x, y, low


def test_metrics_follow_seed_002() -> None:
    t = np.array([[1.0], [2.0], [4.0]])
    p = np.array([[1.1], [2.0], [3.6]])
    assert float(sg.rmse_pct(t, p)[0]) == pytest.approx(100 * np.sqrt((0.1**2 + 0 + 0.1**2) / 3))
    assert float(sg.r2(t, t)[0]) == 1.0
    assert float(sg.r2(t, np.full_like(t, t.mean()))[0]) == pytest.approx(0.0)
    assert np.isinf(sg.aicc(np.array([1.0]), 10, 12)[0])


def test_outputs_must_be_positive_for_the_log_space() -> None:
    with pytest.raises(ValueError, match="positive"):
        sg.Coordinates.fit([1.0], np.array([[1.0], [-1.0]]))


@pytest.mark.parametrize(("family", "opts", "dtype", "tol"), [
    ("mlp", {"members": 3, "hidden": (16,), "max_iter": 300}, np.float32, 1e-4),
    ("poly_ridge", {"members": 3}, np.float32, 1e-4),
    ("gp", {"members": 2, "max_train": 80}, np.float64, 1e-7),
])
def test_onnx_graph_equals_the_fitted_ensemble(family: str, opts: dict, dtype: type, tol: float) -> None:
    x, y, low = _data()
    coords = sg.Coordinates.fit(low, y)
    fam = sg.FITTERS[family](coords.x(x), coords.y(y), **opts)
    model = onnx_export.build_ensemble(fam.members, 3, coords.log_mask, coords.y_mu, coords.y_sd, [1, 0], dtype=dtype)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    xq, _, _ = _data(50, seed=9)
    mean, std = sess.run(None, {"X": xq.astype(dtype)})
    z, zs = fam.predict_z(coords.x(xq))
    ref = coords.y_back(z)[:, [1, 0]]
    ref_std = (ref * (zs * coords.y_sd)[:, [1, 0]])
    assert mean.shape == (50, 2) and std.shape == (50, 2)
    assert np.max(np.abs(mean / ref - 1)) < tol
    assert np.allclose(std, ref_std, rtol=1e-3, atol=1e-5 * np.abs(ref).max())
    assert np.all(std >= 0)


def test_selection_prefers_the_accurate_family() -> None:
    x, y, low = _data(200)
    coords = sg.Coordinates.fit(low, y)
    sel = sg.select(["ratio", "mixed"], coords, x[:160], y[:160], x[160:], y[160:], ("mlp", "poly_ridge"),
                    {"mlp": {"members": 2, "hidden": (8,), "max_iter": 200}}, log=lambda _m: None)
    # ratio = x0 / x1 is exactly linear in log space: polynomial ridge nails it
    assert sel.chosen["ratio"] == "poly_ridge"
    assert sel.candidates["ratio"]["poly_ridge"]["rmse_pct"] < 0.01
    assert set(sel.candidates["mixed"]) == {"mlp", "poly_ridge"}
