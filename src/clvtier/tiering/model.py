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
from clvtier.segment import rfm_map

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
        """One row per customer: the columns of :data:`OUTPUT_COLUMNS`."""
        features = self.features(data, as_of)
        if features.empty:
            return pd.DataFrame({c: [] for c in OUTPUT_COLUMNS})
        rfm = rfm_map(features)  # quintile scores and the ten-segment RF map
        btyd = btyd_outputs(features, self.purchase_models[self.btyd_model], self.spend_model, self.horizon)
        clv, churn = self._clv_churn(features, btyd)
        out = features[["customer_id", "recency_days", "frequency_count", "monetary_total"]].copy()
        out.insert(1, "as_of", pd.Timestamp(features.attrs["as_of"]))
        table = rfm.table.set_index("customer_id").loc[out["customer_id"]]
        for column in ("r_score", "f_score", "m_score", "rfm_cell"):
            out[column] = table[column].to_numpy()
        out["rfm_segment"] = table["segment"].to_numpy()
        out["expected_purchases"] = btyd["expected_purchases"].to_numpy()
        out["probability_alive"] = btyd["probability_alive"].to_numpy()
        out["churn_probability"] = churn
        out["predicted_clv"] = clv
        return out

    def _clv_churn(self, features: pd.DataFrame, btyd: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        if self.clv_model == "xgboost":
            return self.ml.predict(features), 1 - self.ml.predict_purchase_probability(features)
        name = self.base if self.clv_model == "hybrid" else self.clv_model
        if name != self.btyd_model:
            btyd = btyd_outputs(features, self.purchase_models[name], self.spend_model, self.horizon)
        if self.clv_model == "hybrid":
            return self.ml.predict(btyd) * self.scale, 1 - self.ml.predict_purchase_probability(btyd)
        return btyd["btyd_clv"].to_numpy(), 1 - btyd["probability_any_purchase"].to_numpy()


__all__ = ["OUTPUT_COLUMNS", "TRANSACTION_COLUMNS", "TieringModel"]
