"""Benchmark: loading a line-item export under each returns policy (issue 14).

    python benchmarks/bench_returns.py                   # 200,000 customers, about 2.2M lines
    python benchmarks/bench_returns.py --customers 5e4

The file is the generator's (``synthetic_line_items``: cancellations 0-30 days after their order,
``C`` + invoice), cached as Parquet in benchmarks/.data. Each policy loads and validates it in a
fresh process (``load_transactions`` + accounting). Baseline: ``net`` (same-day netting), measured
in the same run; ``net-earlier`` matches returns to earlier orders in Python, over the customers
who have returns. Prints seconds, peak GB, the ratio to the baseline and where the returns went.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _measure import report, run_measured

DATA = Path(__file__).resolve().parent / ".data"
COLUMNS = {"customer_id": "CustomerID", "date": "InvoiceDate", "order_id": "InvoiceNo",
           "quantity": "Quantity", "unit_price": "UnitPrice"}


def run_one(policy: str, path: str) -> dict:
    from clvtier.data import load_transactions
    from clvtier.data.datasets import FEE_CODES

    t0 = time.perf_counter()
    extra = {"return_prefix": "C"} if policy == "net-earlier" else {}
    tx = load_transactions(path, columns=COLUMNS, date_format="%m/%d/%Y %H:%M", returns=policy,
                           exclude={"StockCode": list(FEE_CODES)}, **extra)
    acc = tx.accounting()
    assert acc.balanced()
    return {"seconds": time.perf_counter() - t0, "rows": acc.rows_read, "netted": acc.returns_netted,
            "unmatched": acc.quarantined.get("unmatched_return", 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=float, default=2e5)
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        report(run_one(*args.one))
        return
    n = int(args.customers)
    path = DATA / f"line_items_{n}.parquet"
    if not path.exists():
        from clvtier.data.datasets import synthetic_line_items

        DATA.mkdir(exist_ok=True)
        synthetic_line_items(n, seed=1).to_parquet(path, index=False)
    results = {p: run_measured(__file__, "--one", p, str(path)) for p in ("net", "net-earlier")}
    base = results["net"]["seconds"]
    print(f"\n{n:,} customers, {results['net']['rows']:,} lines\n")
    print("| returns policy | seconds | peak GB | x net | returns netted | unmatched_return |")
    print("| --- | --- | --- | --- | --- | --- |")
    for policy, r in results.items():
        print(f"| {policy} | {r['seconds']:.1f} | {r['peak_gb']:.2f} | {r['seconds'] / base:.2f} | "
              f"{r['netted']:,} | {r['unmatched']:,} |")


if __name__ == "__main__":
    main()
