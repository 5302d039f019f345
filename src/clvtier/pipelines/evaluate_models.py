"""Out-of-time benchmark of CLV and churn models (DESIGN.md section 5).

ML models learn from features as of ``train_cutoff`` and the spend/churn of the following
``horizon``; every model is then scored on the features as of ``test_cutoff`` (= the end of the
training window, so training never sees the test window) against what happened in the
``horizon`` after it. BTYD models are fitted on all history up to ``test_cutoff``. All models are
compared on the same customers and window.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clvtier.clv import (
    BetaGeoModel,
    GammaGammaModel,
    ModifiedBetaGeoModel,
    ParetoNBDModel,
    XGBoostCLV,
    btyd_outputs,
)
from clvtier.clv.btyd import ModelFitError
from clvtier.config import BTYDConfig, ModelsConfig
from clvtier.data import Transactions, load_transactions, to_date, write_frame
from clvtier.errors import InputError
from clvtier.evaluate import calibration_table, churn_metrics, value_metrics
from clvtier.features import calibration_holdout, unit_days
from clvtier.segment import Diagnosis, diagnose

CDNOW_PROTOCOL = {"train_cutoff": "1997-07-01", "test_cutoff": "1997-12-30", "horizon": 26}
COLUMNS = [
    "model",
    "gini",
    "spearman",
    "top20_share",
    "decile_mape",
    "total_ratio",
    "roc_auc",
    "pr_auc",
    "top_decile_lift",
    "brier",
    "ece",
    "customers",
    "fit_seconds",
]


@dataclass
class ModelBenchmark:
    """One row per model (``table``) and the reliability curve of each probabilistic churn model."""

    table: pd.DataFrame
    calibration: pd.DataFrame
    train_cutoff: dt.date
    test_cutoff: dt.date
    horizon: float
    time_unit: str
    customers: int
    notes: list[str] = field(default_factory=list)
    diagnosis: Diagnosis | None = None

    def format(self) -> str:
        shown = self.table.drop(columns=["customers"]).copy()
        head = (
            f"Out-of-time model benchmark: train on features as of {self.train_cutoff} with targets in "
            f"the next {self.horizon:g} {self.time_unit};\ntest on features as of {self.test_cutoff} "
            f"with targets in the next {self.horizon:g} {self.time_unit} ({self.customers:,} customers). "
            "Churn metrics score P(churn); naive rows rank churn by low value."
        )
        facts = ["", f"As of {self.test_cutoff}: " + self.diagnosis.format()] if self.diagnosis else []
        return "\n".join(
            [head, *facts, "", shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"), *self.notes]
        )

    def write(self, path) -> list[Path]:
        """Write the table to ``path`` and the calibration curves next to it."""
        path = Path(path)
        curves = path.with_name(f"{path.stem}_calibration{path.suffix}")
        return [write_frame(self.table, path), write_frame(self.calibration, curves)]


@dataclass
class FittedModel:
    """A model fitted under the protocol, with its predictions on the test customers.

    ``clv`` is the predicted spend in the test window; ``churn`` is P(no purchase in it).
    ``purchase`` (BTYD, fitted on the history to the test cutoff) and ``spend`` (Gamma-Gamma) are
    set for BTYD models and for the hybrid's base; ``ml`` for XGBoost and the hybrid, whose
    ``scale`` maps raw predictions to the base model's total on the test customers.
    """

    name: str
    clv: np.ndarray
    churn: np.ndarray
    seconds: float
    params: dict = field(default_factory=dict)
    purchase: object = None
    spend: GammaGammaModel | None = None
    ml: XGBoostCLV | None = None
    base: str | None = None
    scale: float = 1.0


PURCHASE_MODELS = {
    "bgnbd_gg": BetaGeoModel,
    "pareto_nbd_gg": ParetoNBDModel,
    "mbgnbd_gg": ModifiedBetaGeoModel,
}
#: The benchmark of the models issue: every model with its defaults.
ALL_MODELS = ModelsConfig(bgnbd_gg={}, pareto_nbd_gg={}, mbgnbd_gg={}, xgboost={}, hybrid={})


def out_of_time_frames(
    tx: Transactions, *, train_cutoff, test_cutoff, horizon: float, time_unit: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features and targets at the training and the test cutoff (DESIGN.md section 5).

    ``test_cutoff`` must be ``train_cutoff + horizon`` or later, so the training targets end
    before the test features start.
    """
    train_cut, test_cut = to_date(train_cutoff, what="train_cutoff"), to_date(test_cutoff, what="test_cutoff")
    window = dt.timedelta(days=round(horizon * unit_days(time_unit)))
    if train_cut + window > test_cut:
        raise InputError(
            "test_cutoff",
            f"training targets run to {train_cut + window}, after the test "
            f"cutoff {test_cut}: the test window would leak into training",
        )
    train = calibration_holdout(
        tx, calibration_end=train_cut, observation_end=train_cut + window, time_unit=time_unit
    )
    test = calibration_holdout(
        tx, calibration_end=test_cut, observation_end=test_cut + window, time_unit=time_unit
    )
    return train, test


def fit_models(
    train: pd.DataFrame,
    test: pd.DataFrame,
    models: ModelsConfig = ALL_MODELS,
    *,
    horizon: float,
    time_unit: str,
    random_state: int = 0,
) -> dict[str, FittedModel]:
    """Fit every configured CLV/churn model and predict the test customers' window.

    BTYD models are fitted on the history up to the test cutoff (``test``'s calibration
    columns); ML models learn from ``train`` (features at the training cutoff, targets after it).
    """
    start = time.perf_counter()
    spend = GammaGammaModel().fit(test)  # the same spend model for every purchase model
    spend_seconds = time.perf_counter() - start
    btyd: dict[str, FittedModel] = {}  # also the hybrid's base when it is not configured itself
    outputs: dict[str, pd.DataFrame] = {}

    def fit_btyd(name: str) -> FittedModel:
        if name not in btyd:
            start = time.perf_counter()
            settings = getattr(models, name) or BTYDConfig()
            purchase = PURCHASE_MODELS[name](time_unit=time_unit, penalizer=settings.penalizer).fit(test)
            out = outputs[name] = btyd_outputs(test, purchase, spend, horizon)
            btyd[name] = FittedModel(
                name,
                out["btyd_clv"].to_numpy(),
                1 - out["probability_any_purchase"].to_numpy(),
                seconds=time.perf_counter() - start + spend_seconds,
                params=settings.model_dump(),
                purchase=purchase,
                spend=spend,
            )
        return btyd[name]

    fitted = {name: fit_btyd(name) for name in PURCHASE_MODELS if getattr(models, name) is not None}
    if models.xgboost is not None:
        start = time.perf_counter()
        settings = models.xgboost.model_dump()
        plain = XGBoostCLV(random_state=random_state, **settings).fit(train, train["holdout_spend"])
        fitted["xgboost"] = FittedModel(
            "xgboost",
            plain.predict(test),
            1 - plain.predict_purchase_probability(test),
            seconds=time.perf_counter() - start,
            params=settings,
            ml=plain,
        )

    if models.hybrid is not None:
        # BTYD refitted at each cutoff on the history before it; ranking from the hybrid, level
        # from the base model's aggregate forecast (ML totals carry the age shift)
        start = time.perf_counter()
        settings = models.hybrid.model_dump()
        base_name = settings.pop("base")
        base = fit_btyd(base_name)
        penalizer = (getattr(models, base_name) or BTYDConfig()).penalizer
        train_btyd = btyd_outputs(
            train,
            PURCHASE_MODELS[base_name](time_unit=time_unit, penalizer=penalizer).fit(train),
            GammaGammaModel().fit(train),
            horizon,
        )
        hybrid = XGBoostCLV(offset=True, random_state=random_state, **settings).fit(
            train_btyd, train["holdout_spend"]
        )
        raw = hybrid.predict(outputs[base_name])
        if raw.sum() <= 0:
            raise ModelFitError("hybrid: predictions sum to zero on the test customers; nothing to rescale")
        scale = base.clv.sum() / raw.sum()  # fixed at fit time, so a customer's score never depends on others
        fitted["hybrid"] = FittedModel(
            "hybrid",
            raw * scale,
            1 - hybrid.predict_purchase_probability(outputs[base_name]),
            seconds=time.perf_counter() - start,
            params={**settings, "base": base_name},
            purchase=base.purchase,
            spend=spend,
            ml=hybrid,
            base=base_name,
            scale=scale,
        )
    return fitted


def _row(name: str, test: pd.DataFrame, clv, churn_score, *, probability: bool, seconds: float) -> dict:
    churned = ~test["active"].to_numpy()
    return {
        "model": name,
        **value_metrics(test["holdout_spend"], clv),
        **churn_metrics(churned, churn_score, probability=probability),
        "customers": len(test),
        "fit_seconds": seconds,
    }


def benchmark_table(test: pd.DataFrame, fitted: dict[str, FittedModel]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Holdout metrics per model (the naive rankings first) and each churn model's reliability table."""
    churned = ~test["active"].to_numpy()
    rows = [
        _row(name, test, test[column].to_numpy(), -test[column].to_numpy(), probability=False, seconds=0.0)
        for name, column in [("naive_total_spend", "monetary_total"), ("naive_spend_180d", "spend_180d")]
    ]
    curves = []
    for name, model in fitted.items():
        rows.append(_row(name, test, model.clv, model.churn, probability=True, seconds=model.seconds))
        curves.append(calibration_table(churned, model.churn).assign(model=name))
    calibration = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    return pd.DataFrame(rows)[COLUMNS], calibration


def evaluate_models(
    transactions,
    *,
    train_cutoff,
    test_cutoff,
    horizon: float = 26,
    time_unit: str = "weeks",
    random_state: int = 0,
    models: ModelsConfig = ALL_MODELS,
) -> ModelBenchmark:
    """Run the out-of-time protocol on ``transactions`` (a path, frame or Transactions).

    ``horizon`` is in ``time_unit``; ``test_cutoff`` must be ``train_cutoff + horizon`` or later, so
    the training targets end before the test features start.
    """
    tx = transactions if isinstance(transactions, Transactions) else load_transactions(transactions)
    train, test = out_of_time_frames(
        tx, train_cutoff=train_cutoff, test_cutoff=test_cutoff, horizon=horizon, time_unit=time_unit
    )
    fitted = fit_models(train, test, models, horizon=horizon, time_unit=time_unit, random_state=random_state)
    table, calibration = benchmark_table(test, fitted)
    notes = []
    if "hybrid" in fitted:
        hybrid = fitted["hybrid"]
        notes.append(
            f"hybrid: raw total ratio {hybrid.clv.sum() / hybrid.scale / test['holdout_spend'].sum():.3f} "
            f"before matching the {hybrid.base} total; xgboost/hybrid probabilities calibrated on a "
            "held-out 20% of training customers."
        )
    return ModelBenchmark(
        table=table,
        calibration=calibration,
        train_cutoff=to_date(train_cutoff),
        test_cutoff=to_date(test_cutoff),
        horizon=horizon,
        time_unit=time_unit,
        customers=len(test),
        notes=notes,
        diagnosis=diagnose(test),
    )


__all__ = [
    "ALL_MODELS",
    "CDNOW_PROTOCOL",
    "FittedModel",
    "ModelBenchmark",
    "benchmark_table",
    "evaluate_models",
    "fit_models",
    "out_of_time_frames",
]
