"""Run one benchmark contender in a fresh Python process; it reports its own peak memory.

The peak is VmHWM from /proc/self/status: the high-water mark of the process's own address
space since exec, so it counts native allocations (DuckDB, BLAS) and, unlike ru_maxrss, does
not inherit the parent's peak at fork time.
"""

from __future__ import annotations

import json
import subprocess
import sys


def peak_gb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def report(result: dict) -> None:
    """In the contender: print its result with its peak memory, as the last line of stdout."""
    print(json.dumps({**result, "peak_gb": peak_gb()}))


def run_measured(*args: str) -> dict:
    """Run ``python *args`` (a contender that ends with :func:`report`); return what it reported."""
    proc = subprocess.run([sys.executable, *args], stdout=subprocess.PIPE, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
