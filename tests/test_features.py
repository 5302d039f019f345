"""Features: lifetimes parity on CDNOW, and every column on a hand-computed example."""

import numpy as np
import pandas as pd
import pytest

from clvtier.data import load_transactions
from clvtier.errors import InputError
from clvtier.features import btyd_summary, calibration_holdout, customer_features

lifetimes_utils = pytest.importorskip("lifetimes.utils")
BTYD = ["frequency", "recency", "T", "monetary_value"]


@pytest.fixture(scope="module")
def cdnow_tx(cdnow):
    return load_transactions(cdnow)


@pytest.mark.parametrize("time_unit, multiplier", [("days", 1), ("weeks", 7)])
@pytest.mark.parametrize("as_of", ["1997-09-30", "1998-06-30"])
def test_summary_equals_lifetimes_on_cdnow(cdnow, cdnow_tx, time_unit, multiplier, as_of):
    expected = lifetimes_utils.summary_data_from_transaction_data(
        cdnow, "customer_id", "date", monetary_value_col="amount", observation_period_end=as_of,
        freq="D", freq_multiplier=multiplier)
    for fn in (btyd_summary, customer_features):
        got = fn(cdnow_tx, as_of=as_of, time_unit=time_unit).set_index("customer_id")
        assert sorted(got.index) == sorted(expected.index)
        pd.testing.assert_frame_equal(got[BTYD], expected.loc[got.index, BTYD],
                                      check_names=False, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("time_unit, multiplier", [("days", 1), ("weeks", 7)])
def test_split_equals_lifetimes_on_cdnow(cdnow, cdnow_tx, time_unit, multiplier):
    expected = lifetimes_utils.calibration_and_holdout_data(
        cdnow, "customer_id", "date", calibration_period_end="1997-09-30",
        observation_period_end="1998-06-30", freq="D", freq_multiplier=multiplier,
        monetary_value_col="amount")  # pandas 3: lifetimes fails without a monetary column
    got = calibration_holdout(cdnow_tx, calibration_end="1997-09-30",
                              observation_end="1998-06-30",
                              time_unit=time_unit).set_index("customer_id")
    assert sorted(got.index) == sorted(expected.index)
    expected = expected.loc[got.index]
    pairs = {"frequency": "frequency_cal", "recency": "recency_cal", "T": "T_cal",
             "monetary_value": "monetary_value_cal", "holdout_frequency": "frequency_holdout",
             "holdout_monetary_value": "monetary_value_holdout",
             "duration_holdout": "duration_holdout"}
    for ours, theirs in pairs.items():
        np.testing.assert_allclose(got[ours], expected[theirs], rtol=1e-12, atol=1e-9,
                                   err_msg=ours)
    assert (got["active"] == (expected["frequency_holdout"] > 0)).all()


def _tiny():
    # as_of 2021-12-31. Customer a: purchases on 3 days, one day with two orders.
    return pd.DataFrame({
        "customer_id": ["a", "a", "a", "a", "b", "c"],
        "order_id": ["o1", "o2", "o2", "o3", "o4", "o5"],
        "date": pd.to_datetime(["2021-01-01", "2021-07-01", "2021-07-01", "2021-12-21",
                                "2021-12-31", "2022-01-05"]),
        "amount": [100.0, 30.0, 20.0, 10.0, 5.0, 99.0],
        "profit": [10.0, 6.0, 4.0, 2.0, None, 9.0],
        "satisfaction": [4, 5, 5, 3, 2, 1],
    })


def test_every_feature_by_hand():
    feats = customer_features(_tiny(), as_of="2021-12-31").set_index("customer_id")
    assert list(feats.index) == ["a", "b"]  # c only buys after as_of
    a, b = feats.loc["a"], feats.loc["b"]
    # BTYD: 3 purchase days -> frequency 2; first 01-01, last 12-21, as_of 12-31
    assert (a.frequency, a.recency, a["T"]) == (2, 354, 364)
    assert a.monetary_value == pytest.approx((50 + 10) / 2)
    # RFM: 3 distinct orders, net spend 160, 10 days since last
    assert (a.recency_days, a.frequency_count, a.monetary_total) == (10, 3, 160)
    assert (a.tenure_days, a.purchase_days) == (364, 3)
    assert a.avg_order_value == pytest.approx(160 / 3)
    # windows end on as_of: 30d holds 12-21; 180d holds 07-01 (183 days before: no) and 12-21
    assert (a.spend_30d, a.count_30d, a.spend_90d, a.spend_180d, a.count_180d) == (10, 1, 10,
                                                                                  10, 1)
    # trend: last 180 days 10, the 180 before (07-04 .. 01-05 excl.) 50 -> (10-50)/60
    assert a.spend_trend == pytest.approx(-40 / 60)
    gaps = [181, 173]
    assert a.ipt_mean_days == pytest.approx(np.mean(gaps))
    assert a.ipt_std_days == pytest.approx(np.std(gaps, ddof=1))
    assert a.profit_total == 22 and a.margin == pytest.approx(22 / 160)
    assert a.satisfaction_mean == pytest.approx(17 / 4)
    # single purchase on as_of itself
    assert (b.frequency, b.recency, b["T"], b.monetary_value, b.recency_days) == (0, 0, 0, 0, 0)
    assert np.isnan(b.ipt_mean_days) and np.isnan(b.ipt_std_days) and np.isnan(b.profit_total)
    assert b.spend_trend == 1.0


def test_weeks_scale_only_recency_and_t():
    days = customer_features(_tiny(), as_of="2021-12-31", time_unit="days")
    weeks = customer_features(_tiny(), as_of="2021-12-31", time_unit="weeks")
    assert np.allclose(weeks["T"] * 7, days["T"]) and np.allclose(weeks.recency * 7, days.recency)
    same = days.columns.difference(["T", "recency"])
    pd.testing.assert_frame_equal(weeks[same], days[same])
    assert weeks.attrs == {"as_of": "2021-12-31", "time_unit": "weeks"}


def test_no_future_rows_reach_features():
    base = customer_features(_tiny(), as_of="2021-12-31")
    later = _tiny()
    later.loc[len(later)] = ["a", "o9", pd.Timestamp("2022-01-01"), 1e6, 1.0, 1]
    pd.testing.assert_frame_equal(customer_features(later, as_of="2021-12-31"), base)


def test_holdout_targets_by_hand():
    split = calibration_holdout(_tiny(), calibration_end="2021-12-21",
                                observation_end="2022-01-05").set_index("customer_id")
    assert list(split.index) == ["a"]  # b and c first buy after the calibration end
    a = split.loc["a"]
    assert (a.holdout_frequency, a.holdout_purchases, a.holdout_spend, a.active) == (0, 0, 0,
                                                                                     False)
    split = calibration_holdout(_tiny(), calibration_end="2021-07-01",
                                observation_end="2021-12-31", time_unit="weeks")
    a = split.set_index("customer_id").loc["a"]
    assert (a.holdout_frequency, a.holdout_spend, a.active) == (1, 10.0, True)
    assert a.duration_holdout == pytest.approx(183 / 7)


@pytest.mark.parametrize("kwargs, message", [
    ({"time_unit": "months"}, r"time_unit: valid options are 'days', 'weeks'; got 'months'"),
    ({"as_of": "soon"}, r"as_of: expected a date like 1997-12-31, got 'soon'"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(InputError, match=message):
        customer_features(_tiny(), **kwargs)


def test_holdout_must_follow_calibration():
    with pytest.raises(InputError, match="must be after calibration_end"):
        calibration_holdout(_tiny(), calibration_end="2021-12-31", observation_end="2021-12-01")
