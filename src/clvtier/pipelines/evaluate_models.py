"""Out-of-time benchmark of CLV and churn models (DESIGN.md section 5).

ML models learn from features as of ``train_cutoff`` and the spend/churn of the following
``horizon``; every model is then scored on the features as of ``test_cutoff`` (= the end of the
training window, so training never sees the test window) against what happened in the
``horizon`` after it. BTYD models are fitted on all history up to ``test_cutoff``. All models are
compared on the same customers and window.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clvtier.clv.catalogue import CATALOGUE, Fit, fit_models, names
from clvtier.config import SplitConfig
from clvtier.data import Transactions, load_transactions, to_date, write_frame
from clvtier.errors import InputError
from clvtier.evaluate import calibration_table, churn_metrics, value_metrics
from clvtier.features import calibration_holdout, window_length
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


#: The benchmark of the models issue: every CLV model of the catalogue with its defaults.
ALL_MODELS = {name: CATALOGUE[name].settings() for name in names("clv")}


def out_of_time_frames(
    tx: Transactions, *, train_cutoff, test_cutoff, horizon: float, time_unit: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features and targets at the training and the test cutoff (DESIGN.md section 5).

    ``test_cutoff`` must be ``train_cutoff + horizon`` or later, so the training targets end
    before the test features start.
    """
    train_cut, test_cut = to_date(train_cutoff, what="train_cutoff"), to_date(test_cutoff, what="test_cutoff")
    window = window_length(horizon, time_unit)
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


def benchmark_row(name: str, test: pd.DataFrame, clv, churn, *, seconds: float = 0.0) -> dict:
    """One model's row of the benchmark: value and churn metrics of its predictions on ``test``."""
    return _row(name, test, clv, churn, probability=True, seconds=seconds)


def _row(name: str, test: pd.DataFrame, clv, churn_score, *, probability: bool, seconds: float) -> dict:
    churned = ~test["active"].to_numpy()
    return {
        "model": name,
        **value_metrics(test["holdout_spend"], clv),
        **churn_metrics(churned, churn_score, probability=probability),
        "customers": len(test),
        "fit_seconds": seconds,
    }


def test_predictions(test: pd.DataFrame, fits: dict[str, Fit]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each CLV model's (predicted CLV, churn probability) for the test customers."""
    return {name: fit.model.predict(test) for name, fit in fits.items() if "clv" in fit.roles}


def benchmark_table(
    test: pd.DataFrame, fits: dict[str, Fit], predictions: dict | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Holdout metrics per CLV model (the naive rankings first) and each churn model's reliability
    table; ``predictions`` from :func:`test_predictions` (computed when not given)."""
    predictions = predictions if predictions is not None else test_predictions(test, fits)
    churned = ~test["active"].to_numpy()
    rows = [
        _row(name, test, test[column].to_numpy(), -test[column].to_numpy(), probability=False, seconds=0.0)
        for name, column in [("naive_total_spend", "monetary_total"), ("naive_spend_180d", "spend_180d")]
    ]
    curves = []
    for name, (clv, churn) in predictions.items():
        rows.append(_row(name, test, clv, churn, probability=True, seconds=fits[name].seconds))
        curves.append(calibration_table(churned, churn).assign(model=name))
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
    models: dict | None = None,
) -> ModelBenchmark:
    """Run the out-of-time protocol on ``transactions`` (a path, frame or Transactions).

    ``horizon`` is in ``time_unit``; ``test_cutoff`` must be ``train_cutoff + horizon`` or later, so
    the training targets end before the test features start. ``models`` maps catalogue names to
    settings (default: every CLV model with its defaults).
    """
    tx = transactions if isinstance(transactions, Transactions) else load_transactions(transactions)
    # windows inside the data, checked before any fit (cutoffs in 2097 would otherwise fit for hours)
    SplitConfig(
        train_cutoff=to_date(train_cutoff, what="train_cutoff"),
        test_cutoff=to_date(test_cutoff, what="test_cutoff"),
        horizon=horizon,
        time_unit=time_unit,
    ).protocol(tx.first_date, tx.last_date)
    train, test = out_of_time_frames(
        tx, train_cutoff=train_cutoff, test_cutoff=test_cutoff, horizon=horizon, time_unit=time_unit
    )
    fits = fit_models(
        train, test, ALL_MODELS if models is None else models,
        horizon=horizon, time_unit=time_unit, random_state=random_state,
    )
    predictions = test_predictions(test, fits)
    table, calibration = benchmark_table(test, fits, predictions)
    notes = []
    if "hybrid" in fits:
        hybrid = fits["hybrid"].model
        notes.append(
            f"hybrid: raw total ratio "
            f"{predictions['hybrid'][0].sum() / hybrid.scale / test['holdout_spend'].sum():.3f} "
            f"before matching the {hybrid.base.name} total; xgboost/hybrid probabilities calibrated on a "
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
    "ModelBenchmark",
    "benchmark_row",
    "benchmark_table",
    "evaluate_models",
    "out_of_time_frames",
    "test_predictions",
]
