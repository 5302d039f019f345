"""Metrics for value rankings (CLV) and churn scores, computed on holdout data.

Ties in a ranking are scored by their expected value over random orderings within the tie, so a
model that predicts the same value for many customers is neither rewarded nor punished by the
order the rows happen to be in.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


def _arrays(actual, predicted) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actual, dtype=float)
    p = np.asarray(predicted, dtype=float)
    if a.shape != p.shape or a.ndim != 1:
        raise ValueError(f"actual and predicted must be 1-D and of equal length; got {a.shape} and {p.shape}")
    if a.size == 0:
        raise ValueError("no customers to evaluate")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(p))):
        raise ValueError(f"{int((~np.isfinite(a)).sum() + (~np.isfinite(p)).sum())} values are not finite")
    return a, p


def _sum(x) -> float:
    """Correctly rounded sum: numpy's SIMD sums can differ in the last bit with the array's memory
    alignment, and metrics must be identical run after run."""
    return math.fsum(np.asarray(x, dtype=float).ravel())


def _mean(x) -> float:
    x = np.asarray(x, dtype=float)
    return _sum(x) / x.size


def _ranked_actual(actual: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Actual values ordered by predicted value (highest first), averaged within ties."""
    order = np.argsort(-predicted, kind="stable")
    p, a = predicted[order], actual[order]
    _, start, counts = np.unique(-p, return_index=True, return_counts=True)
    group = np.repeat(np.arange(start.size), counts)
    return (np.bincount(group, weights=a) / counts)[group]


def _gini(ranked: np.ndarray) -> float:
    n = ranked.size
    cumulative = np.cumsum(ranked) / _sum(ranked)
    return _sum(cumulative) / n - (n + 1) / (2 * n)


def normalized_gini(actual, predicted) -> float:
    """Gini of ``actual`` ranked by ``predicted``, divided by the Gini of the perfect ranking.

    1 is the perfect order, 0 a random one, negative worse than random. The Gini here is the area
    between the cumulative share of actual value (customers sorted by prediction, highest first)
    and the diagonal.
    """
    a, p = _arrays(actual, predicted)
    if _sum(a) <= 0:
        return float("nan")
    best = _gini(np.sort(a)[::-1])
    return float(_gini(_ranked_actual(a, p)) / best) if best > 0 else float("nan")


def _top_count(share: float, n: int) -> int:
    """How many customers "the top ``share``" is: ``round(share * n)``, at least one."""
    return max(1, int(round(share * n)))


def top_share(actual, predicted, share: float = 0.2) -> float:
    """Share of total actual value held by the ``share`` of customers ranked highest by ``predicted``
    (the ranking's top share; ties averaged)."""
    a, p = _arrays(actual, predicted)
    total = _sum(a)
    if total <= 0:
        return float("nan")
    return float(_sum(_ranked_actual(a, p)[: _top_count(share, a.size)]) / total)


def value_gini(values) -> float:
    """Gini coefficient of the concentration of ``values`` (past spend or profit; negatives count
    as 0): 0 when all are equal, towards 1 when one customer holds everything. Not to be confused
    with :func:`normalized_gini`, which scores a *ranking* of future value."""
    x = np.clip(np.asarray(values, dtype=float), 0, None)
    if x.size == 0 or _sum(x) <= 0:
        return 0.0
    # twice the area between the Lorenz curve (customers sorted by value) and the diagonal
    return float(2 * _gini(np.sort(x)[::-1]))


def value_top_share(values, share: float = 0.2) -> float:
    """Share of the (non-negative) total held by the top ``share`` of customers (at least one):
    the concentration of ``values``, ranked by themselves."""
    x = np.clip(np.asarray(values, dtype=float), 0, None)
    if x.size == 0 or _sum(x) <= 0:
        return 0.0
    return top_share(x, x, share)


def decile_mape(actual, predicted, bins: int = 10) -> float:
    """Mean absolute percentage error of the mean value per decile of ``predicted``.

    Deciles are formed on the tie-averaged order, so ties do not depend on row order; deciles
    whose actual mean is 0 are skipped.
    """
    a, p = _arrays(actual, predicted)
    order = np.argsort(-p, kind="stable")
    ranked_a, ranked_p = _ranked_actual(a, p), p[order]
    errors = []
    for part_a, part_p in zip(np.array_split(ranked_a, bins), np.array_split(ranked_p, bins), strict=True):
        if part_a.size and _mean(part_a) > 0:
            errors.append(abs(_mean(part_p) - _mean(part_a)) / _mean(part_a))
    return float(_mean(errors)) if errors else float("nan")


def value_metrics(actual, predicted) -> dict[str, float]:
    """Every value-ranking metric: gini, spearman, top20_share, decile_mape, mae, rmse,
    total_predicted, total_actual and total_ratio (predicted / actual)."""
    a, p = _arrays(actual, predicted)
    return {
        "gini": normalized_gini(a, p),
        "spearman": float(stats.spearmanr(a, p).statistic) if np.ptp(p) * np.ptp(a) > 0 else math.nan,
        "top20_share": top_share(a, p, 0.2),
        "decile_mape": decile_mape(a, p),
        "mae": _mean(np.abs(a - p)),
        "rmse": math.sqrt(_mean((a - p) ** 2)),
        "total_predicted": _sum(p),
        "total_actual": _sum(a),
        "total_ratio": _sum(p) / _sum(a) if _sum(a) > 0 else float("nan"),
    }


def top_decile_lift(label, score, share: float = 0.1) -> float:
    """Positive rate among the ``share`` highest scores over the overall positive rate (tie-averaged)."""
    y, s = _arrays(label, score)
    k = max(1, int(round(share * y.size)))
    return float(_mean(_ranked_actual(y, s)[:k]) / _mean(y)) if _mean(y) > 0 else float("nan")


def calibration_table(label, probability, bins: int = 10) -> pd.DataFrame:
    """Reliability curve on equal-width probability bins: customers, mean predicted, observed rate."""
    y, p = _arrays(label, probability)
    _check_probability(p)
    which = np.minimum((p * bins).astype(int), bins - 1)
    table = pd.DataFrame({"bin": which, "predicted": p, "observed": y}).groupby("bin").agg(
        customers=("predicted", "size"), mean_predicted=("predicted", "mean"),
        observed_rate=("observed", "mean"))
    table.insert(0, "bin_low", table.index / bins)
    table.insert(1, "bin_high", (table.index + 1) / bins)
    return table.reset_index(drop=True)


def expected_calibration_error(label, probability, bins: int = 10) -> float:
    """Customer-weighted mean gap between predicted and observed rates over equal-width bins."""
    table = calibration_table(label, probability, bins)
    gaps = (table["mean_predicted"] - table["observed_rate"]).abs()
    return float(_sum(gaps * table["customers"]) / _sum(table["customers"]))


def _check_probability(p: np.ndarray):
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"{int(((p < 0) | (p > 1)).sum())} probabilities are outside [0, 1]")


def churn_metrics(churned, score, *, probability: bool = True) -> dict[str, float]:
    """Metrics of a churn score (higher = more likely to churn) against the observed churn label.

    ROC-AUC, PR-AUC (average precision, churn as the positive class) and top-decile lift use only
    the ranking. Brier score and expected calibration error need a probability; for a plain score
    (``probability=False``) they are NaN.
    """
    y, s = _arrays(churned, score)
    if not np.isin(y, (0, 1)).all():
        raise ValueError("churn labels must be 0 or 1")
    both = 0 < y.sum() < y.size
    out = {
        "roc_auc": float(roc_auc_score(y, s)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, s)) if both else float("nan"),
        "top_decile_lift": top_decile_lift(y, s),
        "brier": float("nan"),
        "ece": float("nan"),
    }
    if probability:
        _check_probability(s)
        out["brier"] = float(brier_score_loss(y, s))
        out["ece"] = expected_calibration_error(y, s)
    return out


def segment_outcomes(segment_rank, holdout_spend, churned) -> pd.DataFrame:
    """What each segment did in the holdout window, segments by rank (1 = most valuable):
    customers, shares of customers and of holdout spend, spend per customer and churn rate.
    ``attrs["monotone"]``: spend per customer never rises from one rank to the next."""
    frame = pd.DataFrame({"segment_rank": np.asarray(segment_rank), "spend": np.asarray(holdout_spend, float),
                          "churned": np.asarray(churned, bool)})
    out = frame.groupby("segment_rank").agg(customers=("spend", "size"), holdout_spend=("spend", "sum"),
                                            churn_rate=("churned", "mean")).reset_index()
    out.insert(2, "share_customers", out["customers"] / len(frame))
    total = out["holdout_spend"].sum()
    out["share_holdout_spend"] = out["holdout_spend"] / total if total else np.nan
    out["holdout_spend_per_customer"] = out["holdout_spend"] / out["customers"]
    out.attrs["monotone"] = bool(np.all(np.diff(out["holdout_spend_per_customer"].to_numpy()) <= 0))
    return out


def backtest_summary(origins: pd.DataFrame) -> pd.DataFrame:
    """Each model's metrics over rolling backtest origins (``origins``: one row per model and
    origin): mean, min, max and the number of origins, one row per model and metric."""
    skip = ("model", "origin", "partial", "customers", "fit_seconds")
    metrics = [c for c in origins.columns if c not in skip]
    long = origins.melt(id_vars=["model"], value_vars=metrics, var_name="metric")
    out = long.groupby(["model", "metric"], sort=False)["value"].agg(["mean", "min", "max", "count"])
    return out.reset_index().rename(columns={"count": "origins"})
