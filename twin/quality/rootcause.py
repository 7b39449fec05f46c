"""Root cause: which upstream features separate a set of cells (failing formation, below a capacity, a given list)
from the rest.

Two views, because each alone misleads:

- per feature, a Mann-Whitney U test (rank-based: no normality assumed, robust to a gauge's outliers) of the selected
  cells against the rest, with Cliff's delta as the effect size and Hedges' g beside it, and Benjamini-Hochberg
  q-values over all features tested (hundreds of features: raw p-values would crown chance);
- a random forest told to tell the two groups apart, with permutation importance (how much its balanced accuracy
  drops when one feature is shuffled): it sees interactions and redundancy the univariate tests do not.

Ranking: by q-value, then |Cliff's delta|, then |Hedges' g| (a setpoint step separates with zero spread inside each
group: infinite g, and it is the cause). Outcome features (``formation:*``, lab results on the cell or its formation
run) are never candidates: they are what is being explained. ``causes`` groups the features by signal (the stats of
one signal are one cause). The plots' data: each top feature's values in both groups, and box-plot quantiles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

OUTCOME_PREFIXES = ("formation:", "lab:Cell:", "lab:FormationRun:")
MIN_PER_GROUP = 3
MAX_PERMUTED = 40


def is_candidate(name: str) -> bool:
    return not name.startswith(OUTCOME_PREFIXES)


def cause_of(name: str) -> str:
    """``Drying/Cathode/MassLoading:mean`` -> ``Drying/Cathode/MassLoading``."""
    head, _, stat = name.rpartition(":")
    return head if head and stat in ("mean", "min", "max", "std") else name


def _hedges_g(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = a.size, b.size
    diff = float(a.mean() - b.mean())
    pooled = math.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    if pooled == 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return diff / pooled * (1 - 3 / (4 * (na + nb) - 9))


def _box(x: np.ndarray) -> dict[str, float]:
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    iqr = q3 - q1
    inside = x[(x >= q1 - 1.5 * iqr) & (x <= q3 + 1.5 * iqr)]
    return {"n": int(x.size), "q1": float(q1), "median": float(med), "q3": float(q3),
            "whisker_low": float(inside.min()), "whisker_high": float(inside.max()), "mean": float(x.mean())}


def rank(cells: Sequence[str], feats: Sequence[dict[str, float]], selected: Sequence[bool], *, top: int = 10,
         plot_points: int = 2000, seed: int = 0, forest: bool = True) -> dict[str, Any]:
    """Rank the candidate features; ``selected[i]`` says whether ``cells[i]`` is in the set to explain."""
    sel = np.asarray(selected, dtype=bool)
    n_sel, n_rest = int(sel.sum()), int((~sel).sum())
    out: dict[str, Any] = {"cells": len(cells), "selected": n_sel, "rest": n_rest, "features": [], "causes": [],
                           "forest": None, "plots": [], "method": {
                               "test": "Mann-Whitney U, two-sided (scipy.stats.mannwhitneyu)",
                               "correction": "Benjamini-Hochberg (scipy.stats.false_discovery_control)",
                               "effect_size": "Cliff's delta (selected vs rest), Hedges' g",
                               "model": "RandomForestClassifier + permutation importance (balanced accuracy)"}}
    if n_sel < MIN_PER_GROUP or n_rest < MIN_PER_GROUP:
        out["note"] = (f"need at least {MIN_PER_GROUP} cells in each group to compare; have {n_sel} selected and "
                       f"{n_rest} others")
        return out
    names = sorted({k for f in feats for k in f if is_candidate(k)})
    matrix = np.full((len(cells), len(names)), np.nan)
    col = {n: j for j, n in enumerate(names)}
    for i, f in enumerate(feats):
        for k, v in f.items():
            j = col.get(k)
            if j is not None and v is not None and math.isfinite(v):
                matrix[i, j] = v
    rows: list[dict[str, Any]] = []
    for j, name in enumerate(names):
        x = matrix[:, j]
        a, b = x[sel & ~np.isnan(x)], x[~sel & ~np.isnan(x)]
        if a.size < MIN_PER_GROUP or b.size < MIN_PER_GROUP or np.ptp(np.concatenate([a, b])) == 0:
            continue
        u, p = stats.mannwhitneyu(a, b, alternative="two-sided")
        delta = 2.0 * float(u) / (a.size * b.size) - 1.0
        rows.append({"feature": name, "cause": cause_of(name), "p": float(p), "cliffs_delta": delta,
                     "hedges_g": _hedges_g(a, b), "mean_selected": float(a.mean()), "mean_rest": float(b.mean()),
                     "n_selected": int(a.size), "n_rest": int(b.size), "_j": j})
    if not rows:
        out["note"] = "no feature varies across these cells"
        return out
    q = stats.false_discovery_control([r["p"] for r in rows], method="bh")
    for r, qv in zip(rows, q, strict=True):
        r["q"] = float(qv)
    rows.sort(key=lambda r: (r["q"], -abs(r["cliffs_delta"]), -abs(r["hedges_g"]), r["feature"]))
    for i, r in enumerate(rows, start=1):
        r["rank"] = i
    causes: dict[str, dict[str, Any]] = {}
    for r in rows:
        c = causes.setdefault(r["cause"], {"cause": r["cause"], "rank": len(causes) + 1, "best_feature": r["feature"],
                                           "q": r["q"], "cliffs_delta": r["cliffs_delta"], "features": []})
        c["features"].append(r["feature"])
    if forest:
        out["forest"] = _forest(matrix[:, [r["_j"] for r in rows]], sel, [r["feature"] for r in rows], seed)
    rng = np.random.default_rng(seed)
    for r in rows[:top]:
        x = matrix[:, r["_j"]]
        a, b = x[sel & ~np.isnan(x)], x[~sel & ~np.isnan(x)]
        pts = {}
        for label, arr in (("selected", a), ("rest", b)):
            pts[label] = (rng.choice(arr, plot_points, replace=False) if arr.size > plot_points else arr).tolist()
        out["plots"].append({"feature": r["feature"], "values": pts, "box": {"selected": _box(a), "rest": _box(b)}})
    for r in rows:
        del r["_j"]
    out["features"] = rows
    out["causes"] = list(causes.values())
    return out


def _forest(x: np.ndarray, y: np.ndarray, names: list[str], seed: int, repeats: int = 10) -> dict[str, Any]:
    """A random forest and permutation importance per feature and per cause. Per cause, all the features of one
    signal are shuffled together: mean, min and max of one gauge are near copies, and shuffling one of them alone
    costs the forest nothing (the others still carry it), which would hide the strongest cause."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import balanced_accuracy_score

    med = np.nanmedian(x, axis=0)
    x = np.where(np.isnan(x), med, x)
    model = RandomForestClassifier(n_estimators=100, min_samples_leaf=2, class_weight="balanced", random_state=seed,
                                   n_jobs=1)
    model.fit(x, y)
    base = balanced_accuracy_score(y, model.predict(x))
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for j, n in enumerate(names):
        groups.setdefault(cause_of(n), []).append(j)

    def importance(cols: list[int]) -> tuple[float, float]:
        drops = []
        for _ in range(repeats):
            xp = x.copy()
            perm = rng.permutation(x.shape[0])
            xp[:, cols] = x[perm][:, cols]
            drops.append(base - balanced_accuracy_score(y, model.predict(xp)))
        return float(np.mean(drops)), float(np.std(drops))

    # the features come ranked by the tests: the forest's view of the first `MAX_PERMUTED` is what a plot shows,
    # and each permutation costs a prediction of the whole forest
    per_feature = [(names[j], *importance([j])) for j in range(min(len(names), MAX_PERMUTED))]
    per_cause = [(c, *importance(cols)) for c, cols in list(groups.items())[:MAX_PERMUTED]]
    per_feature.sort(key=lambda r: -r[1])
    per_cause.sort(key=lambda r: -r[1])
    return {"training_balanced_accuracy": float(base), "repeats": repeats,
            "importances": [{"feature": n, "importance_mean": m, "importance_std": s, "rank": k + 1}
                            for k, (n, m, s) in enumerate(per_feature)],
            "cause_importances": [{"cause": n, "importance_mean": m, "importance_std": s, "rank": k + 1}
                                  for k, (n, m, s) in enumerate(per_cause)]}


def select(feats: Sequence[dict[str, float]], cells: Sequence[str], *, formation_failed: bool = False,
           capacity_below: float | None = None, capacity_key: str = "formation:discharge_capacity_Ah",
           given: Sequence[str] | None = None) -> list[bool]:
    """Which cells are in the set to explain: a given list, formation failed (``passed`` false or ``aborted``), or
    the capacity below a threshold."""
    if given:
        wanted = set(given)
        return [c in wanted for c in cells]
    if formation_failed:
        return [f.get("formation:passed") == 0.0 or f.get("formation:aborted") == 1.0 for f in feats]
    if capacity_below is not None:
        return [f.get(capacity_key) is not None and f[capacity_key] < capacity_below for f in feats]
    raise ValueError("choose the cells to explain: cells=..., formation_failed=true or capacity_below=...")
