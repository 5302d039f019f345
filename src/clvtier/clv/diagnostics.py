"""When a fitted model cannot be trusted: checks run after every training, each a warning with a
code (logged as the run tag ``clvtier.warning.<code>``) and a plain-language message.

- ``no_dropout.<model>``: a BTYD model whose dropout process collapsed (BG/NBD, MBG/NBD: ``a`` below
  1e-4 or ``b / (a + b)`` above 0.9999; Pareto/NBD: ``s`` below 1e-4), so P(alive) is 1 for
  everyone; ``equal_predictions``: two BTYD models that predict the same for every customer.
- ``spend_frequency_correlation``, ``spend_tail``: the Gamma-Gamma assumptions (spend independent
  of frequency; ``q > 1`` for a finite mean).
- ``level_drift.totals`` / ``level_drift.daily_spend``: the tiering model's predicted total
  missed the actual total by more than 20% in the same direction at two or more backtest
  origins, or the holdout's mean daily spend differs from the same length of history just before
  the cutoff by more than 30%: the spending level is not stationary (seasonality or growth), so
  predicted totals will be off.
- ``churn_calibration``: the churn probabilities used in tiers have an expected calibration
  error above 0.05.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Thresholds, one place.
MIN_DROPOUT = 1e-4
MAX_SURVIVAL = 0.9999
MAX_SPEND_CORRELATION = 0.3
MAX_TOTAL_ERROR = 0.20
MAX_DAILY_SPEND_CHANGE = 0.30
MAX_ECE = 0.05


@dataclass(frozen=True)
class ModelWarning:
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def dropout_warnings(purchase_models: dict) -> list[ModelWarning]:
    """``purchase_models``: name -> fitted BTYD purchase model (``params_``)."""
    out = []
    for name, model in purchase_models.items():
        p = model.params_
        if "s" in p:
            collapsed = p["s"] < MIN_DROPOUT
            detail = f"s = {p['s']:.3g}"
        else:
            collapsed = p["a"] < MIN_DROPOUT or p["b"] / (p["a"] + p["b"]) > MAX_SURVIVAL
            detail = f"a = {p['a']:.3g}, b = {p['b']:.3g}"
        if collapsed:
            out.append(
                ModelWarning(
                    f"no_dropout.{name}",
                    f"{name} has no dropout ({detail}): P(alive) is 1 for everyone and churn comes only "
                    "from purchase rates",
                )
            )
    return out


def equal_prediction_warnings(predictions: dict[str, np.ndarray]) -> list[ModelWarning]:
    """``predictions``: BTYD model name -> predicted values on the same customers."""
    names, out = list(predictions), []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if np.allclose(predictions[a], predictions[b], rtol=1e-6, atol=1e-9):
                out.append(
                    ModelWarning(
                        "equal_predictions",
                        f"{a} and {b} predict the same for every customer: a sign that both lost their "
                        "dropout process (P(alive) is 1 for everyone)",
                    )
                )
    return out


def spend_warnings(spend_model) -> list[ModelWarning]:
    out = []
    corr = spend_model.frequency_spend_corr_
    if abs(corr) > MAX_SPEND_CORRELATION:
        out.append(
            ModelWarning(
                "spend_frequency_correlation",
                f"frequency and spend per purchase are correlated ({corr:.2f}): the Gamma-Gamma independence "
                "assumption is doubtful, so expected spend is biased for frequent buyers",
            )
        )
    if spend_model.params_["q"] <= 1:
        out.append(ModelWarning("spend_tail", "Gamma-Gamma q <= 1: mean spend per purchase is undefined"))
    return out


def level_warnings(per_origin: pd.DataFrame, daily_spend: pd.DataFrame) -> list[ModelWarning]:
    """``per_origin``: one row per backtest origin with ``origin`` and ``total_ratio`` (predicted
    over actual total) of the tiering model; ``daily_spend``: one row per origin with ``before`` and
    ``after`` (mean daily spend in the horizon before and after the test cutoff)."""
    out = []
    error = per_origin["total_ratio"] - 1
    for sign, word, way in ((1, "above", "falling"), (-1, "below", "rising")):
        missed = per_origin["origin"][sign * error > MAX_TOTAL_ERROR].tolist()
        if len(missed) >= 2:
            out.append(
                ModelWarning(
                    "level_drift.totals",
                    f"predicted totals were more than {MAX_TOTAL_ERROR:.0%} {word} the actual at "
                    f"{len(missed)} origins ({', '.join(missed)}): the spending level is {way} (seasonality "
                    "or a trend), so predicted totals will be off in the same direction",
                )
            )
    change = daily_spend["after"] / daily_spend["before"] - 1
    moved = daily_spend[change.abs() > MAX_DAILY_SPEND_CHANGE]
    if len(moved):
        row = moved.iloc[-1]
        way = "rose" if row["after"] > row["before"] else "fell"
        size = abs(row["after"] / row["before"] - 1)
        out.append(
            ModelWarning(
                "level_drift.daily_spend",
                f"mean daily spend {way} by {size:.0%} from the horizon before "
                f"the cutoff {row['origin']} to the horizon after it ({row['before']:,.2f} -> "
                f"{row['after']:,.2f} a day): the level is not stationary (seasonality or growth)",
            )
        )
    return out


def calibration_warnings(name: str, ece: float) -> list[ModelWarning]:
    if np.isfinite(ece) and ece > MAX_ECE:
        return [
            ModelWarning(
                "churn_calibration",
                f"{name}'s churn probabilities are miscalibrated (expected calibration error {ece:.3f} > "
                f"{MAX_ECE}): read them as a ranking, not as probabilities",
            )
        ]
    return []


__all__ = [
    "ModelWarning",
    "calibration_warnings",
    "dropout_warnings",
    "equal_prediction_warnings",
    "level_warnings",
    "spend_warnings",
]
