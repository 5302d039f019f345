"""One contract for every estimator: scikit-learn's clone and params, fit returns self, a pickle
round trip predicts identically, NotFittedError before fit, and a clear InputError (never an
AttributeError) for an ndarray or a frame missing a column. These estimators take DataFrames with
named columns only, so scikit-learn's ``check_estimator`` (which feeds ndarrays) does not apply."""

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from clvtier.churn import XGBoostChurn
from clvtier.clv import BetaGeoModel, GammaGammaModel, ModifiedBetaGeoModel, ParetoNBDModel, XGBoostCLV
from clvtier.data import load_transactions
from clvtier.data.datasets import load_cdnow
from clvtier.errors import InputError
from clvtier.features import calibration_holdout
from clvtier.segment import ValueClusters

FAST = {"n_estimators": 20, "learning_rate": 0.2, "min_child_weight": 5}


@pytest.fixture(scope="module")
def frame():
    tx = load_transactions(load_cdnow(sample=True))
    return calibration_holdout(
        tx, calibration_end="1997-09-30", observation_end="1998-03-31", time_unit="weeks"
    )


# name -> (estimator, fit, predict, a hyperparameter to set, a column predictions need)
CASES = {
    "bgnbd": (
        BetaGeoModel(),
        lambda e, X: e.fit(X),
        lambda e, X: e.expected_purchases(X, 10),
        "penalizer",
        "T",
    ),
    "mbgnbd": (
        ModifiedBetaGeoModel(),
        lambda e, X: e.fit(X),
        lambda e, X: e.probability_alive(X),
        "tol",
        "recency",
    ),
    "pareto": (
        ParetoNBDModel(),
        lambda e, X: e.fit(X),
        lambda e, X: e.probability_alive(X),
        "penalizer",
        "T",
    ),
    "gamma_gamma": (
        GammaGammaModel(),
        lambda e, X: e.fit(X),
        lambda e, X: e.expected_spend(X),
        "penalizer",
        "monetary_value",
    ),
    "xgboost_churn": (
        XGBoostChurn(**FAST),
        lambda e, X: e.fit(X, ~X["active"]),
        lambda e, X: e.predict_proba(X)[:, 1],
        "max_depth",
        "spend_90d",
    ),
    "xgboost_clv": (
        XGBoostCLV(**FAST),
        lambda e, X: e.fit(X, X["holdout_spend"]),
        lambda e, X: e.predict(X),
        "max_depth",
        "frequency_count",
    ),
    "clusters": (
        ValueClusters(n_clusters=3),
        lambda e, X: e.fit(X),
        lambda e, X: e.predict(X),
        "n_clusters",
        "monetary_total",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_estimator_contract(frame, name):
    estimator, fit, predict, param, needed = CASES[name]
    copy = clone(estimator)
    assert copy.get_params() == estimator.get_params()
    value = copy.get_params()[param]
    assert copy.set_params(**{param: value}) is copy
    with pytest.raises(NotFittedError):
        predict(copy, frame)
    fitted = fit(copy, frame)
    assert fitted is copy
    assert fitted.n_features_in_ == len(fitted.feature_names_in_) and needed in set(fitted.feature_names_in_)
    expected = predict(fitted, frame)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(predict(again, frame), expected)
    with pytest.raises(InputError, match="DataFrame"):
        predict(fitted, frame.to_numpy())
    with pytest.raises(InputError, match=needed):
        predict(fitted, frame.drop(columns=[needed]))


def test_gamma_gamma_refuses_bad_inputs_naming_its_columns(frame):
    model = GammaGammaModel().fit(frame)
    for column, value in [("frequency", np.nan), ("frequency", -1), ("monetary_value", np.nan)]:
        bad = frame.head(5).copy()
        bad.loc[bad.index[0], column] = value
        with pytest.raises(InputError, match=f"column '{column}'"):
            model.expected_spend(bad)
    with pytest.raises(InputError, match="Gamma-Gamma needs columns frequency, monetary_value"):
        model.expected_spend(pd.DataFrame({"frequency": [1.0]}))
