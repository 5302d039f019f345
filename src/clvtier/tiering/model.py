"""The tiering model: every fitted part scoring needs, applied to customers as of a date.

Given transactions (or a feature table) it returns, per customer, the historical RFM view
(recency, frequency, monetary total, RFM scores and the ten-segment RF map), the BTYD view
(expected purchases, P(alive)) and the predictions of the chosen CLV/churn model (predicted CLV
over the horizon, churn probability). Each customer's outputs depend only on that customer's
history, except the RFM scores, which rank customers against the population scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from clvtier.clv import XGBoostCLV, btyd_outputs
from clvtier.clv.btyd import GammaGammaModel
from clvtier.data import load_transactions, to_date
from clvtier.errors import InputError
from clvtier.features import customer_features
from clvtier.segment import RFM10, rfm_scores

#: Transaction columns the model reads (customer_id, date and amount are required).
TRANSACTION_COLUMNS = ("customer_id", "date", "amount", "order_id", "quantity", "profit", "satisfaction")
OUTPUT_COLUMNS = (
    "customer_id",
    "as_of",
    "recency_days",
    "frequency_count",
    "monetary_total",
    "r_score",
    "f_score",
    "m_score",
    "rfm_cell",
    "rfm_segment",
    "expected_purchases",
    "probability_alive",
    "churn_probability",
    "predicted_clv",
)


@dataclass
class TieringModel:
    """Fitted parts of the tiering model (built by the training pipeline).

    Parameters
    ----------
    purchase_models : dict of str to fitted BTYD purchase model
        Holds ``btyd_model`` and, for a BTYD or hybrid CLV model, its purchase model.
    spend_model : GammaGammaModel
    clv_model : str
        ``bgnbd_gg``, ``pareto_nbd_gg``, ``mbgnbd_gg``, ``xgboost`` or ``hybrid``.
    btyd_model : str
        Source of ``expected_purchases`` and ``probability_alive``.
    horizon : float
        Prediction window, in ``time_unit``: ``predicted_clv`` is the expected spend in it
        (undiscounted), ``churn_probability`` the probability of no purchase in it.
    time_unit : {"days", "weeks"}
    ml : XGBoostCLV, optional
        For ``xgboost`` and ``hybrid``.
    base : str, optional
        The hybrid's BTYD base model.
    scale : float, default=1.0
        The hybrid's factor from raw predictions to its base model's total on the test customers.
    info : dict
        Name, protocol and test metrics, for whoever loads the model.
    """

    purchase_models: dict
    spend_model: GammaGammaModel
    clv_model: str
    btyd_model: str
    horizon: float
    time_unit: str
    ml: XGBoostCLV | None = None
    base: str | None = None
    scale: float = 1.0
    info: dict = field(default_factory=dict)

    def features(self, data, as_of=None) -> pd.DataFrame:
        """The feature table of ``data``: transactions (computed as of ``as_of``, default the last
        date) or a feature table of :func:`clvtier.features.customer_features` (used as given)."""
        if not isinstance(data, pd.DataFrame):
            raise InputError(
                "<model input>",
                f"expected a DataFrame of transactions or features; got {type(data).__name__}",
            )
        if {"frequency", "recency", "T"} <= set(data.columns):
            features = data.reset_index(drop=True)
            day = as_of or features.attrs.get("as_of")
            if day is None:
                raise InputError("as_of", "a feature table needs its as-of date (params={'as_of': ...})")
            features.attrs.update(as_of=to_date(day, what="as_of").isoformat(), time_unit=self.time_unit)
            return features
        columns = [c for c in TRANSACTION_COLUMNS if c in data.columns and data[c].notna().any()]
        tx = load_transactions(data[columns])
        return customer_features(tx, as_of=as_of, time_unit=self.time_unit)

    def predict(self, data, as_of=None) -> pd.DataFrame:
        """One row per customer: the columns of :data:`OUTPUT_COLUMNS`. RFM scores rank the
        customers in ``data`` against each other."""
        features = self.features(data, as_of)
        if features.empty:
            return pd.DataFrame({c: [] for c in OUTPUT_COLUMNS})
        return self.predict_features(features, rfm_scores(features))

    def predict_features(self, features: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
        """:data:`OUTPUT_COLUMNS` for a feature table whose RFM scores (``r_score, f_score,
        m_score``, row-aligned) were computed on a population, e.g. a chunk of a larger table."""
        btyd = btyd_outputs(features, self.purchase_models[self.btyd_model], self.spend_model, self.horizon)
        clv, churn = self._clv_churn(features, btyd)
        out = features[["customer_id", "recency_days", "frequency_count", "monetary_total"]].copy()
        out.insert(1, "as_of", pd.Timestamp(features.attrs["as_of"]))
        r, f, m = (scores[c].to_numpy(dtype=np.int64) for c in ("r_score", "f_score", "m_score"))
        out["r_score"], out["f_score"], out["m_score"] = r, f, m
        out["rfm_cell"] = pd.Series(r).astype(str).to_numpy() + pd.Series(f).astype(str).to_numpy() \
            + pd.Series(m).astype(str).to_numpy()
        codes = np.array([s.code for s in RFM10.segments], dtype=object)
        out["rfm_segment"] = codes[RFM10.lookup()[r - 1, f - 1, m - 1]]
        out["expected_purchases"] = btyd["expected_purchases"].to_numpy()
        out["probability_alive"] = btyd["probability_alive"].to_numpy()
        out["recency_days"] = out["recency_days"].astype(np.int64)
        out["churn_probability"] = np.asarray(churn, dtype=np.float64)
        out["predicted_clv"] = np.asarray(clv, dtype=np.float64)
        return out

    def _clv_churn(self, features: pd.DataFrame, btyd: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        if self.clv_model in ("xgboost", "hybrid"):
            x = features if self.clv_model == "xgboost" else self._base_outputs(features, btyd)
            buy = self.ml.predict_purchase_probability(x)  # once: it is both halves' input
            scale = self.scale if self.clv_model == "hybrid" else 1.0
            return buy * self.ml.predict_spend_if_purchase(x) * scale, 1 - buy
        btyd = self._base_outputs(features, btyd)
        return btyd["btyd_clv"].to_numpy(), 1 - btyd["probability_any_purchase"].to_numpy()

    def _base_outputs(self, features: pd.DataFrame, btyd: pd.DataFrame) -> pd.DataFrame:
        name = self.base if self.clv_model == "hybrid" else self.clv_model
        if name == self.btyd_model:
            return btyd
        return btyd_outputs(features, self.purchase_models[name], self.spend_model, self.horizon)


__all__ = ["OUTPUT_COLUMNS", "TRANSACTION_COLUMNS", "TieringModel"]
