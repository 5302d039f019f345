import pickle

import numpy as np
import pandas as pd
import pytest

from clvtier.churn import XGBoostChurn
from clvtier.clv import BetaGeoModel, GammaGammaModel, XGBoostCLV, btyd_outputs, match_total
from clvtier.data import load_transactions
from clvtier.data.datasets import load_cdnow
from clvtier.errors import InputError
from clvtier.evaluate import churn_metrics, normalized_gini
from clvtier.features import calibration_holdout

FAST = {"n_estimators": 80, "learning_rate": 0.1}


@pytest.fixture(scope="module")
def windows():
    """Out-of-time split of the CDNOW sample: train 1997-07-01 (+26 w), test 1997-12-30 (+26 w)."""
    tx = load_transactions(load_cdnow(sample=True))
    train = calibration_holdout(tx, calibration_end="1997-07-01", observation_end="1997-12-30",
                                time_unit="weeks")
    test = calibration_holdout(tx, calibration_end="1997-12-30", observation_end="1998-06-30",
                               time_unit="weeks")

    def with_btyd(frame):
        return btyd_outputs(frame, BetaGeoModel().fit(frame), GammaGammaModel().fit(frame), 26)

    return with_btyd(train), with_btyd(test)


@pytest.mark.parametrize("calibration", ["sigmoid", "isotonic", "none"])
@pytest.mark.parametrize("offset", [False, True])
def test_churn_classifier_ranks_and_calibrates(windows, calibration, offset):
    train, test = windows
    model = XGBoostChurn(offset=offset, calibration=calibration, **FAST).fit(train, ~train["active"])
    proba = model.predict_proba(test)
    assert proba.shape == (len(test), 2) and np.allclose(proba.sum(axis=1), 1)
    m = churn_metrics(~test["active"].to_numpy(), proba[:, 1])
    assert m["roc_auc"] > 0.7  # far from chance out of time, on 2,357 customers
    if calibration != "none":
        assert model.calibrator_ is not None  # fitted on the held-out 20% fold
        assert churn_metrics(~test["active"].to_numpy(), proba[:, 1])["ece"] < 0.1
    assert pickle.loads(pickle.dumps(model)).predict_proba(test)[:, 1] == pytest.approx(proba[:, 1])


def test_churn_offset_starts_from_btyd(windows):
    """With no trees the offset model returns the BTYD churn probability itself."""
    train, test = windows
    model = XGBoostChurn(offset=True, calibration="none", n_estimators=1, learning_rate=0.0).fit(
        train, ~train["active"])
    np.testing.assert_allclose(model.predict_proba(test)[:, 1], 1 - test["probability_any_purchase"],
                               atol=1e-5)


def test_two_part_clv_out_of_time(windows):
    train, test = windows
    hybrid = XGBoostCLV(offset=True, **FAST).fit(train, train["holdout_spend"])
    predicted = hybrid.predict(test)
    assert np.all(predicted >= 0)
    np.testing.assert_allclose(predicted, hybrid.predict_purchase_probability(test)
                               * hybrid.predict_spend_if_purchase(test))
    assert normalized_gini(test["holdout_spend"], predicted) > 0.6
    level = match_total(predicted, test["btyd_clv"].sum())
    assert level.sum() == pytest.approx(test["btyd_clv"].sum())
    assert normalized_gini(test["holdout_spend"], level) == pytest.approx(
        normalized_gini(test["holdout_spend"], predicted))


def test_plain_model_does_not_need_btyd_columns(windows):
    train, test = windows
    plain_cols = [c for c in train.columns if c not in ("expected_purchases", "probability_alive",
                                                        "probability_any_purchase", "expected_spend",
                                                        "btyd_clv")]
    model = XGBoostCLV(**FAST).fit(train[plain_cols], train["holdout_spend"])
    assert model.predict(test[plain_cols]).shape == (len(test),)
    with pytest.raises(InputError, match="required columns missing: expected_purchases"):
        XGBoostCLV(offset=True, **FAST).fit(train[plain_cols], train["holdout_spend"])


@pytest.mark.parametrize(("call", "message"), [
    (lambda tr: XGBoostChurn(calibration="platt").fit(tr, ~tr["active"]), "valid options are 'sigmoid'"),
    (lambda tr: XGBoostChurn().fit(tr, np.zeros(len(tr), bool)), "both churned and active"),
    (lambda tr: XGBoostCLV().fit(tr, np.zeros(len(tr))), "need at least 10 buyers"),
    (lambda tr: XGBoostCLV().fit(tr, np.full(len(tr), np.nan)), "spend target must be finite"),
    (lambda tr: match_total(np.zeros(3), 10.0), "predictions sum to zero"),
])
def test_bad_training_inputs(windows, call, message):
    with pytest.raises(InputError, match=message):
        call(windows[0])


def test_training_is_reproducible(windows):
    train, test = windows
    a = XGBoostCLV(**FAST, random_state=5).fit(train, train["holdout_spend"]).predict(test)
    b = XGBoostCLV(**FAST, random_state=5).fit(train, train["holdout_spend"]).predict(test)
    np.testing.assert_array_equal(a, b)


def test_btyd_outputs_columns(windows):
    _, test = windows
    cols = ["expected_purchases", "probability_alive", "probability_any_purchase", "expected_spend",
            "btyd_clv"]
    assert test[cols].notna().all().all()
    assert (test["probability_any_purchase"] <= test["probability_alive"] + 1e-12).all()
    assert isinstance(test, pd.DataFrame) and test.attrs["time_unit"] == "weeks"
