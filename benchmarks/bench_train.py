"""Training on CDNOW with MLflow tracking against the bare out-of-time benchmark, same run.

    .venv/bin/python benchmarks/bench_train.py

Contenders, each in its own process (imports included, as a user would run them):
- baseline: ``evaluate_models`` on CDNOW (the five CLV/churn models, no clusters, no MLflow);
- train, new store: ``train(experiments/cdnow.yaml)`` into a fresh SQLite store (MLflow migrates it);
- train, existing store: the same config again into that store (registers a challenger).
Prints seconds, the ratio to the baseline and each process's peak memory; the issue's target is
under 2 minutes for the whole train on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _measure import report, run_measured

CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "cdnow.yaml"
TARGET_SECONDS = 120


def contender(kind: str, folder: Path) -> None:
    start = time.perf_counter()
    if kind == "baseline":
        from clvtier.data import load_transactions
        from clvtier.data.datasets import load_cdnow
        from clvtier.pipelines.evaluate_models import CDNOW_PROTOCOL, evaluate_models

        evaluate_models(load_transactions(load_cdnow()), **CDNOW_PROTOCOL)
        extra = {}
    else:
        os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
        from clvtier.config import load_config
        from clvtier.pipelines.train import train

        config = load_config(CONFIG, [f"registry.export_dir={folder / 'models'}"])
        result = train(config, tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
        extra = {"alias": result.alias, "steps": {k: round(v, 2) for k, v in result.step_seconds.items()}}
    report({"seconds": time.perf_counter() - start, **extra})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run")
    parser.add_argument("--folder")
    args = parser.parse_args()
    if args.run:
        contender(args.run, Path(args.folder))
        return
    with tempfile.TemporaryDirectory(prefix="bench-train-") as folder:
        results = {
            name: run_measured(__file__, "--run", kind, "--folder", folder)
            for name, kind in [
                ("baseline (evaluate_models)", "baseline"),
                ("train, new store", "train"),
                ("train, existing store", "train"),
            ]
        }
    base = results["baseline (evaluate_models)"]["seconds"]
    print(f"CDNOW, 23,570 customers, {os.cpu_count()} cores; each contender in its own process\n")
    print(f"{'contender':<28}{'seconds':>9}{'x baseline':>12}{'peak GB':>9}  registry")
    for name, r in results.items():
        ratio = r["seconds"] / base
        print(f"{name:<28}{r['seconds']:>9.1f}{ratio:>12.2f}{r['peak_gb']:>9.2f}  {r.get('alias', '')}")
    for name, r in results.items():
        if "steps" in r:
            print(f"{name}: " + ", ".join(f"{k} {v:.1f} s" for k, v in r["steps"].items()))
    worst = max(r["seconds"] for r in results.values())
    verdict = "under" if worst < TARGET_SECONDS else "OVER"
    print(f"\nslowest train {worst:.1f} s: {verdict} the {TARGET_SECONDS} s target")


if __name__ == "__main__":
    main()
