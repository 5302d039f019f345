"""Benchmark: features and scoring at scale, on the local engine and on Spark.

    python benchmarks/bench_scale.py                         # 10M customers, ~100M transactions
    python benchmarks/bench_scale.py --customers 1e6         # ~10M transactions (quicker)
    python benchmarks/bench_scale.py --engines local spark   # leave out the standalone cluster

The data are the scoring benchmark's (BG/NBD purchases with about 10 transactions per customer,
written to Parquet once and cached in benchmarks/.data), scored with its model. Measured in one
run, each contender in its own process:

- local: ``clvtier features`` and ``clvtier score`` (DuckDB), peak = the process's VmHWM;
- spark: the same commands with ``--engine spark`` on ``local[2]``;
- cluster-1 / cluster-2: ``spark-submit`` of the same commands to a standalone cluster on this
  machine (``clvtier.spark.cluster``: a master and one or two one-core, 4 GB workers);
- lifetimes: ``summary_data_from_transaction_data`` on the first N transactions, N growing
  tenfold from 10^5 while it finishes within ``--lifetimes-limit`` seconds.

For Spark the peak memory is sampled every half second over the process tree: the driver (the
Python process and its JVM) and the executors (executor JVMs and their Python workers) apart.
Prints seconds, transactions per second, peaks, and ratios to the local engine; checks each Spark
output against the local one (same customers; same tiers for the scores).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench_score import AS_OF, DATA, ensure_data, ensure_model

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "clvtier"]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                parent = int(fh.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        tree.setdefault(parent, []).append(int(entry))
    return tree


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class TreePeak:
    """Peak RSS, sampled every half second, of the descendants of this process: driver-side
    processes and executors (below a CoarseGrainedExecutorBackend JVM) apart; the standalone
    master and worker daemons are left out."""

    def __init__(self):
        self.driver = self.executors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.is_set():
            tree, driver, executors = _children(), 0, 0
            stack = [(pid, "driver") for pid in tree.get(os.getpid(), [])]
            while stack:
                pid, side = stack.pop()
                command = _cmdline(pid)
                if "deploy.master.Master" in command or "deploy.worker.Worker" in command:
                    side = "daemon"
                elif "CoarseGrainedExecutorBackend" in command:
                    side = "executor"
                if side == "driver":
                    driver += _rss(pid)
                elif side == "executor":
                    executors += _rss(pid)
                stack += [(child, side) for child in tree.get(pid, [])]
            self.driver, self.executors = max(self.driver, driver), max(self.executors, executors)
            self._stop.wait(0.5)


def run(name: str, command: list[str]) -> dict:
    """Run one command, timing it and sampling its memory; fail loudly on a non-zero exit."""
    t0 = time.perf_counter()
    with TreePeak() as peak:
        proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    print(f"  {name}: {seconds:.1f} s", flush=True)
    return {"seconds": seconds, "driver_gb": peak.driver / 1e9, "executors_gb": peak.executors / 1e9}


def commands(engine: str, path: Path, out: Path) -> dict[str, list[str]]:
    spark = [] if engine == "local" else ["--engine", "spark"]
    if engine == "spark":
        spark += ["--spark-master", "local[2]"]
    suffix = "" if engine == "local" else f".{engine}"
    return {"features": ["features", "-i", str(path), "--as-of", AS_OF,
                         "-o", str(out / f"features{suffix}.parquet"), *spark],
            "score": ["score", "-m", str(ensure_model()), "-i", str(path), "--as-of", AS_OF,
                      "-o", str(out / f"tiers{suffix}.parquet"), "--no-tracking", *spark]}


def lifetimes_limit(path: Path, rows: int, limit: float) -> tuple[int, float]:
    """The largest of 10^5, 10^6, ... first transactions (and the whole file) that lifetimes'
    summary finishes within ``limit`` seconds, with its time."""
    best = (0, 0.0)
    code = ("import sys, time, pyarrow.parquet as pq\n"
            "from lifetimes.utils import summary_data_from_transaction_data as s\n"
            "f = pq.ParquetFile(sys.argv[1]).iter_batches(batch_size=int(sys.argv[2]))\n"
            "frame = next(f).to_pandas()\n"
            "t = time.perf_counter(); s(frame, 'customer_id', 'date', monetary_value_col='amount', "
            "observation_period_end=sys.argv[3], freq='D'); print(time.perf_counter() - t)")
    sizes = [n for n in (10 ** k for k in range(5, 10)) if n < rows] + [rows]
    for n in sizes:
        try:
            proc = subprocess.run([sys.executable, "-c", code, str(path), str(n), AS_OF],
                                  capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            return best
        if proc.returncode:
            return best
        best = (n, float(proc.stdout.strip().splitlines()[-1]))
        print(f"  lifetimes {n:,} transactions: {best[1]:.1f} s", flush=True)
    return best


def same_tiers(a: Path, b: Path) -> bool:
    import duckdb

    con = duckdb.connect()
    query = ("SELECT count(*) FROM read_parquet('{a}') x FULL JOIN read_parquet('{b}/*.parquet') y "
             "USING (customer_id) WHERE x.tier IS DISTINCT FROM y.tier "
             "OR x.at_risk IS DISTINCT FROM y.at_risk OR x.tier_reason IS DISTINCT FROM y.tier_reason")
    return con.sql(query.format(a=a, b=b)).fetchall()[0][0] == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=float, default=1e7)
    parser.add_argument("--engines", nargs="+", default=["local", "spark", "cluster-1", "cluster-2"])
    parser.add_argument("--lifetimes-limit", type=float, default=600)
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    path = ensure_data(int(args.customers))
    out = DATA / f"scale_{int(args.customers)}"
    out.mkdir(exist_ok=True)
    import pyarrow.parquet as pq

    rows = pq.ParquetFile(path).metadata.num_rows
    print(f"{rows:,} transactions of {int(args.customers):,} customers: {path}", flush=True)
    results: dict[tuple[str, str], dict] = {}
    for engine in args.engines:
        if engine.startswith("cluster"):
            from clvtier.spark.cluster import standalone, submit_command

            with standalone(workers=int(engine.split("-")[1]), cores=1, memory="4g") as master:
                for job, command in commands(engine, path, out).items():
                    results[engine, job] = run(f"{engine} {job}", submit_command(master, command,
                                                                                 executor_memory="3g"))
        else:
            for job, command in commands(engine, path, out).items():
                results[engine, job] = run(f"{engine} {job}", CLI + command)
    limit = lifetimes_limit(path, rows, args.lifetimes_limit) if args.lifetimes_limit > 0 else (0, 0.0)

    print("\n| engine | job | seconds | transactions/s | driver peak GB | executors peak GB | x local |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (engine, job), r in results.items():
        local = results.get(("local", job))
        ratio = f"{r['seconds'] / local['seconds']:.1f}" if local else ""
        print(f"| {engine} | {job} | {r['seconds']:.1f} | {rows / r['seconds']:,.0f} | "
              f"{r['driver_gb']:.2f} | {r['executors_gb']:.2f} | {ratio} |")
    if limit[0]:
        print(f"\nlifetimes' summary: {limit[0]:,} transactions in {limit[1]:.1f} s (the largest size "
              f"tried, 10^5, 10^6, ... and the whole file, within {args.lifetimes_limit:.0f} s)")
    for engine in args.engines:
        if engine != "local" and ("local", "score") in results:
            ok = same_tiers(out / "tiers.parquet", out / f"tiers.{engine}.parquet")
            print(f"{engine}: tiers, flags and reasons equal the local engine's: {'yes' if ok else 'NO'}")
    if ("cluster-1", "features") in results and ("cluster-2", "features") in results:
        for job in ("features", "score"):
            gain = results["cluster-1", job]["seconds"] / results["cluster-2", job]["seconds"]
            print(f"{job}: two workers {gain:.2f}x the throughput of one")
    targets = {}
    full = rows >= 9e7  # the local targets are set for about 100M transactions
    if ("local", "features") in results and full:
        seconds = results["local", "features"]["seconds"]
        targets["local features of 100M transactions under 60 s"] = seconds < 60
    if ("local", "score") in results and full:
        targets["local score of 10M customers under 150 s"] = results["local", "score"]["seconds"] < 150
    if not full:
        print(f"  (the local targets are for about 100M transactions; this run has {rows:,})")
    if ("spark", "features") in results and ("local", "features") in results:
        targets["Spark local[2] features within 4x of local"] = (
            results["spark", "features"]["seconds"] <= 4 * results["local", "features"]["seconds"])
    for name, ok in targets.items():
        print(f"  target {name}: {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
