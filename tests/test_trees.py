"""Depth-2 tree predictions in numba (clvtier.clv.trees): XGBoost's own numbers, bit for bit."""

import numpy as np
import pytest
import xgboost

from clvtier.clv import trees


def _data(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.gamma(1.0, 50.0, size=(n, 6))
    X[rng.random(X.shape) < 0.15] = np.nan       # missing values take each split's default way
    X[:50, 1] = 0.0                              # values on and around thresholds
    return X


def _fit(model, X, y, margin):
    return model.fit(X, y, base_margin=margin)


@pytest.mark.parametrize("depth", [1, 2])
def test_gamma_regressor_equals_xgboost_bit_for_bit(depth):
    X = _data()
    rng = np.random.default_rng(1)
    y = rng.gamma(2.0, 10.0, len(X)) * (1 + np.nan_to_num(X[:, 0], nan=1.0) / 100)
    margin = np.log(rng.uniform(5, 50, len(X)))
    model = _fit(xgboost.XGBRegressor(objective="reg:gamma", n_estimators=120, max_depth=depth,
                                      learning_rate=0.1, subsample=0.8, random_state=0), X, y, margin)
    assert trees._trees(model) is not None
    new = _data(seed=2)
    new_margin = np.log(rng.uniform(5, 50, len(new)))
    expected = model.predict(new, base_margin=new_margin)
    got = trees.predict(model, new, new_margin)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    np.testing.assert_array_equal(trees.predict(model, new, new_margin, margin=True),
                                  model.predict(new, base_margin=new_margin, output_margin=True))


def test_classifier_margins_equal_xgboost_bit_for_bit():
    X = _data()
    rng = np.random.default_rng(3)
    y = (np.nan_to_num(X[:, 0], nan=30) + rng.normal(0, 30, len(X)) > 50).astype(int)
    margin = rng.normal(0, 1, len(X))
    model = _fit(xgboost.XGBClassifier(n_estimators=200, max_depth=2, learning_rate=0.05,
                                       colsample_bytree=0.8, random_state=0), X, y, margin)
    expected = model.predict(X, base_margin=margin, output_margin=True)
    np.testing.assert_array_equal(trees.predict(model, X, margin, margin=True), expected)


def test_other_models_are_predicted_by_xgboost():
    X = _data(5_000)
    y = np.nan_to_num(X[:, 0], nan=1.0) + 1
    margin = np.zeros(len(X))
    deep = _fit(xgboost.XGBRegressor(objective="reg:gamma", n_estimators=20, max_depth=4), X, y, margin)
    assert trees._trees(deep) is None
    np.testing.assert_array_equal(trees.predict(deep, X, margin), deep.predict(X, base_margin=margin))
    squared = _fit(xgboost.XGBRegressor(n_estimators=20, max_depth=2), X, y, margin)
    # a squared-error model's prediction is its margin: only the margin is computed here
    np.testing.assert_array_equal(trees.predict(squared, X, margin), squared.predict(X, base_margin=margin))
    np.testing.assert_array_equal(trees.predict(squared, X, None), squared.predict(X))
