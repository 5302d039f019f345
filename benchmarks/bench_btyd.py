"""Benchmark: fitting BG/NBD and Gamma-Gamma, clvtier against plain lifetimes.

    python benchmarks/bench_btyd.py                     # 1M and 10M customers (default)
    python benchmarks/bench_btyd.py --customers 1e5     # quicker

Simulates a BTYD summary (BG/NBD + Gamma-Gamma with the published CDNOW parameters; first
purchases spread over 12 weeks, 78 weeks observed, purchase times on the daily clock, time in
weeks = days / 7) and caches it in benchmarks/.data. Each contender then runs in a fresh
subprocess so its peak memory is its own:

- lifetimes: ``BetaGeoFitter().fit`` on every customer, ``GammaGammaFitter().fit`` on repeat buyers;
- clvtier: ``BetaGeoModel().fit`` and ``GammaGammaModel().fit``, which compress identical rows
  into weights first (the compression is included in the time).

Prints fit times, the ratio lifetimes / clvtier, peak memory and the largest relative difference
between the two sets of parameters.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from _measure import report, run_measured

DATA = Path(__file__).resolve().parent / ".data"
BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
GG = {"p": 6.25, "q": 3.74, "gamma": 15.44}


def simulate_summary(n: int, seed: int = 0):
    """A BTYD summary drawn from BG/NBD + Gamma-Gamma, vectorised over customers."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    T_days = 546 - rng.integers(0, 84, n)
    lam = rng.gamma(BGNBD["r"], 1 / BGNBD["alpha"], n) / 7  # per day
    p = rng.beta(BGNBD["a"], BGNBD["b"], n)
    last = np.zeros(n)
    x = np.zeros(n, dtype=np.int64)
    active = np.arange(n)
    while active.size:
        nxt = last[active] + np.maximum(1, np.ceil(rng.exponential(1 / lam[active])))
        buys = nxt <= T_days[active]
        active = active[buys]
        last[active] = nxt[buys]
        x[active] += 1
        active = active[rng.random(active.size) >= p[active]]  # death after a purchase
    nu = rng.gamma(GG["q"], 1 / GG["gamma"], n)
    spend = np.where(x > 0, rng.gamma(GG["p"] * np.maximum(x, 1), 1 / (nu * np.maximum(x, 1))), 0.0)
    return pd.DataFrame({"frequency": x.astype(float), "recency": last / 7, "T": T_days / 7,
                         "monetary_value": np.round(spend, 2)})


def dataset(n: int) -> Path:
    path = DATA / f"btyd_summary_{n}.parquet"
    if not path.exists():
        DATA.mkdir(exist_ok=True)
        tmp = path.with_suffix(".tmp")
        simulate_summary(n).to_parquet(tmp)
        os.replace(tmp, path)
    return path


def run_one(kind: str, path: str) -> dict:
    import warnings

    import pandas as pd

    s = pd.read_parquet(path)
    s.attrs["time_unit"] = "weeks"
    repeat = s[s["frequency"] > 0]
    with warnings.catch_warnings():  # imports are not timed
        warnings.simplefilter("ignore")
        from lifetimes import BetaGeoFitter, GammaGammaFitter

        from clvtier.clv import BetaGeoModel, GammaGammaModel
    t0 = time.perf_counter()
    if kind == "lifetimes":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bg = BetaGeoFitter().fit(s["frequency"], s["recency"], s["T"])
            t_bg = time.perf_counter() - t0
            gg = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
        params = {**bg.params_.to_dict(), **{f"gg_{k}": v for k, v in gg.params_.items()}}
    else:
        bg = BetaGeoModel().fit(s)
        t_bg = time.perf_counter() - t0
        gg = GammaGammaModel().fit(s)
        params = {**bg.params_, **{f"gg_{k}": v for k, v in gg.params_.items()}}
        params["distinct_rows"] = bg.n_distinct_rows_
    return {"bgnbd_s": t_bg, "total_s": time.perf_counter() - t0, "params": params}


def measure(kind: str, path: Path) -> dict:
    return run_measured(__file__, "--one", kind, str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=float, nargs="*", default=[1e6, 1e7])
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        report(run_one(*args.one))
        return
    print(f"{'customers':>11} {'contender':>10} {'BG/NBD fit':>11} {'+ GG':>8} {'peak GB':>8}  params")
    for n in map(int, args.customers):
        path = dataset(n)
        res = {kind: measure(kind, path) for kind in ("lifetimes", "clvtier")}
        for kind, r in res.items():
            shown = ", ".join(f"{k}={v:.6g}" for k, v in r["params"].items())
            print(f"{n:>11,} {kind:>10} {r['bgnbd_s']:>10.2f}s {r['total_s']:>7.2f}s "
                  f"{r['peak_gb']:>8.2f}  {shown}")
        lt, ct = res["lifetimes"], res["clvtier"]
        diff = max(abs(ct["params"][k] / v - 1) for k, v in lt["params"].items())
        print(f"{'':>11} {'ratio':>10} {lt['bgnbd_s'] / ct['bgnbd_s']:>10.1f}x "
              f"{lt['total_s'] / ct['total_s']:>7.1f}x {lt['peak_gb'] / ct['peak_gb']:>8.1f}x  "
              f"max relative parameter difference {diff:.1e}")


if __name__ == "__main__":
    main()
