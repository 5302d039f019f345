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

from clvtier.clv.fitted import BTYDCLV, CLVModel
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
    clv : CLVModel
        Source of ``predicted_clv`` (expected spend over its horizon, undiscounted) and
        ``churn_probability`` (no purchase in it): any fitted model of the catalogue's ``clv`` role.
    btyd : BTYDCLV
        Source of ``expected_purchases`` and ``probability_alive``.
    info : dict
        Name, protocol and test metrics, for whoever loads the model.
    """

    clv: CLVModel
    btyd: BTYDCLV
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.clv.time_unit != self.btyd.time_unit or self.clv.horizon != self.btyd.horizon:
            raise InputError(
                "tiering model",
                f"{self.clv.name} and {self.btyd.name} must share the time unit and horizon; got "
                f"{self.clv.horizon:g} {self.clv.time_unit} and {self.btyd.horizon:g} {self.btyd.time_unit}",
            )

    @property
    def time_unit(self) -> str:
        return self.btyd.time_unit

    @property
    def horizon(self) -> float:
        return self.btyd.horizon

    def features(self, data, as_of=None, time_unit: str | None = None) -> pd.DataFrame:
        """The feature table of ``data``: transactions (computed as of ``as_of``, default the last
        date) or a feature table of :func:`clvtier.features.customer_features` (used as given; its
        time unit, from ``time_unit`` or ``attrs["time_unit"]``, must be the model's)."""
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
            unit = time_unit or features.attrs.get("time_unit")
            if unit is None:
                raise InputError(
                    "time_unit", f"a feature table needs its time unit (the model's is {self.time_unit!r})"
                )
            self._check_unit(unit)
            features.attrs.update(as_of=to_date(day, what="as_of").isoformat(), time_unit=unit)
            return features
        columns = [c for c in TRANSACTION_COLUMNS if c in data.columns and data[c].notna().any()]
        tx = load_transactions(data[columns])
        return customer_features(tx, as_of=as_of, time_unit=self.time_unit)

    def predict(self, data, as_of=None, time_unit: str | None = None) -> pd.DataFrame:
        """One row per customer: the columns of :data:`OUTPUT_COLUMNS`. RFM scores rank the
        customers in ``data`` against each other."""
        features = self.features(data, as_of, time_unit)
        if features.empty:
            return pd.DataFrame({c: [] for c in OUTPUT_COLUMNS})
        return self.predict_features(features, rfm_scores(features))

    def predict_features(self, features: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
        """:data:`OUTPUT_COLUMNS` for a feature table whose RFM scores (``r_score, f_score,
        m_score``, row-aligned) were computed on a population, e.g. a chunk of a larger table."""
        self._check_unit(features.attrs.get("time_unit", self.time_unit))
        btyd = self.btyd.outputs(features)
        clv, churn = self.clv.predict(features, known={self.btyd.name: btyd})
        out = features[["customer_id", "recency_days", "frequency_count", "monetary_total"]].copy()
        out.insert(1, "as_of", pd.Timestamp(features.attrs["as_of"]))
        r, f, m = (scores[c].to_numpy(dtype=np.int64) for c in ("r_score", "f_score", "m_score"))
        out["r_score"], out["f_score"], out["m_score"] = r, f, m
        out["rfm_cell"] = (
            pd.Series(r).astype(str).to_numpy()
            + pd.Series(f).astype(str).to_numpy()
            + pd.Series(m).astype(str).to_numpy()
        )
        codes = np.array([s.code for s in RFM10.segments], dtype=object)
        out["rfm_segment"] = codes[RFM10.lookup()[r - 1, f - 1, m - 1]]
        out["expected_purchases"] = btyd["expected_purchases"].to_numpy()
        out["probability_alive"] = btyd["probability_alive"].to_numpy()
        out["recency_days"] = out["recency_days"].astype(np.int64)
        out["churn_probability"] = np.asarray(churn, dtype=np.float64)
        out["predicted_clv"] = np.asarray(clv, dtype=np.float64)
        return out

    def _check_unit(self, unit: str) -> None:
        if unit != self.time_unit:
            raise InputError(
                "time_unit",
                f"the feature table's recency and T are in {unit!r} but the model's are in "
                f"{self.time_unit!r}: rebuild the features with time_unit={self.time_unit!r}",
            )


__all__ = ["OUTPUT_COLUMNS", "TRANSACTION_COLUMNS", "TieringModel"]
