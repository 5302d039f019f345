"""Fitted CLV/churn models behind one small protocol, whatever they are made of.

Every model in the catalogue (:mod:`clvtier.clv.catalogue`) fits into an object with

- ``predict(features, known=None) -> (clv, churn)``: predicted spend over ``horizon`` and the
  probability of no purchase in it, one value per row of ``features``;
- ``fitted_params() -> dict``: the fitted numbers worth recording;
- ``name``, ``horizon`` and ``time_unit``.

``known`` maps a BTYD model's name to its :meth:`BTYDCLV.outputs` on the same rows, so a caller
that already computed them (the tiering model) does not compute them twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from clvtier.clv.btyd import GammaGammaModel, ModelFitError
from clvtier.clv.ml import XGBoostCLV, btyd_outputs, total_scale


@runtime_checkable
class CLVModel(Protocol):
    """What pipelines, the tiering model and tracking may rely on."""

    name: str
    horizon: float

    @property
    def time_unit(self) -> str: ...

    def predict(self, features: pd.DataFrame, known: dict | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def fitted_params(self) -> dict[str, float | str]: ...


@dataclass
class BTYDCLV:
    """A BTYD purchase model with Gamma-Gamma spend: CLV = expected purchases x expected spend
    (undiscounted); churn = 1 - P(any purchase in the horizon)."""

    name: str
    purchase: object
    spend: GammaGammaModel
    horizon: float

    @property
    def time_unit(self) -> str:
        return self.purchase.time_unit

    def outputs(self, features: pd.DataFrame, known: dict | None = None) -> pd.DataFrame:
        """``features`` with expected_purchases, probability_alive, probability_any_purchase,
        expected_spend and btyd_clv (see :func:`~clvtier.clv.btyd_outputs`)."""
        if known and self.name in known:
            return known[self.name]
        return btyd_outputs(features, self.purchase, self.spend, self.horizon)

    def predict(self, features, known=None):
        out = self.outputs(features, known)
        return out["btyd_clv"].to_numpy(), 1 - out["probability_any_purchase"].to_numpy()

    def fitted_params(self):
        return {**self.purchase.params_, **{f"spend.{k}": v for k, v in self.spend.params_.items()}}


@dataclass
class XGBoostCLVModel:
    """The two-part XGBoost model on customer features: CLV = P(purchase) x E[spend | purchase]."""

    name: str
    ml: XGBoostCLV
    horizon: float
    unit: str

    @property
    def time_unit(self) -> str:
        return self.unit

    def _inputs(self, features, known):
        return features

    def predict(self, features, known=None):
        x = self._inputs(features, known)
        buy = self.ml.predict_purchase_probability(x)  # once: it is both halves' input
        return buy * self.ml.predict_spend_if_purchase(x) * self._scale(), 1 - buy

    def _scale(self) -> float:
        return 1.0

    def fitted_params(self):
        return {}

    def boosters(self) -> dict:
        """The XGBoost estimators by part, for importance plots and native model files."""
        return {"purchase": self.ml.purchase_model_.booster_, "spend": self.ml.spend_model_}


@dataclass
class HybridCLV(XGBoostCLVModel):
    """XGBoost on top of a BTYD model's outputs; its raw total is matched once, at fit time, to the
    base model's total on the test customers (``scale``), so a customer's score never depends on
    who else is scored."""

    base: BTYDCLV | None = None
    scale: float = 1.0

    def _inputs(self, features, known):
        return self.base.outputs(features, known)

    def _scale(self) -> float:
        return self.scale

    def fitted_params(self):
        return {"scale": self.scale, "base": self.base.name}

    def match_level(self, test: pd.DataFrame) -> HybridCLV:
        """Fix ``scale`` so the predictions on ``test`` sum to the base model's forecast there."""
        self.scale = 1.0
        raw, _ = self.predict(test)
        base, _ = self.base.predict(test)
        if raw.sum() <= 0:
            raise ModelFitError("hybrid: predictions sum to zero on the test customers; nothing to rescale")
        self.scale = total_scale(raw, base.sum())
        return self


__all__ = ["BTYDCLV", "CLVModel", "HybridCLV", "XGBoostCLVModel"]
