"""An unscented Kalman filter for slowly varying parameters: random-walk state, nonlinear vectorised observation.

Why unscented rather than extended: the observation is the whole process chain (eq. 8-16, with exponentials and the
``min`` of eq. 15), whose Jacobian we would have to derive or difference; the unscented transform needs none, and its
2n + 1 sigma points go through the vectorised chain in one call (13 rows for 6 parameters: about the cost of one
finite-difference Jacobian). It also carries the second-order effect of a wide prior (a 10 % uncertain solid content
changes the dry loading nonlinearly through the slurry density) that linearisation drops. Scaled sigma points of
Julier / van der Merwe (alpha, beta = 2, kappa = 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, cho_solve, cholesky

Observe = Callable[[np.ndarray], np.ndarray]  # sigma points (k, n) -> predicted observations (k, m)


@dataclass
class Update:
    """What one measurement update did: innovation, its covariance and the normalised innovation squared."""

    innovation: np.ndarray
    innovation_cov: np.ndarray
    predicted: np.ndarray
    nis: float


class UnscentedFilter:
    def __init__(self, mean: np.ndarray, cov: np.ndarray, alpha: float = 0.5, beta: float = 2.0,
                 kappa: float = 0.0) -> None:
        self.x = np.asarray(mean, dtype=float).copy()
        self.P = np.asarray(cov, dtype=float).copy()
        n = len(self.x)
        self.lam = alpha * alpha * (n + kappa) - n
        self.wm = np.full(2 * n + 1, 0.5 / (n + self.lam))
        self.wc = self.wm.copy()
        self.wm[0] = self.lam / (n + self.lam)
        self.wc[0] = self.wm[0] + 1.0 - alpha * alpha + beta

    def predict(self, walk_cov: np.ndarray) -> None:
        """Random walk: the mean stays, the covariance grows by ``walk_cov``."""
        self.P = self.P + walk_cov

    def sigma_points(self) -> np.ndarray:
        n = len(self.x)
        root = cholesky((n + self.lam) * _sym(self.P), lower=True)
        return np.vstack([self.x, self.x + root.T, self.x - root.T])

    def update(self, y: np.ndarray, noise_cov: np.ndarray, observe: Observe) -> Update:
        X = self.sigma_points()
        Y = np.asarray(observe(X), dtype=float)
        y_hat = self.wm @ Y
        dy = Y - y_hat
        dx = X - self.x
        S = _sym((self.wc[:, None] * dy).T @ dy + noise_cov)
        C = (self.wc[:, None] * dx).T @ dy
        factor = cho_factor(S)
        innovation = np.asarray(y, dtype=float) - y_hat
        gain = cho_solve(factor, C.T).T
        self.x = self.x + gain @ innovation
        self.P = _sym(self.P - gain @ S @ gain.T)
        return Update(innovation, S, y_hat, float(innovation @ cho_solve(factor, innovation)))


def _sym(a: np.ndarray) -> np.ndarray:
    return 0.5 * (a + a.T)
