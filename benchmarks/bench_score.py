"""Benchmark: batch scoring (`clvtier score`) at 1M and 10M customers, about 10 transactions each.

    python benchmarks/bench_score.py                        # 1M and 10M customers (in make bench)
    python benchmarks/bench_score.py --customers 1e5 1e6    # quicker

Set-up, cached in benchmarks/.data: a tiering model trained on ``experiments/synthetic.yaml``
(exported there, tracked in a private store) and synthetic BG/NBD + Gamma-Gamma transactions with
heavier buyers than CDNOW (r=0.55, alpha=3, a=0.5, b=5 over 104 weeks: about 10 per customer),
written to Parquet in chunks. Then, each in a fresh process so that its peak memory (VmHWM,
DuckDB's native memory included) is its own:

- baseline: a hand-written DuckDB query of the classic RFM columns per customer from the same
  file, to a count (read + aggregate, no validation, no model): the floor on this hardware;
- in memory (up to ``--in-memory-max`` customers): the file read whole into pandas, the model's
  ``predict`` and the policy on the whole table, one ``to_parquet``: what scoring without the
  batch job looks like;
- clvtier: ``score(...)``: read, validate, features, RFM scores, model, policy, write the tiers
  Parquet atomically (MLflow logging off: it is constant, about a second).

Prints seconds, customers per second, peak GB and the ratio to the baseline; checks the targets
at 10M customers / 100M transactions: 150 s and 8 GB.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from _measure import report, run_measured

DATA = Path(__file__).resolve().parent / ".data"
ROOT = Path(__file__).resolve().parents[1]
PARAMS = {"r": 0.55, "alpha": 3.0, "a": 0.5, "b": 5.0}
WEEKS = 104
AS_OF = "2021-12-28"  # the last day of the 104 simulated weeks from 2020-01-01
MODEL = DATA / "score_model" / "clvtier-synthetic"

BASELINE_SQL = """
SELECT count(*), sum(m) FROM (
    SELECT customer_id, DATE '{as_of}' - max(CAST(date AS DATE)) AS r, count(*) AS f, sum(amount) AS m
    FROM read_parquet('{path}') WHERE CAST(date AS DATE) <= DATE '{as_of}' GROUP BY customer_id)
"""


def ensure_model() -> Path:
    if (MODEL / "registered.json").is_file():
        return MODEL
    from clvtier.config import load_config
    from clvtier.pipelines.train import train

    config = load_config(ROOT / "experiments" / "synthetic.yaml",
                         [f"registry.export_dir={MODEL.parent}"])
    MODEL.parent.mkdir(parents=True, exist_ok=True)  # the tracking store's folder must exist
    train(config, tracking_uri=f"sqlite:///{DATA / 'score_model' / 'mlflow.db'}")
    return MODEL


def ensure_data(customers: int) -> Path:
    from clvtier.data.datasets import write_synthetic

    path = DATA / f"score_tx_{customers}.parquet"
    if not path.exists():
        t0 = time.perf_counter()
        counts = write_synthetic(path, customers, seed=3, params=PARAMS, observation_weeks=WEEKS)
        print(f"  generated {counts} in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


def run_one(kind: str, path: str, out: str) -> dict:
    t0 = time.perf_counter()
    if kind == "baseline":
        import duckdb

        n, _ = duckdb.connect().sql(BASELINE_SQL.format(path=path, as_of=AS_OF)).fetchall()[0]
        result = {"customers": int(n)}
    elif kind == "in_memory":
        import pandas as pd

        from clvtier.tiering.policy import load_policy
        from clvtier.tracking.models import load_model

        model = load_model(str(MODEL)).model
        scored = model.predict(pd.read_parquet(path), AS_OF)
        verdict = load_policy().fit(scored).assign(scored)
        pd.concat([scored, verdict], axis=1).to_parquet(out, index=False)
        result = {"customers": len(scored)}
    else:
        from clvtier.pipelines.score import score

        scored = score(str(MODEL), path, as_of=AS_OF, output=out, log_to_mlflow=False)
        result = {"customers": scored.customers, "rows": scored.accounting.rows_read,
                  "steps": {k: round(v, 1) for k, v in scored.seconds.items()},
                  "premium_share": float(scored.tiers["share_customers"].iloc[0])}
    result["seconds"] = time.perf_counter() - t0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=float, nargs="+", default=[1e6, 1e7])
    parser.add_argument("--in-memory-max", type=float, default=2e6,
                        help="run the in-memory contender up to this many customers (default 2e6)")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        report(run_one(*args.one))
        return
    DATA.mkdir(exist_ok=True)
    print("set-up: model", ensure_model(), flush=True)
    rows = []
    for n in (int(c) for c in args.customers):
        path = ensure_data(n)
        out = DATA / f"score_out_{n}.parquet"
        base = run_measured(__file__, "--one", "baseline", str(path), str(out))
        ours = run_measured(__file__, "--one", "score", str(path), str(out))
        assert ours["customers"] == base["customers"], (ours, base)
        naive = None
        if n <= args.in_memory_max:
            naive = run_measured(__file__, "--one", "in_memory", str(path), str(out) + ".naive.parquet")
        rows.append((n, ours["rows"], base, ours, naive))
        print(f"  {n:,} customers: steps {ours['steps']}", flush=True)
    print("\n| customers | transactions | contender | seconds | customers/s | peak GB | x baseline |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n, tx, base, ours, naive in rows:
        contenders = [("baseline: DuckDB RFM query", base), ("in memory: pandas + model.predict", naive),
                      ("clvtier score", ours)]
        for name, r in contenders:
            if r is None:
                print(f"| {n:,} | {tx:,} | {name} | not run (whole table in pandas) | | | |")
                continue
            print(f"| {n:,} | {tx:,} | {name} | {r['seconds']:.1f} | {n / r['seconds']:,.0f} | "
                  f"{r['peak_gb']:.2f} | {r['seconds'] / base['seconds']:.1f} |")
    for n, tx, _, ours, _ in rows:
        if n >= 10_000_000:
            fast, small = ours["seconds"] <= 150, ours["peak_gb"] <= 8
            print(f"target: {n:,} customers / {tx:,} transactions within 150 s: "
                  f"{'met' if fast else 'NOT met'} ({ours['seconds']:.0f} s); within 8 GB: "
                  f"{'met' if small else 'NOT met'} ({ours['peak_gb']:.1f} GB)")


if __name__ == "__main__":
    sys.exit(main())
