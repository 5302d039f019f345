"""Per-customer features as of a date, computed in DuckDB (DESIGN.md section 3).

Time runs on the daily clock. Purchases on the same day are merged into one purchase occasion
(as lifetimes does with ``freq="D"``); a week is 7 days of that clock (lifetimes' ``freq="D",
freq_multiplier=7``, the CDNOW papers' convention), not a calendar-week bucket.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from clvtier.data.dialect import DUCKDB, Dialect
from clvtier.data.io import exact_sum, sql_ident, sql_literal
from clvtier.data.schema import Transactions, load_transactions, to_date
from clvtier.errors import InputError

TIME_UNITS = {"days": 1, "weeks": 7}
#: Windows (days before as_of, inclusive of as_of) for recent spend and counts.
WINDOWS = (30, 90, 180)
BTYD_COLUMNS = ["frequency", "recency", "T", "monetary_value"]


def unit_days(time_unit: str) -> int:
    """Days in one ``time_unit`` (1 or 7), or an InputError naming the valid units."""
    if time_unit not in TIME_UNITS:
        raise InputError("time_unit", f"valid options are {', '.join(map(repr, TIME_UNITS))}; "
                                      f"got {time_unit!r}")
    return TIME_UNITS[time_unit]


def window_length(horizon: float, time_unit: str) -> dt.timedelta:
    """A horizon in ``time_unit`` as whole days of the daily clock (26 weeks -> 182 days)."""
    return dt.timedelta(days=round(horizon * unit_days(time_unit)))


def _as_transactions(data) -> Transactions:
    if hasattr(data, "query") and hasattr(data, "dialect"):  # validated, by either engine
        return data
    return load_transactions(data)


def _days(tx: Transactions, as_of: dt.date, start: dt.date | None = None) -> str:
    """Customer-day rows (table ``day``, built by :func:`load_transactions`) in a window, as known
    on ``as_of``: under the returns policy 'net-earlier' a day's spend is reduced by the returns
    dated on or before ``as_of`` that took back its purchases (table ``netting``)."""
    end = f"DATE {sql_literal(as_of)}"
    where = f"date <= {end}" + (f" AND date > DATE {sql_literal(start)}" if start is not None else "")
    if tx.returns != "net-earlier":
        return f"SELECT * FROM day WHERE {where}"
    return f"""
        SELECT d.* REPLACE (CAST(d.amount + coalesce(n.amount, 0) AS DOUBLE) AS amount)
        FROM (SELECT * FROM day WHERE {where}) d
        LEFT JOIN (SELECT customer_id, date, sum(CAST(amount AS DECIMAL(38, 6))) AS amount
                   FROM netting WHERE returned <= {end} AND {where} GROUP BY customer_id, date) n
            USING (customer_id, date)"""


def _btyd_columns(as_of: dt.date, unit: int, d: Dialect = DUCKDB) -> str:
    """Aggregates over customer-days giving lifetimes' ``frequency, recency, T,
    monetary_value``; repeat-day spend is the total less the first day's."""
    a = f"DATE {sql_literal(as_of)}"
    return f"""CAST(count(*) - 1 AS DOUBLE) AS frequency,
               CAST({d.days("max(date)", "min(date)")} AS DOUBLE) / {unit} AS recency,
               CAST({d.days(a, "min(date)")} AS DOUBLE) / {unit} AS T,
               CASE WHEN count(*) > 1 THEN ({exact_sum("amount")} - min_by(amount, date)) / (count(*) - 1)
                    ELSE CAST(0 AS DOUBLE) END AS monetary_value"""


def btyd_summary(data, *, as_of=None, time_unit: str = "days") -> pd.DataFrame:
    """The BTYD summary per customer: ``frequency, recency, T, monetary_value``.

    Equal to ``lifetimes.utils.summary_data_from_transaction_data(..., freq="D",
    freq_multiplier=1 or 7, monetary_value_col=amount)``: frequency is the number of purchase
    days after the first, recency and T run from the first purchase day to the last one and to
    ``as_of``, and monetary_value is the mean spend of the repeat purchase days (0 without).

    Parameters
    ----------
    data : Transactions, DataFrame or path
        Transactions; anything but :class:`Transactions` (or the Spark engine's
        ``SparkTransactions``) is loaded and validated first.
    as_of : date-like, optional
        Last day of history, inclusive. Default: the last valid transaction date.
    time_unit : {"days", "weeks"}, default="days"
    """
    tx = _as_transactions(data)
    as_of = tx.resolve_as_of(as_of)
    unit = unit_days(time_unit)
    sql = f"""
        WITH daily AS ({_days(tx, as_of)})
        SELECT customer_id, {_btyd_columns(as_of, unit, tx.dialect)}
        FROM daily GROUP BY customer_id ORDER BY customer_id"""
    return _finish(tx.query(sql), as_of, time_unit)


def customer_features(data, *, as_of=None, time_unit: str = "days") -> pd.DataFrame:
    """All per-customer features as of ``as_of`` (DESIGN.md section 3).

    Columns, one row per customer with a purchase on or before ``as_of``:

    - BTYD summary: ``frequency, recency, T, monetary_value`` (in ``time_unit``; see
      :func:`btyd_summary`).
    - Classic RFM: ``recency_days`` (days since the last purchase), ``frequency_count``
      (purchases: distinct orders when ``order_id`` is mapped, else purchase rows; returns are
      not purchases), ``monetary_total`` (net spend).
    - ML extras: ``tenure_days``, ``purchase_days``, ``avg_order_value``, ``spend_{w}d`` and
      ``count_{w}d`` for w in 30/90/180 (window of w days ending on ``as_of``), ``spend_trend``
      ((last 180 days - the 180 before) / (|last| + |before|), 0 when both are 0, in [-1, 1]),
      ``ipt_mean_days`` and ``ipt_std_days`` (gaps between purchase days; NaN with fewer than
      two gaps for the std, one for the mean), and where mapped ``quantity_total``,
      ``profit_total``, ``margin`` (profit / spend), ``satisfaction_mean`` and the mean of each
      covariate.
    """
    tx = _as_transactions(data)
    as_of = tx.resolve_as_of(as_of)
    return finish_features(tx.query(features_sql(tx, as_of, time_unit, tx.dialect)), as_of, time_unit)


def features_sql(tx: Transactions, as_of: dt.date, time_unit: str, d: Dialect = DUCKDB,
                 ordered: bool = True) -> str:
    """The query behind :func:`customer_features`, ordered by customer_id unless not
    ``ordered``, for callers that stream its rows (the batch scorer); pass each chunk of rows
    through :func:`finish_features`. Written once for DuckDB and Spark (``d``): ``tx`` needs
    ``returns``, ``columns`` and ``optional_columns``, and the engine a table ``day``."""
    unit = unit_days(time_unit)
    a = f"DATE {sql_literal(as_of)}"
    windows = []
    for w in WINDOWS:
        windows.append(f"{exact_sum('amount', f'date > {a} - {w}')} AS spend_{w}d")
        windows.append(f"sum(purchases) FILTER (WHERE date > {a} - {w}) AS count_{w}d")
    extras = []
    for c in tx.optional_columns:
        if c == "order_id":
            continue
        s, n = sql_ident("sum_" + c), sql_ident("n_" + c)
        if c in ("quantity", "profit"):
            extras.append(f"{exact_sum(s)} AS {c}_total")
        else:
            extras.append(f"{exact_sum(s)} / nullif(sum({n}), 0) AS {sql_ident(c + '_mean')}")
    if "profit" in tx.columns:
        extras.append(f"{exact_sum('sum_profit')} / nullif({exact_sum('amount')}, 0) AS margin")
    sql = f"""
        WITH daily AS ({_days(tx, as_of)}),
        gaps AS (
            SELECT *, {d.days("date", "lag(date) OVER (PARTITION BY customer_id ORDER BY date)")} AS gap
            FROM daily)
        SELECT customer_id, {_btyd_columns(as_of, unit, d)},
               CAST({d.days(a, "max(date)")} AS INTEGER) AS recency_days,
               CAST(sum(purchases) AS BIGINT) AS frequency_count,
               {exact_sum("amount")} AS monetary_total,
               CAST({d.days(a, "min(date)")} AS INTEGER) AS tenure_days,
               count(*) AS purchase_days,
               {exact_sum("amount")} / nullif(sum(purchases), 0) AS avg_order_value,
               {", ".join(windows)},
               coalesce({exact_sum("amount", f"date > {a} - 180")}, 0) AS _recent,
               coalesce({exact_sum("amount", f"date > {a} - 360 AND date <= {a} - 180")}, 0)
                   AS _earlier,
               avg(gap) AS ipt_mean_days,
               -- the sample std from exact integer sums (stddev_samp's running double sums
               -- depend on row order)
               CASE WHEN count(gap) > 1 THEN sqrt(CAST(count(gap) * sum(gap * gap) - sum(gap) * sum(gap)
                    AS DOUBLE) / (count(gap) * (count(gap) - 1))) END AS ipt_std_days
               {"".join(", " + e for e in extras)}
        FROM gaps GROUP BY customer_id{" ORDER BY customer_id" if ordered else ""}"""
    return sql


def finish_features(frame: pd.DataFrame, as_of: dt.date, time_unit: str) -> pd.DataFrame:
    """Complete rows of :func:`features_sql` (any subset of customers): spend trend, zero-filled
    windows, the as-of date and time unit in ``attrs``."""
    recent, earlier = frame.pop("_recent"), frame.pop("_earlier")
    scale = recent.abs() + earlier.abs()
    frame.insert(frame.columns.get_loc("count_180d") + 1, "spend_trend",
                 ((recent - earlier) / scale.where(scale > 0)).fillna(0.0))
    for w in WINDOWS:
        frame[f"spend_{w}d"] = frame[f"spend_{w}d"].fillna(0.0)
        frame[f"count_{w}d"] = frame[f"count_{w}d"].fillna(0).astype("int64")
    return _finish(frame, as_of, time_unit)


def calibration_holdout(data, *, calibration_end, observation_end,
                        time_unit: str = "days") -> pd.DataFrame:
    """Features as of ``calibration_end`` plus targets from (``calibration_end``, ``observation_end``].

    One row per customer with a purchase on or before ``calibration_end``. Added columns:
    ``holdout_frequency`` (distinct purchase days in the holdout window, lifetimes'
    ``frequency_holdout``), ``holdout_purchases`` (purchases, counted like
    ``frequency_count``), ``holdout_spend`` (net spend), ``holdout_monetary_value`` (mean amount
    per transaction row, lifetimes' ``monetary_value_holdout``), ``active`` (any purchase in the
    window; churn is ``~active``) and ``duration_holdout`` (window length in ``time_unit``).
    """
    tx = _as_transactions(data)
    cal = to_date(calibration_end, what="calibration_end")
    obs = to_date(observation_end, what="observation_end")
    if obs <= cal:
        raise InputError("observation_end", f"must be after calibration_end {cal}; got {obs}")
    features = customer_features(tx, as_of=cal, time_unit=time_unit)
    unit = unit_days(time_unit)
    holdout = tx.query(f"""
        SELECT customer_id, count(*) AS holdout_frequency,
               CAST(sum(purchases) AS BIGINT) AS holdout_purchases,
               {exact_sum("amount")} AS holdout_spend,
               {exact_sum("amount")} / sum(n_rows) AS holdout_monetary_value
        FROM ({_days(tx, obs, start=cal)}) GROUP BY customer_id""")
    out = features.merge(holdout, on="customer_id", how="left", validate="one_to_one")
    out["holdout_frequency"] = out["holdout_frequency"].fillna(0).astype("int64")
    out["holdout_purchases"] = out["holdout_purchases"].fillna(0).astype("int64")
    out["holdout_spend"] = out["holdout_spend"].fillna(0.0)
    out["holdout_monetary_value"] = out["holdout_monetary_value"].fillna(0.0)
    out["active"] = out["holdout_frequency"] > 0
    out["duration_holdout"] = (obs - cal).days / unit
    out.attrs.update(features.attrs, observation_end=obs.isoformat(),
                     calibration_end=cal.isoformat())
    return out


def repeat_purchases_by_period(data, *, calibration_end, observation_end,
                               time_unit: str = "weeks") -> pd.DataFrame:
    """Purchase days in each period of (``calibration_end``, ``observation_end``] by the customers
    who bought on or before ``calibration_end`` (all of them repeat purchases, counted like
    ``frequency``): the actual line of a tracking plot.

    Returns ``period`` (1, 2, ...: the period ending ``period`` time units after
    ``calibration_end``; the last one may be partial) and ``repeat_purchases``, every period present.
    """
    tx = _as_transactions(data)
    cal = to_date(calibration_end, what="calibration_end")
    obs = to_date(observation_end, what="observation_end")
    unit = unit_days(time_unit)
    counts = tx.con.sql(f"""
        WITH known AS (SELECT customer_id FROM ({_days(tx, cal)}) GROUP BY customer_id)
        SELECT CAST(ceil((d.date - DATE {sql_literal(cal)}) / {unit}.0) AS BIGINT) AS period,
               count(*) AS repeat_purchases
        FROM ({_days(tx, obs, start=cal)}) d SEMI JOIN known USING (customer_id)
        GROUP BY period ORDER BY period""").df()
    periods = pd.DataFrame({"period": np.arange(1, int(np.ceil((obs - cal).days / unit)) + 1)})
    out = periods.merge(counts, on="period", how="left")
    out["repeat_purchases"] = out["repeat_purchases"].fillna(0).astype("int64")
    return out


def _finish(frame: pd.DataFrame, as_of: dt.date, time_unit: str) -> pd.DataFrame:
    frame.attrs.update(as_of=as_of.isoformat(), time_unit=time_unit)
    return frame
