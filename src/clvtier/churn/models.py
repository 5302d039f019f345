"""Churn classifier: XGBoost on customer features, optionally on top of a BTYD prediction.

Churn is "no purchase in the window after the cutoff" (``~active`` from
:func:`clvtier.features.calibration_holdout`). The model is trained at an earlier cutoff and
applied at a later one, so the customers it scores are older than those it learned from. With
``offset=True`` the booster starts from the BTYD log-odds of churn (``1 - probability_any_purchase``,
which accounts for age) and learns only a correction, instead of learning the level at one age and
applying it at another.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import logit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted

from clvtier.errors import InputError

# History features that mean the same at any customer age. T, recency (BTYD time since first
# purchase) and tenure grow with the cutoff, so a model trained at one cutoff misreads them at a
# later one; the BTYD outputs carry age instead.
ML_FEATURES = ("frequency", "monetary_value", "recency_days", "frequency_count", "monetary_total",
               "avg_order_value", "spend_30d", "count_30d", "spend_90d", "count_90d", "spend_180d",
               "count_180d", "spend_trend", "ipt_mean_days", "ipt_std_days")
BTYD_OUTPUTS = ("expected_purchases", "probability_alive", "probability_any_purchase", "expected_spend",
                "btyd_clv")
CALIBRATIONS = ("sigmoid", "isotonic", "none")


def feature_matrix(X: pd.DataFrame, features, *, source: str = "<features>") -> pd.DataFrame:
    """The model's columns as floats, or an InputError listing the missing ones."""
    if not isinstance(X, pd.DataFrame):
        raise InputError(source, f"expected a DataFrame of customer features; got {type(X).__name__}")
    missing = [c for c in features if c not in X.columns]
    if missing:
        raise InputError(source, f"required columns missing: {', '.join(missing)}")
    return X[list(features)].astype(float)


def _logit(p) -> np.ndarray:
    return logit(np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6))


def xgb_params(est) -> dict:
    return {"n_estimators": est.n_estimators, "learning_rate": est.learning_rate, "max_depth": est.max_depth,
            "min_child_weight": est.min_child_weight, "subsample": est.subsample,
            "colsample_bytree": est.colsample_bytree, "random_state": est.random_state, "n_jobs": est.n_jobs}


class XGBoostChurn(ClassifierMixin, BaseEstimator):
    """Gradient-boosted churn classifier with probabilities calibrated on a held-out fold.

    Parameters
    ----------
    features : tuple of str, default=ML_FEATURES
        Feature columns; with ``offset=True`` the BTYD outputs are added to them.
    offset : bool, default=False
        Start from the BTYD churn log-odds (needs ``probability_any_purchase`` in ``X``).
    calibration : {"sigmoid", "isotonic", "none"}, default="sigmoid"
        Map from raw scores to probabilities, fitted on ``calibration_size`` of the training
        customers that the booster does not see.
    calibration_size : float, default=0.2
    n_estimators, learning_rate, max_depth, min_child_weight, subsample, colsample_bytree
        XGBoost hyperparameters (shallow trees: the signal in RFM data is mostly additive).
    random_state : int, default=0
    n_jobs : int, default=2

    Attributes
    ----------
    booster_ : xgboost.XGBClassifier
    calibrator_ : fitted calibration map, or None
    """

    def __init__(self, *, features=ML_FEATURES, offset: bool = False, calibration: str = "sigmoid",
                 calibration_size: float = 0.2, n_estimators: int = 600, learning_rate: float = 0.03,
                 max_depth: int = 2, min_child_weight: float = 50, subsample: float = 0.8,
                 colsample_bytree: float = 0.8, random_state: int = 0, n_jobs: int = 2):
        self.features = features
        self.offset = offset
        self.calibration = calibration
        self.calibration_size = calibration_size
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _columns(self):
        return tuple(self.features) + (BTYD_OUTPUTS if self.offset else ())

    def _margin(self, X) -> np.ndarray | None:
        if not self.offset:
            return None
        return -_logit(feature_matrix(X, ["probability_any_purchase"])["probability_any_purchase"])

    def fit(self, X, y):
        """Fit on features as of a cutoff and ``y`` = churned in the following window (bool)."""
        import xgboost

        if self.calibration not in CALIBRATIONS:
            raise InputError("calibration", f"valid options are {', '.join(map(repr, CALIBRATIONS))}; "
                                            f"got {self.calibration!r}")
        data = feature_matrix(X, self._columns())
        y = np.asarray(y).astype(int)
        if y.shape != (len(data),) or np.unique(y).size != 2:
            raise InputError("<labels>", "churn labels must hold both churned and active customers, "
                                         "one per row")
        margin = self._margin(X)
        idx = np.arange(len(data))
        if self.calibration != "none":
            idx, cal = train_test_split(idx, test_size=self.calibration_size, stratify=y,
                                        random_state=self.random_state)
        self.booster_ = xgboost.XGBClassifier(**xgb_params(self))
        self.booster_.fit(data.iloc[idx], y[idx], base_margin=None if margin is None else margin[idx])
        self.classes_ = np.array([False, True])
        self.feature_names_in_ = np.array(self._columns(), dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        self.calibrator_ = None
        if self.calibration != "none":
            raw = self._raw(data.iloc[cal], None if margin is None else margin[cal])
            if self.calibration == "sigmoid":
                self.calibrator_ = LogisticRegression(C=1e6).fit(raw[:, None], y[cal])
            else:
                self.calibrator_ = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(raw, y[cal])
        return self

    def _raw(self, data, margin) -> np.ndarray:
        from clvtier.clv.trees import predict

        return predict(self.booster_, data, margin, margin=True)

    def _calibrate(self, raw: np.ndarray) -> np.ndarray:
        if self.calibrator_ is None:
            return 1 / (1 + np.exp(-raw))
        if isinstance(self.calibrator_, LogisticRegression):
            return self.calibrator_.predict_proba(raw[:, None])[:, 1]
        return self.calibrator_.predict(raw)

    def predict_proba(self, X) -> np.ndarray:
        """Columns: P(active), P(churn)."""
        check_is_fitted(self, "booster_")
        churn = self._calibrate(self._raw(feature_matrix(X, self._columns()), self._margin(X)))
        return np.column_stack([1 - churn, churn])

    def predict(self, X) -> np.ndarray:
        return self.predict_proba(X)[:, 1] >= 0.5
