"""Stale vs refitted tiering model on one backtest origin (CDNOW, features as of 1998-03-31,
outcomes in the next 13 weeks).

- stale: ``experiments/cdnow.yaml`` as evaluated (``refit: false``, one origin): ML parts trained on
  features as of 1997-07-01, BTYD fitted on history to 1997-12-30 (and the same with a 13-week
  horizon: ML as of 1997-09-30);
- refitted: the same config on the data up to 1998-03-31, refitted on all of it (what a retrain at
  the end of March registers): ML on features one horizon before 1998-03-31 with targets to it,
  BTYD on history to 1998-03-31;
- baseline: a plain BG/NBD + Gamma-Gamma fitted on history to 1998-03-31.

Each model scores the customers as of 1998-03-31 and is judged on what they spent in the next 13
weeks: normalised Gini, top-20% share, and the share of customers whose corporate4 tier differs
from the refitted model's. Run: ``.venv/bin/python benchmarks/bench_refit.py`` (about 40 s).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

ORIGIN = "1998-03-31"


def main() -> None:
    from clvtier.clv.catalogue import fit_models
    from clvtier.config import load_config
    from clvtier.data import load_transactions
    from clvtier.data.datasets import load_cdnow
    from clvtier.evaluate import normalized_gini, top_share
    from clvtier.features import calibration_holdout
    from clvtier.pipelines import train as t
    from clvtier.tiering.policy import load_policy

    config_path = Path(__file__).parents[1] / "experiments" / "cdnow.yaml"
    full = load_cdnow()
    window = calibration_holdout(
        load_transactions(full), calibration_end=ORIGIN, observation_end="1998-06-30", time_unit="weeks"
    )
    actual = window["holdout_spend"].to_numpy()
    models, seconds = {}, {}

    def evaluation_fit(overrides):
        config = load_config(config_path, ["split.origins=1", "refit=false", *overrides])
        prepared = t.features(t.prepare(config))
        return t.evaluate(config, prepared, t.fit(config, prepared)).tiering

    def refitted(overrides, cut):
        config = load_config(config_path, ["data.dataset=null", f"data.path={cut}", "split.origins=1",
                                           "split.train_cutoff=null", "split.test_cutoff=null",
                                           "split.horizon=null", *overrides])
        prepared = t.features(t.prepare(config))
        evaluation = t.evaluate(config, prepared, t.fit(config, prepared))
        return t.refit(config, prepared, evaluation).tiering

    with tempfile.TemporaryDirectory() as folder:
        cut = Path(folder) / "cdnow_to_1998-03-31.csv"
        full[full["date"] <= ORIGIN].to_csv(cut, index=False)
        contenders = {
            "26 weeks, stale (cdnow.yaml as evaluated: ML 1997-07-01, BTYD to 1997-12-30)":
                lambda: evaluation_fit([]),
            "26 weeks, refitted on data to 1998-03-31 (ML 1997-09-30, BTYD to 1998-03-31)":
                lambda: refitted(["split.holdout_last=26"], cut),
            "13 weeks, stale (ML 1997-09-30, BTYD to 1997-12-30)":
                lambda: evaluation_fit(["split.train_cutoff=1997-09-30", "split.horizon=13"]),
            "13 weeks, refitted on data to 1998-03-31 (ML 1997-12-30, BTYD to 1998-03-31)":
                lambda: refitted(["split.holdout_last=13"], cut),
        }
        for name, build in contenders.items():
            start = time.perf_counter()
            models[name] = build()
            seconds[name] = time.perf_counter() - start

    start = time.perf_counter()
    fresh = fit_models(window, window, {"bgnbd_gg": None}, horizon=13, time_unit="weeks")["bgnbd_gg"].model
    seconds["baseline: BG/NBD fitted to 1998-03-31"] = time.perf_counter() - start

    features = window.copy()
    features.attrs.update(as_of=ORIGIN, time_unit="weeks")
    scores = {name: m.predict(features, as_of=ORIGIN) for name, m in models.items()}
    policy = load_policy("corporate4")
    tiers = {name: policy.fit(s).assign(s)["tier"].to_numpy() for name, s in scores.items()}
    rows = []
    for name, s in scores.items():  # tier changes: each stale model against its refitted twin
        twin = name.replace("stale", "refitted") if "stale" in name else name
        twin = next(n for n in tiers if n.startswith(twin.split(" (")[0]))
        rows.append((name, s["predicted_clv"].to_numpy(), (tiers[name] != tiers[twin]).mean()))
    rows.append(("baseline: BG/NBD fitted to 1998-03-31", fresh.predict(window)[0], float("nan")))
    print(f"Origin {ORIGIN}, outcomes in the next 13 weeks, {len(window):,} customers\n")
    print("| model | gini | top-20% share | tier differs from the refitted twin | seconds to fit |")
    print("| --- | --- | --- | --- | --- |")
    for name, predicted, differ in rows:
        print(f"| {name} | {normalized_gini(actual, predicted):.4f} | {top_share(actual, predicted):.4f} | "
              f"{'' if differ != differ else f'{differ:.1%}'} | {seconds[name]:.1f} |")


if __name__ == "__main__":
    main()
