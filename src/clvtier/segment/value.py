"""Value-based tiers: ABC / Pareto, the customer pyramid, the value matrix and CLV-CS."""

from __future__ import annotations

import string
from collections.abc import Sequence

import numpy as np
import pandas as pd

from clvtier.errors import InputError
from clvtier.segment.base import (
    Segmentation,
    check_shares,
    cut_by_shares,
    finish,
    numeric,
    positions,
    require,
    value_column,
)

ABC4_SHARES = (0.05, 0.15, 0.30, 0.50)
ABC4_CODES = ("top", "key", "regular", "small")
PYRAMID_CODES = ("platinum", "gold", "iron", "lead")


def _levels(codes: Sequence[str] | None, n: int) -> list[str]:
    if codes is None:
        return list(string.ascii_uppercase[:n])
    if len(codes) != n or len(set(codes)) != n:
        raise InputError("labels", f"give {n} distinct labels, one per level; got {list(codes)}")
    return list(codes)


def _ranked(features: pd.DataFrame, value: str | None, method: str) -> tuple[str, np.ndarray, np.ndarray]:
    """The value column used, its values and each customer's rank on it (n = best)."""
    value = value_column(features, value)
    require(features, [value], method)
    v = numeric(features, value, method)
    return value, v, positions(features, [v])


def abc(
    features: pd.DataFrame,
    *,
    shares: Sequence[float] = (0.2, 0.3, 0.5),
    by: str = "count",
    value: str | None = None,
    codes: Sequence[str] | None = None,
    lang: str = "en",
) -> Segmentation:
    """ABC / Pareto classes, any number of levels, the most valuable first.

    Customers are ranked by ``value`` (default: ``profit_total`` when profit is mapped, else
    ``monetary_total``), ties broken by customer id (the smaller id first).

    - ``by="count"``: the top ``shares[0]`` of customers are level 1 (A), the next ``shares[1]``
      level 2, and so on (default 20/30/50). Boundaries are rounded to whole customers.
    - ``by="value"``: levels hold ``shares`` of the total value instead (e.g. 0.5/0.3/0.15/0.05):
      a customer joins the level in which the cumulative value share *before* them falls, so
      the customer who crosses a boundary is in the higher level. Customers with zero or negative
      value hold no share and are always in the last level.

    ``codes`` names the levels (default A, B, C, ...).
    """
    if by not in ("count", "value"):
        raise InputError("by", f"valid options are 'count', 'value'; got {by!r}")
    shares = check_shares(shares)
    levels = _levels(codes, len(shares))
    value, v, rank = _ranked(features, value, "abc")
    if by == "count":
        level = cut_by_shares(rank, shares)
    else:
        order = np.argsort(-rank)  # best first
        positive = np.clip(v[order], 0, None)
        total = positive.sum()
        before = (np.cumsum(positive) - positive) / total if total > 0 else np.ones(len(v))
        level_sorted = np.searchsorted(np.cumsum(shares)[:-1], before, side="right")
        level_sorted[positive <= 0] = len(shares) - 1
        level = np.empty_like(level_sorted)
        level[order] = level_sorted
    inputs = pd.DataFrame({value: v, "value_rank": len(v) + 1 - rank})
    return finish(
        "abc",
        features,
        np.array(levels, dtype=object)[level],
        levels,
        inputs=inputs,
        value=value,
        lang=lang,
        params={"shares": shares, "by": by},
    )


def abc4(features: pd.DataFrame, *, value: str | None = None, lang: str = "en") -> Segmentation:
    """The four-level variant: top 5% (高端), 6-20% (重要 key), 21-50% (普通 regular), bottom 50% (小)."""
    seg = abc(features, shares=ABC4_SHARES, value=value, codes=ABC4_CODES, lang=lang)
    return Segmentation("abc4", seg.table, seg.profile, seg.params)


def pyramid(
    features: pd.DataFrame,
    *,
    shares: Sequence[float] = (0.05, 0.15, 0.5, 0.3),
    value: str | None = None,
    lang: str = "en",
) -> Segmentation:
    """The customer pyramid (Zeithaml, Rust & Lemon 2002): platinum, gold, iron, lead by
    profitability.

    Customers are ranked by ``value`` (default ``profit_total`` when profit is mapped, else
    ``monetary_total``) and cut by customer shares (default 5/15/50/30%). Lead customers cost
    more than they bring: every customer with zero or negative profit is lead, whatever the
    shares say.
    """
    shares = check_shares(shares)
    if len(shares) != 4:
        raise InputError("shares", f"the pyramid has four levels; got {len(shares)} shares")
    value, v, rank = _ranked(features, value, "pyramid")
    level = cut_by_shares(rank, shares)
    if value == "profit_total":
        level[v <= 0] = 3
    inputs = pd.DataFrame({value: v})
    return finish(
        "pyramid",
        features,
        np.array(PYRAMID_CODES, dtype=object)[level],
        PYRAMID_CODES,
        inputs=inputs,
        value=value,
        lang=lang,
        params={"shares": shares},
    )


def value_matrix(
    features: pd.DataFrame,
    *,
    frequency_cut: float | None = None,
    order_value_cut: float | None = None,
    lang: str = "en",
) -> Segmentation:
    """The customer value matrix (Marcus 1998): purchase frequency x average order value.

    High means strictly above the cut (default: the median of each), so a customer at the median
    is low. Quadrants: best (high, high), frequent (high frequency, low order value), spender
    (low frequency, high order value), uncertain (low, low).
    """
    require(features, ["frequency_count", "avg_order_value"], "value-matrix")
    f = numeric(features, "frequency_count", "value-matrix")
    aov = pd.to_numeric(features["avg_order_value"], errors="coerce").to_numpy(dtype=float)
    aov = np.where(f == 0, 0.0, aov)  # no purchases (only returns kept): no order value
    if not np.isfinite(aov).all():
        numeric(features.assign(avg_order_value=aov), "avg_order_value", "value-matrix")
    cuts = {
        "frequency_count": float(np.median(f)) if frequency_cut is None else float(frequency_cut),
        "avg_order_value": float(np.median(aov)) if order_value_cut is None else float(order_value_cut),
    }
    hi_f, hi_v = f > cuts["frequency_count"], aov > cuts["avg_order_value"]
    codes = np.where(hi_f, np.where(hi_v, "best", "frequent"), np.where(hi_v, "spender", "uncertain"))
    inputs = pd.DataFrame({"frequency_count": f, "avg_order_value": aov})
    return finish(
        "value-matrix",
        features,
        codes.astype(object),
        ["best", "frequent", "spender", "uncertain"],
        inputs=inputs,
        value="monetary_total" if "monetary_total" in features else "frequency_count",
        lang=lang,
        params={"cuts": cuts},
    )


CLV_CS_CODES = [f"clv_{c}_sat_{s}" for c in ("high", "low") for s in ("high", "mid", "low")]


def require_satisfaction(features: pd.DataFrame, satisfaction: str = "satisfaction_mean") -> None:
    """The clear error of CLV-CS when the data have no satisfaction."""
    if satisfaction not in features.columns:
        found = ", ".join(repr(c) for c in features.columns)
        raise InputError(
            "features",
            f"clv-cs needs customer satisfaction (column {satisfaction!r}), and "
            "there is none: map a satisfaction column of the transactions "
            f"(satisfaction=<column>); columns found: {found}",
        )


def clv_cs(
    features: pd.DataFrame,
    *,
    clv: str = "predicted_clv",
    satisfaction: str = "satisfaction_mean",
    clv_cut: float | None = None,
    satisfaction_cuts: tuple[float, float] | None = None,
    lang: str = "en",
) -> Segmentation:
    """CLV x customer satisfaction: two CLV levels times three satisfaction levels, six classes.

    CLV is high when strictly above ``clv_cut`` (default: the median). Satisfaction is low when
    at or below ``satisfaction_cuts[0]``, high when strictly above ``satisfaction_cuts[1]``,
    medium between (default cuts: the 1/3 and 2/3 quantiles of satisfaction).
    """
    require_satisfaction(features, satisfaction)
    require(features, [clv, satisfaction], "clv-cs")
    c = numeric(features, clv, "clv-cs")
    s = numeric(features, satisfaction, "clv-cs")
    cut = float(np.median(c)) if clv_cut is None else float(clv_cut)
    low, high = np.quantile(s, [1 / 3, 2 / 3]) if satisfaction_cuts is None else satisfaction_cuts
    if low > high:
        raise InputError("satisfaction_cuts", f"give the low cut first; got {[low, high]}")
    sat = np.where(s <= low, "low", np.where(s > high, "high", "mid"))
    codes = np.char.add(np.where(c > cut, "clv_high_sat_", "clv_low_sat_"), sat)
    inputs = pd.DataFrame({clv: c, satisfaction: s})
    return finish(
        "clv-cs",
        features,
        codes.astype(object),
        CLV_CS_CODES,
        inputs=inputs,
        value=clv,
        lang=lang,
        params={"clv_cut": cut, "satisfaction_cuts": [float(low), float(high)]},
    )
