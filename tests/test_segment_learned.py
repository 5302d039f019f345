"""Learned clusters, the diagnosis, and edge cases run through every method."""

import pickle

import numpy as np
import pandas as pd
import pytest

from clvtier.errors import InputError
from clvtier.evaluate import value_gini, value_top_share
from clvtier.pipelines.segment import METHODS, SegmentOptions, segment_features
from clvtier.segment import ValueClusters, clusters, diagnose


def blobs(n_per=300, seed=0):
    """Three well-separated groups: loyal big spenders, regulars, lapsed one-timers."""
    rng = np.random.default_rng(seed)
    groups = [(10, 20, 2000), (90, 5, 300), (400, 1, 30)]
    rows = []
    for r, f, m in groups:
        rows.append(
            pd.DataFrame(
                {
                    "recency_days": rng.normal(r, r * 0.1, n_per).clip(0).round(),
                    "frequency_count": rng.poisson(f, n_per).clip(1),
                    "monetary_total": rng.lognormal(np.log(m), 0.15, n_per),
                }
            )
        )
    frame = pd.concat(rows, ignore_index=True)
    frame.insert(0, "customer_id", np.arange(len(frame)) + 1000)
    frame["avg_order_value"] = frame["monetary_total"] / frame["frequency_count"]
    frame["purchase_days"] = frame["frequency_count"]
    return frame.sample(frac=1, random_state=seed).reset_index(drop=True)


@pytest.mark.parametrize(
    "method, selection", [("kmeans", "silhouette"), ("gmm", "bic"), ("gmm", "silhouette")]
)
def test_clusters_find_the_groups_and_number_them_by_value(method, selection):
    frame = blobs()
    seg = clusters(frame, method=method, selection=selection)
    assert seg.params["n_clusters"] == 3
    means = seg.profile["mean_monetary_total"].to_numpy()
    assert np.all(np.diff(means) < 0)  # cluster 1 is the most valuable
    assert seg.profile["customers"].tolist() == [300, 300, 300]
    assert seg.profile["share_value"].sum() == pytest.approx(1)
    names = seg.profile["segment"].tolist()
    assert names[0].startswith("1: ") and "recent" in names[0] and "high spend" in names[0]
    assert "lapsed" in names[2] and "low spend" in names[2]
    assert seg.table.loc[0, "strategy"]  # strategy from the cluster's 2x2x2 RFM segment


def test_clusters_reproducible_by_seed_and_picklable():
    frame = blobs(seed=1)
    a = ValueClusters(n_clusters=4, random_state=7).fit(frame)
    b = ValueClusters(n_clusters=4, random_state=7).fit(frame)
    assert np.array_equal(a.predict(frame), b.predict(frame))
    again = pickle.loads(pickle.dumps(a))
    assert np.array_equal(again.predict(frame), a.predict(frame))


def test_clusters_sample_fit_then_full_refit():
    frame = blobs(n_per=2000)
    model = ValueClusters(sample_size=500, silhouette_size=300).fit(frame)
    assert model.n_clusters_ == 3 and set(model.selection_scores_) == set(range(2, 9))
    assert model.estimator_.n_iter_ >= 1  # refitted on all 6000 customers


def test_clusters_zh_names_and_custom_features_and_value():
    frame = blobs().assign(predicted_clv=lambda d: d["monetary_total"] * 2)
    seg = clusters(
        frame, n_clusters=3, features=["frequency_count", "avg_order_value"], value="predicted_clv", lang="zh"
    )
    assert seg.params["value"] == "predicted_clv"
    assert "高频" in seg.profile.loc[0, "segment"]
    assert seg.table.loc[0, "strategy"] == ""  # no R/F/M triple among the features: no derived strategy


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "dbscan"}, "valid options are 'kmeans', 'gmm'"),
        ({"selection": "bic"}, "valid options for kmeans are 'silhouette'"),
        ({"k_range": (1, 4)}, "need 2 <= smallest <= largest"),
        ({"features": ["recency_days", "age"]}, "needs column 'age'"),
    ],
)
def test_cluster_errors(kwargs, message):
    with pytest.raises(InputError, match=message):
        ValueClusters(**kwargs).fit(blobs(n_per=10))


def test_value_gini_and_top_share_hand_worked():
    assert value_gini([0, 0, 0, 1]) == pytest.approx(0.75)
    assert value_gini([5, 5, 5]) == pytest.approx(0)
    assert value_gini([1, 2, 3, 4]) == pytest.approx(0.25)  # 2*(1+4+9+16)/(4*10) - 5/4
    assert value_top_share([1, 2, 3, 4, 10]) == pytest.approx(0.5)
    assert value_gini([0, 0]) == 0 and value_top_share([-1, 0]) == 0


def test_diagnose_verdicts():
    good = diagnose(blobs())
    assert good.worth_it and good.customers == 900 and 0.6 < good.repeat_rate < 0.8
    assert "worth it" in good.format() and "值得分层" in good.format("zh")
    flat = pd.DataFrame({"customer_id": range(50), "monetary_total": 10.0, "purchase_days": 1})
    bad = diagnose(flat)
    assert bad.problems == ("few_customers", "few_repeat", "even_value")
    assert "may not pay" in bad.format() and "fewer than 100 customers" in bad.format()


# ---- every method on awkward inputs ---------------------------------------------------------


def _frame(r, f, m, **extra):
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(len(r))],
            "recency_days": r,
            "frequency_count": f,
            "monetary_total": np.asarray(m, dtype=float),
        }
    )
    frame["avg_order_value"] = frame["monetary_total"] / frame["frequency_count"]
    frame["purchase_days"] = frame["frequency_count"]
    return frame.assign(**extra)


CASES = {
    "single customer": _frame([3], [2], [50.0]),
    "all identical": _frame([5] * 6, [2] * 6, [40.0] * 6),
    "zero spend customer": _frame([1, 30, 90, 200], [4, 2, 1, 1], [300.0, 80.0, 0.0, 20.0]),
    "ties": _frame([10, 10, 10, 50, 50], [1, 1, 1, 1, 3], [20.0, 20.0, 20.0, 20.0, 90.0]),
}
WITH_EXTRAS = {"predicted_clv": lambda d: d["monetary_total"] * 1.5, "satisfaction_mean": lambda d: 3.0}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("method", [m for m in METHODS if m != "rfm-map"])
def test_every_method_labels_every_customer_once(method, case):
    frame = CASES[case].assign(**WITH_EXTRAS)
    options = SegmentOptions(indicators={"recency_days": "lower", "monetary_total": "higher"})
    seg = segment_features(frame, method, options)
    assert seg.table["customer_id"].tolist() == frame["customer_id"].tolist()
    assert seg.table["segment"].notna().all() and seg.profile["customers"].sum() == len(frame)
    assert set(seg.table["segment_code"]) <= set(seg.profile["segment_code"])
    # deterministic under row order
    shuffled = segment_features(frame.iloc[::-1].reset_index(drop=True), method, options)
    back = shuffled.table.set_index("customer_id").loc[frame["customer_id"], "segment_code"]
    if method not in ("kmeans", "gmm") or case != "ties":
        assert back.tolist() == seg.table["segment_code"].tolist()


def test_entropy_on_identical_customers_is_a_clear_error():
    with pytest.raises(InputError, match="entropy weights are undefined: no indicator varies"):
        segment_features(CASES["all identical"], "weighted", SegmentOptions(weights="entropy"))


@pytest.mark.parametrize(
    "method, missing, message",
    [
        ("clv-cs", ["satisfaction_mean"], "clv-cs needs customer satisfaction"),
        ("value-matrix", ["avg_order_value"], "value-matrix needs column 'avg_order_value'"),
        ("rfm8", ["recency_days"], "rfm8 needs column 'recency_days'"),
        ("rfm-map", [], "map_path: method rfm-map needs a YAML map file"),
    ],
)
def test_missing_inputs_name_what_is_missing(method, missing, message):
    frame = CASES["zero spend customer"].assign(**WITH_EXTRAS).drop(columns=missing)
    with pytest.raises(InputError, match=message):
        segment_features(frame, method)


def test_profit_is_optional_and_used_when_present():
    frame = CASES["zero spend customer"]
    assert segment_features(frame, "abc").params["value"] == "monetary_total"
    with_profit = frame.assign(profit_total=[10.0, 50.0, -5.0, 1.0])
    seg = segment_features(with_profit, "pyramid")
    assert seg.params["value"] == "profit_total"
    assert seg.table.set_index("customer_id").loc["c2", "segment_code"] == "lead"  # negative profit
