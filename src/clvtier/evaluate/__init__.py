"""Holdout metrics for value rankings and churn scores."""

from clvtier.evaluate.metrics import (
    backtest_summary,
    calibration_table,
    churn_metrics,
    decile_mape,
    expected_calibration_error,
    normalized_gini,
    segment_outcomes,
    top_decile_lift,
    top_share,
    value_gini,
    value_metrics,
    value_top_share,
)

__all__ = ["backtest_summary", "calibration_table", "churn_metrics", "decile_mape",
           "expected_calibration_error",
           "normalized_gini", "segment_outcomes", "top_decile_lift", "top_share", "value_gini",
           "value_metrics", "value_top_share"]
