"""XGBoost CLV: a two-part model P(purchase in the window) x E[spend | purchase], and the BTYD
outputs it can build on (the hybrid).

Trained at an earlier cutoff on the spend of the window that follows, applied at a later cutoff.
Customers are younger at the training cutoff and spend more per survivor, so an ML model's total
runs 20-50% above the test window's; BTYD's aggregate forecast does not share that bias. "Ranking
from the hybrid, level from BTYD" is what :func:`match_total` is for.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from clvtier.churn.models import BTYD_OUTPUTS, ML_FEATURES, XGBoostChurn, feature_matrix, xgb_params
from clvtier.errors import InputError


def btyd_outputs(X: pd.DataFrame, purchase_model, spend_model, horizon: float) -> pd.DataFrame:
    """``X`` with the BTYD outputs over ``horizon`` (in the models' time unit) added as columns:
    expected_purchases, probability_alive, probability_any_purchase, expected_spend and btyd_clv
    (expected purchases x expected spend, undiscounted)."""
    out = X.copy()
    out["expected_purchases"] = purchase_model.expected_purchases(X, horizon)
    out["probability_alive"] = purchase_model.probability_alive(X)
    out["probability_any_purchase"] = purchase_model.probability_any_purchase(X, horizon)
    out["expected_spend"] = spend_model.expected_spend(X)
    out["btyd_clv"] = out["expected_purchases"] * out["expected_spend"]
    return out


def total_scale(predicted, total: float) -> float:
    """The factor that makes ``predicted`` sum to ``total`` (the hybrid's level matching)."""
    predicted = np.asarray(predicted, dtype=float)
    if predicted.sum() <= 0:
        raise InputError("match_total", "predictions sum to zero; nothing to rescale")
    return float(total / predicted.sum())


def match_total(predicted, total: float) -> np.ndarray:
    """Rescale ``predicted`` so it sums to ``total``; the order (and so every ranking metric) is kept."""
    return np.asarray(predicted, dtype=float) * total_scale(predicted, total)


class XGBoostCLV(RegressorMixin, BaseEstimator):
    """Two-part CLV model: ``P(any purchase) * E[spend | purchase]`` over the training window.

    The purchase part is an :class:`~clvtier.churn.XGBoostChurn` (calibrated on a held-out fold);
    the spend part is an XGBoost regressor with a gamma deviance fitted on buyers only. With
    ``offset=True`` (the hybrid) both parts start from the BTYD predictions - churn log-odds and
    log expected spend - and also see the BTYD outputs as features, so the trees learn corrections
    to a model that already accounts for customer age.

    Parameters
    ----------
    features : tuple of str, default=ML_FEATURES
    offset : bool, default=False
        Build on BTYD outputs (``X`` must hold the columns added by :func:`btyd_outputs`).
    calibration : {"sigmoid", "isotonic", "none"}, default="sigmoid"
    n_estimators, learning_rate, max_depth, min_child_weight, subsample, colsample_bytree,
    random_state, n_jobs
        XGBoost hyperparameters shared by both parts.

    Attributes
    ----------
    purchase_model_ : XGBoostChurn
    spend_model_ : xgboost.XGBRegressor
    """

    def __init__(self, *, features=ML_FEATURES, offset: bool = False, calibration: str = "sigmoid",
                 n_estimators: int = 600, learning_rate: float = 0.03, max_depth: int = 2,
                 min_child_weight: float = 50, subsample: float = 0.8, colsample_bytree: float = 0.8,
                 random_state: int = 0, n_jobs: int = 2):
        self.features = features
        self.offset = offset
        self.calibration = calibration
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

    def _spend_margin(self, X):
        if not self.offset:
            return None
        spend = feature_matrix(X, ["expected_spend"])["expected_spend"].to_numpy()
        return np.log(np.clip(spend, 1e-6, None))

    def fit(self, X, y):
        """Fit on features as of a cutoff and ``y`` = spend in the following window."""
        import xgboost

        data = feature_matrix(X, self._columns())
        y = np.asarray(y, dtype=float)
        if y.shape != (len(data),) or not np.all(np.isfinite(y)):
            raise InputError("<target>", "spend target must be finite, one value per customer")
        bought = y > 0
        if bought.sum() < 10 or (~bought).sum() < 10:
            raise InputError("<target>", f"need at least 10 buyers and 10 non-buyers; got "
                                         f"{int(bought.sum())} and {int((~bought).sum())}")
        self.feature_names_in_ = np.array(self._columns(), dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        self.purchase_model_ = XGBoostChurn(**self._churn_params()).fit(X, ~bought)
        self.spend_model_ = xgboost.XGBRegressor(objective="reg:gamma", **xgb_params(self))
        margin = self._spend_margin(X)
        self.spend_model_.fit(data[bought], y[bought],
                              base_margin=None if margin is None else margin[bought])
        return self

    def _churn_params(self) -> dict:
        shared = XGBoostChurn._get_param_names()
        return {k: v for k, v in self.get_params().items() if k in shared}

    def predict_purchase_probability(self, X) -> np.ndarray:
        check_is_fitted(self, "spend_model_")
        return self.purchase_model_.predict_proba(X)[:, 0]

    def predict_spend_if_purchase(self, X) -> np.ndarray:
        check_is_fitted(self, "spend_model_")
        data = feature_matrix(X, self._columns())
        from clvtier.clv.trees import predict

        return predict(self.spend_model_, data, self._spend_margin(X))

    def predict(self, X) -> np.ndarray:
        """Expected spend in a window as long as the training window."""
        return self.predict_purchase_probability(X) * self.predict_spend_if_purchase(X)
