"""Each metric against a value worked out by hand (the arithmetic is in the comments)."""

import numpy as np
import pandas as pd
import pytest

from clvtier.evaluate import (
    calibration_table,
    churn_metrics,
    decile_mape,
    expected_calibration_error,
    normalized_gini,
    top_decile_lift,
    top_share,
    value_metrics,
)


@pytest.mark.parametrize(("actual", "predicted", "expected"), [
    # perfect order: ranked actual [3,1,0,0], cum shares .75,1,1,1 -> 3.75/4 - 5/8 = .3125 = best
    ([0, 0, 1, 3], [1, 2, 3, 4], 1.0),
    # reversed: ranked [0,0,1,3], cum 0,0,.25,1 -> 1.25/4 - 5/8 = -.3125
    ([0, 0, 1, 3], [4, 3, 2, 1], -1.0),
    # all tied: every customer gets the mean, cum .25,.5,.75,1 -> 2.5/4 - 5/8 = 0
    ([0, 0, 1, 3], [7, 7, 7, 7], 0.0),
    # tie in the middle: ranked [3, .5, .5, 0], cum .75,.875,1,1 -> 3.625/4 - 5/8 = .28125; /.3125 = .9
    ([3, 0, 1, 0], [2, 1, 1, 0], 0.9),
])
def test_normalized_gini(actual, predicted, expected):
    assert normalized_gini(actual, predicted) == pytest.approx(expected)


def test_gini_does_not_depend_on_row_order_within_ties():
    actual = np.array([3, 0, 1, 0, 5, 2.0])
    predicted = np.array([1, 1, 1, 0, 2, 2.0])
    perm = np.array([5, 3, 1, 0, 4, 2])
    assert normalized_gini(actual, predicted) == pytest.approx(normalized_gini(actual[perm], predicted[perm]))


def test_top_share():
    # five customers, top 20% = the single highest prediction (p=4, actual 2) of a total of 10
    assert top_share([5, 1, 1, 1, 2], [0, 1, 2, 3, 4]) == pytest.approx(0.2)
    assert top_share([5, 1, 1, 1, 2], [9, 1, 2, 3, 4]) == pytest.approx(0.5)


def test_decile_mape_with_two_bins():
    # by prediction: [4,3 | 2,1] with actual [1,1 | 2,4]; |3.5-1|/1 = 2.5 and |1.5-3|/3 = .5 -> 1.5
    assert decile_mape([1, 1, 2, 4], [4, 3, 2, 1], bins=2) == pytest.approx(1.5)


def test_value_metrics_totals_and_errors():
    m = value_metrics([1, 2, 3], [2, 2, 5])
    assert m["total_ratio"] == pytest.approx(9 / 6)
    assert m["mae"] == pytest.approx(1.0)  # |1| + 0 + |2| over 3
    assert m["rmse"] == pytest.approx(np.sqrt(5 / 3))
    assert m["spearman"] == pytest.approx(0.8660254)  # ranks (1,2,3) vs (1.5,1.5,3)


def test_top_decile_lift():
    y = [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    score = [0.9, 0.1, 0.2, 0.3, 0.1, 0.2, 0.3, 0.1, 0.2, 0.5]
    # top 10% = one customer (score .9) who churned: rate 1 over the base rate .2
    assert top_decile_lift(y, score) == pytest.approx(5.0)


def test_churn_metrics_by_hand():
    y = [0, 0, 1, 1]
    s = [0.1, 0.4, 0.35, 0.8]
    m = churn_metrics(y, s)
    assert m["roc_auc"] == pytest.approx(0.75)  # 3 of 4 (churner, stayer) pairs in order
    assert m["pr_auc"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)  # precision 1 at .8, 2/3 at .35
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert np.isnan(churn_metrics(y, [5, 6, 7, 8], probability=False)["brier"])


def test_brier_and_expected_calibration_error():
    assert churn_metrics([1, 0], [0.8, 0.4])["brier"] == pytest.approx(0.1)  # (.04 + .16) / 2
    # bins [0,.5): mean p .15, observed .5, gap .35; [.5,1]: mean .8, observed 1, gap .2 -> (.7+.4)/4
    assert expected_calibration_error([0, 1, 1, 1], [0.1, 0.2, 0.7, 0.9], bins=2) == pytest.approx(0.275)
    table = calibration_table([0, 1, 1, 1], [0.1, 0.2, 0.7, 1.0], bins=2)
    pd.testing.assert_frame_equal(table, pd.DataFrame({
        "bin_low": [0.0, 0.5], "bin_high": [0.5, 1.0], "customers": [2, 2],
        "mean_predicted": [0.15, 0.85], "observed_rate": [0.5, 1.0]}))


@pytest.mark.parametrize(("call", "message"), [
    (lambda: normalized_gini([1, 2], [1]), "equal length"),
    (lambda: normalized_gini([], []), "no customers"),
    (lambda: normalized_gini([1, np.nan], [1, 2]), "1 values are not finite"),
    (lambda: churn_metrics([0, 2], [0.1, 0.2]), "churn labels must be 0 or 1"),
    (lambda: churn_metrics([0, 1], [0.1, 1.2]), "1 probabilities are outside"),
])
def test_bad_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()
