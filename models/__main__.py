"""Command line: ``python -m models train|validate|predict|analyse``.

    python -m models train [--quick] [--out DIR]        # DOE -> physics -> surrogates -> ONNX + cards
    python -m models validate --seed S --n N [--dir D]  # fresh Sobol points through physics and ONNX -> metrics JSON
    echo '{"model": "structure", "inputs": {...}}' | python -m models predict   # JSON in, JSON out
    python -m models analyse [--what mc|ancova|sobol|pareto|inverse|cost] # seed 001 / 000 analyses, JSON out
    python -m models calibrate [--dir D] [--work W]     # fresh physics -> split-conformal 95 % intervals in the cards
"""

from __future__ import annotations

import os

os.environ.setdefault("PYBAMM_DISABLE_TELEMETRY", "true")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_train(args: argparse.Namespace) -> int:
    from models import train

    cfg = train.QUICK if args.quick else train.TrainConfig()
    if args.processes is not None:
        from dataclasses import replace

        cfg = replace(cfg, processes=args.processes)
    out = Path(args.out) if args.out else train.ARTIFACTS
    cards = train.train(cfg, out, log=_log, only=args.only)
    summary = {name: {o["name"]: {"family": o["family"], **{k: o["metrics"][k] for k in ("rmse_pct", "r2", "r2_ci95")},
                                  "meets_targets": o["meets_targets"]} for o in card["outputs"]}
               for name, card in cards.items()}
    print(json.dumps(summary, indent=1))
    return 0


def validate(seed: int, n: int, directory: Path | None = None, processes: int = 2, model: str = "DFN",
             work: Path | None = None) -> dict[str, Any]:
    """Fresh scrambled Sobol points (a seed nobody trained on) through the physics and through the ONNX runtime."""
    import tempfile

    from models import doe
    from models import surrogates as sg
    from models.runtime import ModelRegistry

    reg = ModelRegistry.load(directory)
    x = doe.sobol_design(doe.ALL_INPUTS, n, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        data = doe.run_doe(x, Path(work or tmp), model_name=model, processes=processes, log=_log)
    truth = {**data["y"]}
    xs = data["x"]
    report: dict[str, Any] = {"seed": seed, "n": n, "n_failed_physics": int(np.sum(data["failed"])),
                              "failures": [e for e in data["errors"] if e], "models": {}}
    for name in reg.names:
        res = reg.predict(name, xs)
        per_output: dict[str, dict[str, Any]] = {}
        for o, pred in res.outputs.items():
            t = np.asarray(truth[o], dtype=float)
            ok = np.isfinite(t) & res.in_domain
            within = (float(np.mean(np.abs(pred[ok] - t[ok]) <= 2 * res.ensemble_std[o][ok])) if ok.any()
                      else float("nan"))
            covered = (float(np.mean((t[ok] >= res.lower[o][ok]) & (t[ok] <= res.upper[o][ok]))) if ok.any()
                       else float("nan"))
            per_output[o] = {
                "rmse_pct": float(sg.rmse_pct(t[ok][:, None], pred[ok][:, None])[0]),
                "r2": float(sg.r2(t[ok][:, None], pred[ok][:, None])[0]),
                "fraction_within_2std": within,  # of the raw ensemble spread
                "coverage_95": covered,  # of the calibrated 95 % interval
                "meets_targets": None,
            }
            per_output[o]["meets_targets"] = bool(per_output[o]["r2"] >= sg.TARGET_R2
                                                  and per_output[o]["rmse_pct"] <= sg.TARGET_RMSE_PCT)
        report["models"][name] = {"version": res.model_version, "outputs": per_output,
                                  "all_meet_targets": all(v["meets_targets"] for v in per_output.values())}
    return report


def cmd_validate(args: argparse.Namespace) -> int:
    report = validate(args.seed, args.n, Path(args.dir) if args.dir else None, args.processes, args.model)
    print(json.dumps(report, indent=1))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from models import calibration

    directory = Path(args.dir) if args.dir else Path(__file__).resolve().parent / "artifacts"
    work = Path(args.work) if args.work else directory / "work"
    sets = calibration.run_dfn_sets(work, work, processes=args.processes, log=_log)
    report = calibration.calibrate_artifacts(directory, sets, log=_log)
    print(json.dumps({name: {"n": c["n"], "source": c["source"],
                             "scale_95": {o: v["scale_95"] for o, v in c["outputs"].items()}}
                      for name, c in report.items()}, indent=1))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from models.runtime import ModelRegistry

    text = sys.stdin.read() if args.json == "-" else Path(args.json).read_text(encoding="utf-8")
    try:
        req = json.loads(text)
    except json.JSONDecodeError as exc:
        print(json.dumps({"error": f"input is not valid JSON: {exc}"}))
        return 2
    if not isinstance(req, dict) or "model" not in req or not isinstance(req.get("inputs"), dict):
        print(json.dumps({"error": 'expected {"model": NAME, "inputs": {input_name: number or [numbers]}}'}))
        return 2
    reg = ModelRegistry.load(Path(args.dir) if args.dir else None)
    try:
        res = reg.predict(str(req["model"]), req["inputs"])
    except (KeyError, ValueError, TypeError) as exc:
        print(json.dumps({"error": str(exc).strip('"')}))
        return 2
    print(json.dumps({"model": req["model"], "model_version": res.model_version,
                      "outputs": {k: v.tolist() for k, v in res.outputs.items()},
                      "std": {k: v.tolist() for k, v in res.std.items()},
                      "lower_95": {k: v.tolist() for k, v in res.lower.items()},
                      "upper_95": {k: v.tolist() for k, v in res.upper.items()}, "calibrated": res.calibrated,
                      "units": res.units,
                      "in_domain": res.in_domain.tolist(), "violations": res.violations}))
    return 0


def cmd_analyse(args: argparse.Namespace) -> int:
    from models import analysis

    out = analysis.run(args.what, Path(args.dir) if args.dir else None)
    print(json.dumps(out, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m models", description="physics, surrogates and their runtime")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="DOE -> physics -> surrogates -> ONNX + model cards")
    t.add_argument("--quick", action="store_true", help="tiny CI-sized run (32 DFN points)")
    t.add_argument("--out", default=None, help="output directory (default models/artifacts)")
    t.add_argument("--processes", type=int, default=None)
    t.add_argument("--only", choices=["structure"], default=None,
                   help="refit only the structure surrogate (process chain, no DFN); other artifacts are kept")
    t.set_defaults(func=cmd_train)
    v = sub.add_parser("validate", help="fresh Sobol points through physics and ONNX; metrics JSON")
    v.add_argument("--seed", type=int, default=99)
    v.add_argument("--n", type=int, default=64)
    v.add_argument("--dir", default=None)
    v.add_argument("--processes", type=int, default=2)
    v.add_argument("--model", default="DFN", choices=["DFN", "SPMe"])
    v.set_defaults(func=cmd_validate)
    c = sub.add_parser("calibrate", help="fresh DFN + process-chain points -> split-conformal intervals in the "
                                         "cards (resumable DFN chunks under --work)")
    c.add_argument("--dir", default=None, help="artifacts directory (default models/artifacts)")
    c.add_argument("--work", default=None, help="DFN chunk directory (default <dir>/work)")
    c.add_argument("--processes", type=int, default=1)
    c.set_defaults(func=cmd_calibrate)
    r = sub.add_parser("predict", help="JSON in (stdin or file), JSON out")
    r.add_argument("--json", default="-")
    r.add_argument("--dir", default=None)
    r.set_defaults(func=cmd_predict)
    a = sub.add_parser("analyse", help="Monte Carlo, Sobol indices, Pareto front, inverse design, plant costs")
    a.add_argument("--what", default="all", choices=["all", "mc", "ancova", "sobol", "pareto", "inverse", "cost"])
    a.add_argument("--dir", default=None)
    a.set_defaults(func=cmd_analyse)
    args = p.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
