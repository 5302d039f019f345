"""Per-customer features as of a date, and the calibration/holdout split."""

from clvtier.features.summary import (
    BTYD_COLUMNS,
    TIME_UNITS,
    WINDOWS,
    btyd_summary,
    calibration_holdout,
    customer_features,
    repeat_purchases_by_period,
    unit_days,
    window_length,
)

__all__ = ["BTYD_COLUMNS", "TIME_UNITS", "WINDOWS", "btyd_summary", "calibration_holdout",
           "customer_features", "repeat_purchases_by_period", "unit_days", "window_length"]
