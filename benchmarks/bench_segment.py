"""Benchmark: learned segments (KMeans, Gaussian mixture) on 1M customers, k chosen over 2..8.

    python benchmarks/bench_segment.py                     # 1M customers (default)
    python benchmarks/bench_segment.py --customers 2e5     # quicker

The feature table comes from synthetic transactions (BG/NBD + Gamma-Gamma, CDNOW parameters)
through ``customer_features`` and is cached in benchmarks/.data. Each contender runs in a fresh
subprocess (peak memory is its own: VmHWM, see _measure.py):

- clvtier: ``ValueClusters`` (k chosen on a 50k sample, silhouette on 5k or BIC, then one refit
  on every customer from the sample's solution, clusters numbered by value);
- naive: what one writes with scikit-learn directly, the same features (signed log1p,
  standardised): every k fitted on every customer (KMeans ``n_init="auto"``, or the mixture),
  scored by ``silhouette_score(sample_size=5000)`` or BIC on every customer.

Prints the wall time, the ratio naive / clvtier, the k each picked, the agreement of their labels
(adjusted Rand index) and peak memory. The issue's target: clvtier under 60 s at 1M on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _measure import report, run_measured

DATA = Path(__file__).resolve().parent / ".data"
FEATURES = ["recency_days", "frequency_count", "monetary_total"]
K_RANGE = (2, 8)


def features_path(customers: int) -> Path:
    path = DATA / f"features_{customers}.parquet"
    if not path.exists():
        from clvtier.data import load_transactions
        from clvtier.data.datasets import write_synthetic
        from clvtier.data.io import write_frame
        from clvtier.features import customer_features

        DATA.mkdir(exist_ok=True)
        tx_path = DATA / f"segment_tx_{customers}.parquet"
        if not tx_path.exists():
            write_synthetic(tx_path, customers, seed=0)
        table = customer_features(load_transactions(tx_path), as_of="2021-06-28")
        write_frame(table[["customer_id", *FEATURES]], path)
    return path


def run_one(kind: str, method: str, path: str, labels_out: str) -> dict:
    import numpy as np
    import pandas as pd

    frame = pd.read_parquet(path)
    t0 = time.perf_counter()
    if kind == "clvtier":
        from clvtier.segment import ValueClusters

        model = ValueClusters(method=method, features=FEATURES, k_range=K_RANGE, random_state=0).fit(frame)
        labels, k = model.predict(frame), model.n_clusters_
    else:
        from sklearn.cluster import KMeans
        from sklearn.metrics import silhouette_score
        from sklearn.mixture import GaussianMixture

        x = frame[FEATURES].to_numpy(dtype=float)
        x = np.sign(x) * np.log1p(np.abs(x))
        x = (x - x.mean(axis=0)) / x.std(axis=0)
        scores, fits = {}, {}
        for k in range(K_RANGE[0], K_RANGE[1] + 1):
            if method == "kmeans":
                fits[k] = KMeans(n_clusters=k, n_init="auto", random_state=0).fit(x)
                scores[k] = silhouette_score(x, fits[k].labels_, sample_size=5000, random_state=0)
            else:
                fits[k] = GaussianMixture(n_components=k, reg_covar=0.1, random_state=0).fit(x)
                scores[k] = -fits[k].bic(x)
        k = max(scores, key=scores.get)
        labels = fits[k].predict(x)
    seconds = time.perf_counter() - t0
    np.save(labels_out, labels)
    return {"seconds": seconds, "k": int(k)}


def measure(kind: str, method: str, path: Path, labels_out: str) -> dict:
    return run_measured(__file__, "--run", kind, "--method", method, "--path", str(path),
                        "--labels", labels_out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=float, default=1e6)
    parser.add_argument("--methods", default="kmeans,gmm")
    parser.add_argument("--run")
    parser.add_argument("--method")
    parser.add_argument("--path")
    parser.add_argument("--labels")
    args = parser.parse_args()
    if args.run:
        report(run_one(args.run, args.method, args.path, args.labels))
        return

    import numpy as np
    from sklearn.metrics import adjusted_rand_score

    customers = int(args.customers)
    path = features_path(customers)
    print(f"{customers:,} customers, features {', '.join(FEATURES)}, k in {K_RANGE[0]}..{K_RANGE[1]}, "
          f"{os.cpu_count()} cores")
    print(f"{'method':<8} {'contender':<9} {'seconds':>8} {'k':>3} {'peak GB':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods.split(","):
            results = {}
            for kind in ("naive", "clvtier"):
                labels = str(Path(tmp) / f"{kind}_{method}.npy")
                results[kind] = measure(kind, method, path, labels)
                results[kind]["labels"] = np.load(labels)
                r = results[kind]
                print(f"{method:<8} {kind:<9} {r['seconds']:>8.2f} {r['k']:>3} {r['peak_gb']:>8.2f}")
            ratio = results["naive"]["seconds"] / results["clvtier"]["seconds"]
            ari = adjusted_rand_score(results["naive"]["labels"], results["clvtier"]["labels"])
            verdict = "under" if results["clvtier"]["seconds"] < 60 else "OVER"
            print(f"{method:<8} speed-up naive/clvtier {ratio:.1f}x; label agreement ARI {ari:.3f}; "
                  f"clvtier {verdict} the 60 s target")


if __name__ == "__main__":
    main()
