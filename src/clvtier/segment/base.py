"""What every segmentation returns, and the helpers the methods share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from clvtier.errors import InputError
from clvtier.segment.labels import check_lang, label, strategy

#: Classic RFM columns of :func:`clvtier.features.customer_features`, shown in every profile.
RFM_COLUMNS = ["recency_days", "frequency_count", "monetary_total"]


@dataclass(frozen=True)
class Segmentation:
    """Labels per customer and a profile per segment.

    Attributes
    ----------
    method : str
        The method that made it, e.g. ``"rfm8"``.
    table : DataFrame
        One row per customer: ``customer_id, segment_code`` (language-independent),
        ``segment`` (display name), ``segment_rank`` (1 = the most valuable segment), the inputs
        that decided the segment, and ``strategy``.
    profile : DataFrame
        One row per segment, most valuable first: ``segment_rank, segment_code, segment,
        customers, share_customers, value, share_value``, the mean of recency_days,
        frequency_count and monetary_total where present, and ``strategy``. ``value`` sums the
        method's value column (named in ``params["value"]``).
    params : dict
        The settings used, including derived ones (cut-offs, weights, chosen k).
    """

    method: str
    table: pd.DataFrame
    profile: pd.DataFrame
    params: dict = field(default_factory=dict)


def require(frame: pd.DataFrame, columns: Sequence[str], method: str, hint: str = "") -> None:
    """Raise an InputError naming the first missing column, the method and the columns found."""
    if not isinstance(frame, pd.DataFrame):
        kind = type(frame).__name__
        raise InputError("features", f"{method} needs a DataFrame of customer features; got {kind}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        found = ", ".join(repr(c) for c in frame.columns) or "none"
        raise InputError("features", f"{method} needs column {missing[0]!r}{hint}; columns found: {found}")
    if "customer_id" not in frame.columns:
        raise InputError("features", "column 'customer_id' is missing")
    if frame.empty:
        raise InputError("features", f"{method}: no customers")


def numeric(frame: pd.DataFrame, column: str, method: str) -> np.ndarray:
    """A column as float, with an error naming the rows that are missing or not finite."""
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        ids = frame["customer_id"].to_numpy()[bad][:5]
        raise InputError(
            "features",
            f"{method}: column {column!r} has {int(bad.sum())} missing or "
            f"non-finite values (customer_id {', '.join(map(str, ids))}"
            f"{', ...' if bad.sum() > 5 else ''})",
        )
    return values


def value_column(frame: pd.DataFrame, value: str | None) -> str:
    """The value to rank on: the given column, else profit when mapped, else spend."""
    if value is not None:
        return value
    return "profit_total" if "profit_total" in frame.columns else "monetary_total"


def positions(frame: pd.DataFrame, keys: Sequence[np.ndarray]) -> np.ndarray:
    """Rank 1..n of each customer, n = best: by ``keys[0]``, ties broken by ``keys[1:]`` in
    turn (higher is better for every key), then by customer id (the smaller id ranks higher).

    The order never depends on the row order, so scores and cuts are deterministic.
    """
    ids, _ = pd.factorize(frame["customer_id"], sort=True)
    order = np.lexsort([-ids, *reversed(list(keys))])
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    return rank


def cut_by_shares(rank: np.ndarray, shares: Sequence[float]) -> np.ndarray:
    """Level 0..len(shares)-1 per customer from ranks (n = best): the best ``shares[0]`` of
    customers get level 0, and so on. Boundaries are rounded to whole customers."""
    n = len(rank)
    bounds = np.round(np.cumsum(shares) * n).astype(np.int64)
    bounds[-1] = n
    from_top = n - rank  # 0 = best
    return np.searchsorted(bounds, from_top, side="right")


def check_shares(shares: Sequence[float], what: str = "shares") -> list[float]:
    shares = [float(s) for s in shares]
    if len(shares) < 2 or any(not np.isfinite(s) or s <= 0 for s in shares):
        raise InputError(what, f"give two or more positive shares; got {shares}")
    if abs(sum(shares) - 1) > 1e-6 and abs(sum(shares) - 100) > 1e-6:
        raise InputError(what, f"shares must add up to 1 (or 100); got {shares} (sum {sum(shares):g})")
    total = sum(shares)
    return [s / total for s in shares]


def finish(
    method: str,
    frame: pd.DataFrame,
    codes: np.ndarray,
    order: Sequence[str],
    *,
    inputs: Sequence[str] | pd.DataFrame,
    value: str,
    lang: str,
    params: dict,
    names: dict[str, tuple[str, str]] | None = None,
) -> Segmentation:
    """Build the :class:`Segmentation` from one code per customer.

    ``order`` lists the codes from the most valuable segment to the least; ``inputs`` are the
    columns of ``frame`` (or a frame of derived columns) that decided the segment; ``names``
    maps codes to (label, strategy) when they are not in the built-in table.
    """
    check_lang(lang)
    names = names or {c: (label(c, lang), strategy(c, lang)) for c in order}
    codes = np.asarray(codes, dtype=object)
    index = pd.Categorical(codes, categories=list(order)).codes  # position in order; -1 = unknown
    if (index < 0).any():
        raise ValueError(f"{method}: segment codes outside {list(order)}: {sorted(set(codes[index < 0]))}")
    table = pd.DataFrame({"customer_id": frame["customer_id"].to_numpy(), "segment_code": codes})
    table["segment"] = np.array([names[c][0] for c in order], dtype=object)[index]
    table["segment_rank"] = index.astype(np.int64) + 1
    extra = inputs if isinstance(inputs, pd.DataFrame) else frame[list(inputs)]
    for c in extra.columns:
        table[c] = extra[c].to_numpy()
    table["strategy"] = np.array([names[c][1] for c in order], dtype=object)[index]

    shown = [c for c in RFM_COLUMNS if c in frame.columns]
    work = pd.DataFrame({"segment_code": codes, "_value": frame[value].to_numpy(dtype=float)})
    for c in shown:
        work[c] = frame[c].to_numpy(dtype=float)
    grouped = work.groupby("segment_code", sort=False)
    profile = pd.DataFrame({"segment_code": list(order)})
    profile.insert(0, "segment_rank", np.arange(1, len(order) + 1))
    profile["segment"] = [names[c][0] for c in order]
    profile["customers"] = grouped.size().reindex(order, fill_value=0).to_numpy()
    profile["share_customers"] = profile["customers"] / len(frame)
    profile["value"] = grouped["_value"].sum().reindex(order, fill_value=0.0).to_numpy()
    total = work["_value"].sum()
    profile["share_value"] = profile["value"] / total if total != 0 else np.nan
    for c in shown:
        profile[f"mean_{c}"] = grouped[c].mean().reindex(order).to_numpy()
    profile["strategy"] = [names[c][1] for c in order]
    return Segmentation(method, table, profile, {**params, "value": value, "lang": lang})
