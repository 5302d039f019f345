"""Benchmark: per-customer BTYD summary from a transactions file.

    python benchmarks/bench_features.py                      # 10M transactions (default)
    python benchmarks/bench_features.py --transactions 1e6   # quicker

Generates synthetic transactions (BG/NBD + Gamma-Gamma, CDNOW parameters) into a Parquet file
(cached in benchmarks/.data), then times, each in a fresh subprocess so that peak memory is its
own (VmHWM, which counts DuckDB's native allocations too; see _measure.py):

- lifetimes: ``summary_data_from_transaction_data`` on the DataFrame (reading the Parquet file
  into pandas is timed separately and not charged to it);
- hand-written DuckDB SQL: the same summary from the same file, straight to pandas: the
  practical limit on this hardware;
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


def run_one(kind: str, path: str) -> dict:
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
            observation_period_end=AS_OF, freq="D")
        out["seconds"] = time.perf_counter() - t0
    elif kind == "duckdb_sql":
        import duckdb

        t0 = time.perf_counter()
        result = duckdb.connect().sql(HAND_SQL.format(path=path, as_of=AS_OF)).df()
        out["seconds"] = time.perf_counter() - t0
    elif kind in ("clvtier", "clvtier_full"):
        from clvtier.data import load_transactions
        from clvtier.features import btyd_summary, customer_features

        t0 = time.perf_counter()
        tx = load_transactions(path)
        out["load_s"] = time.perf_counter() - t0
        fn = btyd_summary if kind == "clvtier" else customer_features
        result = fn(tx, as_of=AS_OF)
        out["seconds"] = time.perf_counter() - t0
        out["rows_read"] = tx.accounting(AS_OF).rows_read
        t0 = time.perf_counter()
        fn(tx, as_of="2021-01-01")  # another cutoff on the loaded data
        out["again_s"] = time.perf_counter() - t0
    else:
        raise SystemExit(f"unknown contender {kind}")
    out["customers"] = len(result)
    out["frequency_sum"] = float(result["frequency"].sum())
    out["monetary_sum"] = round(float(result["monetary_value"].sum()), 2)
    return out


def measure(kind: str, path: Path) -> dict:
    result = run_measured(__file__, "--run", kind, "--file", str(path))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=float, default=10e6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per contender (best kept)")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        report(run_one(args.run, args.file))
        return

    path = make_data(int(args.transactions), args.seed)
    results = {}
    for kind in ("lifetimes", "duckdb_sql", "clvtier", "clvtier_full"):
        runs = [measure(kind, path) for _ in range(args.repeat)]
        results[kind] = min(runs, key=lambda r: r["seconds"])
    rows = results["clvtier"]["rows_read"]
    print(f"\n{rows:,} transactions, {results['clvtier']['customers']:,} customers, "
          f"{os.cpu_count()} cores; best of {args.repeat}")
    print(f"{'contender':<14}{'seconds':>9}{'peak MB':>9}{'vs lifetimes':>14}{'vs SQL':>8}")
    base, sql = results["lifetimes"]["seconds"], results["duckdb_sql"]["seconds"]
    for kind, r in results.items():
        print(f"{kind:<14}{r['seconds']:>9.2f}{r['peak_mb']:>9.0f}"
              f"{base / r['seconds']:>13.1f}x{r['seconds'] / sql:>7.2f}x")
    print(f"(lifetimes' input read from Parquet in {results['lifetimes']['read_s']:.2f} s, "
          f"not counted; clvtier load+validate {results['clvtier']['load_s']:.2f} s of its time)")
    print(f"clvtier at a second as_of on the loaded data: summary "
          f"{results['clvtier']['again_s']:.2f} s, full features "
          f"{results['clvtier_full']['again_s']:.2f} s")
    checks = {k: (r["customers"], r["frequency_sum"], r["monetary_sum"])
              for k, r in results.items()}
    agree = len(set(checks.values())) == 1
    print("results agree (customers, sum frequency, sum monetary_value):",
          "yes" if agree else f"NO {checks}")
    clv = results["clvtier"]
    targets = {
        ">= 5x faster than lifetimes": base / clv["seconds"] >= 5,
        "<= 1.5x the hand-written SQL": clv["seconds"] / sql <= 1.5,
        "< 4 GB peak memory": clv["peak_mb"] < 4096,
    }
    for name, ok in targets.items():
        print(f"  target {name}: {'met' if ok else 'MISSED'}")
    if not agree:
        sys.exit(1)


if __name__ == "__main__":
    main()
