"""Judging segmentations on what happened next: one function per measure (issue 17, README
"Comparing segmentations").

A segmentation is given per customer as its segment code and rank (1 = the most valuable
segment) and a within-segment score (higher first). Its **implied order** puts customers by
segment rank, then by that score (descending), then by customer id: :func:`implied_order`.
Every function takes aligned 1-D arrays over the same customers.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from clvtier.evaluate.metrics import normalized_gini


def implied_order(segment_rank, within, customer_id) -> np.ndarray:
    """Position of each customer (0 = first) in the segmentation's implied order: segment rank
    ascending, then ``within`` descending, then customer id ascending (deterministic)."""
    ids, _ = pd.factorize(pd.Series(customer_id), sort=True)
    order = np.lexsort((ids, -np.asarray(within, dtype=float), np.asarray(segment_rank)))
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    return position


def top_count(share: float, n: int) -> int:
    """How many customers the top ``share`` is: ``round(share * n)``, at least one."""
    return max(1, int(round(share * n)))


def top_capture(position, revenue, share: float) -> float:
    """Share of holdout revenue bought by the first ``round(share * n)`` customers of an order."""
    revenue = np.asarray(revenue, dtype=float)
    total = math.fsum(revenue)
    if total <= 0:
        return float("nan")
    chosen = np.asarray(position) < top_count(share, revenue.size)
    return math.fsum(revenue[chosen]) / total


def future_top(revenue, share: float = 0.2) -> np.ndarray:
    """The customers who turned out most important: holdout revenue at least the
    ``round(share * n)``-th largest and above zero (customers tied at that value are all in)."""
    revenue = np.asarray(revenue, dtype=float)
    k = top_count(share, revenue.size)
    threshold = np.sort(revenue)[::-1][k - 1]
    return (revenue >= threshold) & (revenue > 0)


def precision_recall(selected, important) -> tuple[float, float]:
    """Precision and recall of a selected group for the important customers (boolean masks)."""
    selected, important = np.asarray(selected, bool), np.asarray(important, bool)
    hit = int((selected & important).sum())
    precision = hit / selected.sum() if selected.any() else float("nan")
    recall = hit / important.sum() if important.any() else float("nan")
    return float(precision), float(recall)


def segment_table(
    segment_rank, segment_code, segment, past_value, revenue, active, rfm: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per segment, by rank: ``customers, share_customers, share_past_value,
    share_holdout_revenue, revenue_per_customer, share_active, churn_rate`` (1 - share active)
    and, with ``rfm`` (recency_days, frequency_count, monetary_total), their medians."""
    frame = pd.DataFrame(
        {
            "segment_rank": np.asarray(segment_rank),
            "segment_code": np.asarray(segment_code),
            "segment": np.asarray(segment),
            "past": np.asarray(past_value, float),
            "revenue": np.asarray(revenue, float),
            "active": np.asarray(active, bool),
        }
    )
    medians = {}
    if rfm is not None:
        for c in rfm.columns:
            frame[c] = rfm[c].to_numpy(dtype=float)
            medians[f"median_{c}"] = (c, "median")
    grouped = frame.groupby(["segment_rank", "segment_code", "segment"], sort=True)
    out = grouped.agg(
        customers=("revenue", "size"),
        past=("past", "sum"),
        revenue=("revenue", "sum"),
        share_active=("active", "mean"),
        **medians,
    ).reset_index()
    n = len(frame)
    out.insert(4, "share_customers", out["customers"] / n)
    out.insert(5, "share_past_value", out.pop("past") / _nonzero(frame["past"].sum()))
    out.insert(6, "share_holdout_revenue", out["revenue"] / _nonzero(frame["revenue"].sum()))
    out.insert(7, "revenue_per_customer", out.pop("revenue") / out["customers"])
    out.insert(9, "churn_rate", 1.0 - out["share_active"])
    return out


def _nonzero(total: float) -> float:
    return total if total != 0 else float("nan")


def monotonicity(segment_rank, revenue) -> tuple[bool, float]:
    """Does holdout revenue per customer fall with segment rank? ``(monotone, tau)``: monotone when
    it never rises from one rank to the next; tau is Kendall's tau between the negated rank and
    revenue per customer (1 = perfectly ordered; NaN with one segment)."""
    frame = pd.DataFrame({"rank": np.asarray(segment_rank), "revenue": np.asarray(revenue, float)})
    per = frame.groupby("rank")["revenue"].mean().sort_index()
    monotone = bool(np.all(np.diff(per.to_numpy()) <= 0))
    if len(per) < 2:
        return monotone, float("nan")
    return monotone, float(stats.kendalltau(-per.index.to_numpy(), per.to_numpy()).statistic)


def order_gini(position, revenue) -> float:
    """Normalised Gini of holdout revenue along the implied order (1 = the oracle's order)."""
    return normalized_gini(revenue, -np.asarray(position, dtype=float))


def stability(before, after) -> dict:
    """How much a segmentation moves between two cutoffs, over the customers present at both
    (aligned arrays of segment codes): ``share_kept``, ``ari`` and the ``migration`` table
    (rows: segment before, columns: after, counts)."""
    before, after = np.asarray(before, dtype=object), np.asarray(after, dtype=object)
    migration = pd.crosstab(pd.Series(before, name="before"), pd.Series(after, name="after"))
    return {
        "share_kept": float((before == after).mean()) if before.size else float("nan"),
        "ari": float(adjusted_rand_score(before, after)),
        "migration": migration,
    }


def agreement(labels: dict[str, np.ndarray]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Adjusted Rand index and normalised mutual information between every pair of
    segmentations (labels aligned over the same customers)."""
    names = list(labels)
    ari = pd.DataFrame(np.eye(len(names)), index=names, columns=names)
    nmi = ari.copy()
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            ari.loc[a, b] = ari.loc[b, a] = adjusted_rand_score(labels[a], labels[b])
            nmi.loc[a, b] = nmi.loc[b, a] = normalized_mutual_info_score(labels[a], labels[b])
    return ari, nmi


def top_overlap(selected: dict[str, np.ndarray]) -> pd.DataFrame:
    """Share of one top group also in another's: ``|A & B| / |A|`` (row A, column B)."""
    names = list(selected)
    out = pd.DataFrame(index=names, columns=names, dtype=float)
    for a in names:
        sa = np.asarray(selected[a], bool)
        for b in names:
            out.loc[a, b] = (sa & np.asarray(selected[b], bool)).sum() / max(1, sa.sum())
    return out


def bootstrap_differences(
    positions: dict[str, np.ndarray],
    revenue,
    reference: str,
    *,
    share: float = 0.2,
    draws: int = 1000,
    seed: int = 0,
    batch: int = 100,
    return_draws: bool = False,
):
    """Paired bootstrap over customers of each segmentation's lead over ``reference`` in
    equal-size capture and in normalised Gini.

    Every draw resamples the customers with replacement (the same draw for every segmentation:
    paired) and recomputes both measures on it, keeping each implied order; a customer drawn
    several times counts several times, and at the edge of the top group only the copies that
    fit are counted. Returns one row per segmentation and metric (``capture``, ``gini``):
    ``value``, ``diff`` (point estimate on the data), ``ci_low``, ``ci_high`` (2.5% and 97.5%
    percentiles of the draws) and ``measurable`` (the interval excludes 0). With
    ``return_draws`` also the differences of every draw, shape (rows, draws), rows as the table's.
    """
    revenue = np.asarray(revenue, dtype=float)
    n = revenue.size
    k = top_count(share, n)
    orders = {name: np.argsort(p, kind="stable") for name, p in positions.items()}
    oracle = np.argsort(-revenue, kind="stable")
    rng = np.random.default_rng(seed)
    samples = {name: {"capture": [], "gini": []} for name in positions}
    ones = np.ones((1, n), dtype=np.int32)
    best = _capture_gini(oracle, ones, revenue, k)[1]
    point = {name: _capture_gini(o, ones, revenue, k) for name, o in orders.items()}
    point = {name: (c[0], g[0] / best[0]) for name, (c, g) in point.items()}
    for start in range(0, draws, batch):
        size = min(batch, draws - start)
        picks = rng.integers(0, n, (size, n)) + n * np.arange(size)[:, None]
        weights = np.bincount(picks.ravel(), minlength=size * n).reshape(size, n).astype(np.int32)
        best = _capture_gini(oracle, weights, revenue, k)[1]
        for name, o in orders.items():
            capture, gini = _capture_gini(o, weights, revenue, k)
            samples[name]["capture"].append(capture)
            samples[name]["gini"].append(gini / best)
    rows, all_diffs = [], []
    for name in positions:
        for metric, index in (("capture", 0), ("gini", 1)):
            diffs = (
                np.concatenate(samples[name][metric]) - np.concatenate(samples[reference][metric])
                if draws
                else np.empty(0)
            )
            low, high = np.nanpercentile(diffs, [2.5, 97.5]) if diffs.size else (np.nan, np.nan)
            all_diffs.append(diffs)
            rows.append(
                {
                    "segmentation": name,
                    "metric": metric,
                    "value": point[name][index],
                    "diff": point[name][index] - point[reference][index],
                    "ci_low": float(low),
                    "ci_high": float(high),
                    "measurable": bool(low > 0 or high < 0),
                }
            )
    table = pd.DataFrame(rows)
    return (table, np.array(all_diffs)) if return_draws else table


def _capture_gini(order: np.ndarray, weights: np.ndarray, revenue: np.ndarray, k: int):
    """Per row of ``weights`` (copies of each customer, each row summing to the same n): the
    share of weighted revenue in the first ``k`` copies along ``order``, and the Gini of revenue
    along ``order`` over the expanded sample (each customer repeated by its weight), as
    :func:`clvtier.evaluate.metrics.normalized_gini` computes it before normalising.

    With ``cw`` the cumulative weight through a customer, copies ``j = 1..w`` of customer ``i``
    add ``before_i + j * a_i`` to the running revenue sum, and summed over customers the
    ``before`` terms equal ``sum_i w_i a_i (n - cw_i)``: only customers with revenue enter the
    sums, after one cumulative sum of the weights."""
    a = revenue[order]
    paid = np.flatnonzero(a != 0)
    if paid.size == 0:
        nan = np.full(len(weights), np.nan)
        return nan, nan
    # cumulative weights at the customers with revenue: sums of the runs ending at each of them
    w = weights[:, order[: paid[-1] + 1]]
    starts = np.concatenate(([0], paid[:-1] + 1))
    cw = np.cumsum(np.add.reduceat(w, starts, axis=1, dtype=np.int64), axis=1).astype(float)
    w, a = w[:, paid].astype(float), a[paid]
    size = float(weights[0].sum())
    total = w @ a
    taken = np.clip(k - (cw - w), 0, w)
    area = (w * (size - cw)) @ a + (w * (w + 1) / 2) @ a
    with np.errstate(invalid="ignore", divide="ignore"):
        return (taken @ a) / total, area / (total * size) - (size + 1) / (2 * size)
