"""Benchmark: per-customer BTYD summary from a transactions file.

    python benchmarks/bench_features.py                      # 10M transactions, both shapes (default)
    python benchmarks/bench_features.py --transactions 1e6   # quicker
    python benchmarks/bench_features.py --shape heavy        # one shape

Two data shapes of about the same number of transactions: ``cdnow`` (CDNOW's purchase process,
2.8 transactions per customer: 3.6M customers at 10M) and ``heavy`` (the scoring benchmark's
heavier buyers, about 10 per customer: 1M customers at 10M).

Generates synthetic transactions (BG/NBD + Gamma-Gamma, CDNOW parameters) into a Parquet file
(cached in benchmarks/.data), then times, each in a fresh subprocess so that peak memory is its
own (VmHWM, which counts DuckDB's native allocations too; see _measure.py):

- lifetimes: ``summary_data_from_transaction_data`` on the DataFrame (reading the Parquet file
  into pandas is timed separately and not charged to it);
- hand-written DuckDB SQL: the same summary from the same file, straight to pandas: the
  practical limit on this hardware; and a hand-written query of the whole feature table;
- clvtier: ``load_transactions(file)`` (read, validate, quarantine, count duplicates) and then
  ``btyd_summary``; and the full ``customer_features`` table for reference.

Prints wall times, ratios against lifetimes and the hand-written query, and peak memory.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from _measure import report, run_measured

DATA = Path(__file__).resolve().parent / ".data"
ROWS_PER_CUSTOMER = 2.77  # CDNOW parameters over 78 weeks, measured
AS_OF = "2021-06-28"  # the last day of the 78 simulated weeks

HAND_SQL = """
WITH daily AS (
    SELECT customer_id, CAST(date AS DATE) AS date, sum(amount) AS amount
    FROM read_parquet('{path}') WHERE CAST(date AS DATE) <= DATE '{as_of}'
    GROUP BY ALL)
SELECT customer_id, count(*) - 1 AS frequency, max(date) - min(date) AS recency,
       DATE '{as_of}' - min(date) AS T,
       CASE WHEN count(*) > 1 THEN (sum(amount) - arg_min(amount, date)) / (count(*) - 1)
            ELSE 0 END AS monetary_value
FROM daily GROUP BY customer_id
"""

# The full feature table (the columns of clvtier.features.customer_features) in one query straight
# from the file, without validation: the floor for `clvtier features`.
HAND_FULL_SQL = """
WITH day AS (
    SELECT customer_id, CAST(date AS DATE) AS date, sum(amount) AS amount, count(*) AS purchases
    FROM read_parquet('{path}') WHERE CAST(date AS DATE) <= DATE '{as_of}' GROUP BY ALL),
gaps AS (SELECT *, date - lag(date) OVER (PARTITION BY customer_id ORDER BY date) AS gap FROM day),
per AS (
    SELECT customer_id, count(*) - 1 AS frequency, max(date) - min(date) AS recency,
           DATE '{as_of}' - min(date) AS T,
           CASE WHEN count(*) > 1 THEN (sum(amount) - arg_min(amount, date)) / (count(*) - 1)
                ELSE 0 END AS monetary_value,
           DATE '{as_of}' - max(date) AS recency_days, sum(purchases) AS frequency_count,
           sum(amount) AS monetary_total, DATE '{as_of}' - min(date) AS tenure_days,
           count(*) AS purchase_days, sum(amount) / sum(purchases) AS avg_order_value,
           coalesce(sum(amount) FILTER (WHERE date > DATE '{as_of}' - 30), 0) AS spend_30d,
           coalesce(sum(purchases) FILTER (WHERE date > DATE '{as_of}' - 30), 0) AS count_30d,
           coalesce(sum(amount) FILTER (WHERE date > DATE '{as_of}' - 90), 0) AS spend_90d,
           coalesce(sum(purchases) FILTER (WHERE date > DATE '{as_of}' - 90), 0) AS count_90d,
           coalesce(sum(amount) FILTER (WHERE date > DATE '{as_of}' - 180), 0) AS spend_180d,
           coalesce(sum(purchases) FILTER (WHERE date > DATE '{as_of}' - 180), 0) AS count_180d,
           coalesce(sum(amount) FILTER (WHERE date > DATE '{as_of}' - 180), 0) AS recent,
           coalesce(sum(amount) FILTER (WHERE date > DATE '{as_of}' - 360
                                         AND date <= DATE '{as_of}' - 180), 0) AS earlier,
           avg(gap) AS ipt_mean_days, stddev_samp(gap) AS ipt_std_days
    FROM gaps GROUP BY customer_id)
SELECT * EXCLUDE (recent, earlier),
       coalesce((recent - earlier) / nullif(abs(recent) + abs(earlier), 0), 0) AS spend_trend
FROM per
"""


def run_one(kind: str, path: str, as_of: str) -> dict:
    """Run one contender in this process; return its timing and a checksum of its result."""
    import pandas as pd

    out: dict = {}
    if kind == "lifetimes":
        t0 = time.perf_counter()
        frame = pd.read_parquet(path)
        out["read_s"] = time.perf_counter() - t0
        from lifetimes.utils import summary_data_from_transaction_data

        t0 = time.perf_counter()
        result = summary_data_from_transaction_data(
            frame, "customer_id", "date", monetary_value_col="amount",
            observation_period_end=as_of, freq="D")
        out["seconds"] = time.perf_counter() - t0
    elif kind in ("duckdb_sql", "duckdb_full_sql"):
        import duckdb

        t0 = time.perf_counter()
        sql = HAND_SQL if kind == "duckdb_sql" else HAND_FULL_SQL
        result = duckdb.connect().sql(sql.format(path=path, as_of=as_of)).df()
        out["seconds"] = time.perf_counter() - t0
    elif kind in ("clvtier", "clvtier_full"):
        from clvtier.data import load_transactions
        from clvtier.features import btyd_summary, customer_features

        t0 = time.perf_counter()
        tx = load_transactions(path)
        out["load_s"] = time.perf_counter() - t0
        fn = btyd_summary if kind == "clvtier" else customer_features
        result = fn(tx, as_of=as_of)
        out["seconds"] = time.perf_counter() - t0
        out["rows_read"] = tx.accounting(as_of).rows_read
        out.update(_checks(result))
        del result  # the second cutoff's table replaces the first, as in a run at another date
        t0 = time.perf_counter()
        fn(tx, as_of="2021-01-01")  # another cutoff on the loaded data
        out["again_s"] = time.perf_counter() - t0
        return out
    else:
        raise SystemExit(f"unknown contender {kind}")
    out.update(_checks(result))
    return out


def _checks(result) -> dict:
    out = {}
    out["customers"] = len(result)
    out["frequency_sum"] = float(result["frequency"].sum())
    out["monetary_sum"] = round(float(result["monetary_value"].sum()), 2)
    return out


def measure(kind: str, path: Path, as_of: str) -> dict:
    result = run_measured(__file__, "--run", kind, "--file", str(path), "--as-of", as_of)
    result["peak_mb"] = result.pop("peak_gb") * 1e3
    return result


def make_data(transactions: int, seed: int) -> Path:
    from clvtier.data.datasets import write_synthetic

    customers = int(transactions / ROWS_PER_CUSTOMER)
    path = DATA / f"tx_{customers}_{seed}.parquet"
    if not path.exists():
        t0 = time.perf_counter()
        info = write_synthetic(path, customers, seed=seed)
        print(f"generated {info['rows']:,} transactions of {customers:,} customers in "
              f"{time.perf_counter() - t0:.1f} s -> {path}")
    return path


def heavy_data(transactions: int) -> Path:
    """The scoring benchmark's data (about 10 transactions per customer), shared with it."""
    from bench_score import ensure_data

    return ensure_data(int(transactions / 10))


SHAPES = {"cdnow": (lambda n, seed: make_data(n, seed), AS_OF),
          "heavy": (lambda n, seed: heavy_data(n), "2021-12-28")}
KINDS = ("lifetimes", "duckdb_sql", "clvtier", "duckdb_full_sql", "clvtier_full")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=float, default=10e6)
    parser.add_argument("--shape", choices=[*SHAPES, "both"], default="both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per contender (best kept)")
    parser.add_argument("--skip-lifetimes", action="store_true", help="leave lifetimes out (slow)")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--as-of", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        report(run_one(args.run, args.file, args.as_of))
        return
    missed = False
    for shape in SHAPES if args.shape == "both" else [args.shape]:
        make, as_of = SHAPES[shape]
        missed |= bench_shape(shape, make(int(args.transactions), args.seed), as_of, args)
    if missed:
        sys.exit(1)


def bench_shape(shape: str, path: Path, as_of: str, args) -> bool:
    kinds = [k for k in KINDS if not (args.skip_lifetimes and k == "lifetimes")]
    results = {}
    for kind in kinds:
        runs = [measure(kind, path, as_of) for _ in range(args.repeat)]
        results[kind] = min(runs, key=lambda r: r["seconds"])
    rows = results["clvtier"]["rows_read"]
    print(f"\nshape {shape}: {rows:,} transactions, {results['clvtier']['customers']:,} customers, "
          f"{os.cpu_count()} cores; best of {args.repeat}")
    print(f"{'contender':<16}{'seconds':>9}{'peak MB':>9}{'vs lifetimes':>14}{'vs its SQL':>12}")
    base = results["lifetimes"]["seconds"] if "lifetimes" in results else float("nan")
    floor = {"lifetimes": "duckdb_sql", "duckdb_sql": "duckdb_sql", "clvtier": "duckdb_sql",
             "duckdb_full_sql": "duckdb_full_sql", "clvtier_full": "duckdb_full_sql"}
    for kind, r in results.items():
        print(f"{kind:<16}{r['seconds']:>9.2f}{r['peak_mb']:>9.0f}"
              f"{base / r['seconds']:>13.1f}x{r['seconds'] / results[floor[kind]]['seconds']:>11.2f}x")
    if "lifetimes" in results:
        print(f"(lifetimes' input read from Parquet in {results['lifetimes']['read_s']:.2f} s, not counted)")
    print(f"clvtier load+validate {results['clvtier']['load_s']:.2f} s of its time; at a second as_of on "
          f"the loaded data: summary {results['clvtier']['again_s']:.2f} s, full features "
          f"{results['clvtier_full']['again_s']:.2f} s")
    checks = {k: (r["customers"], r["frequency_sum"], r["monetary_sum"])
              for k, r in results.items()}
    agree = len(set(checks.values())) == 1
    print("results agree (customers, sum frequency, sum monetary_value):",
          "yes" if agree else f"NO {checks}")
    clv, full = results["clvtier"], results["clvtier_full"]
    targets = {} if shape != "cdnow" else {  # the summary's target was set on this shape
        "summary <= 1.5x the hand-written SQL": clv["seconds"] / results["duckdb_sql"]["seconds"] <= 1.5}
    targets |= {
        "full features <= 2x the hand-written full query":
            full["seconds"] / results["duckdb_full_sql"]["seconds"] <= 2,
        "full features < 4 GB peak memory": full["peak_mb"] < 4096,
    }
    if "lifetimes" in results:
        targets[">= 5x faster than lifetimes"] = base / clv["seconds"] >= 5
    for name, ok in targets.items():
        print(f"  target {name}: {'met' if ok else 'MISSED'}")
    return not agree or not all(targets.values())


if __name__ == "__main__":
    main()
