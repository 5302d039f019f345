"""Churn models: an XGBoost classifier, calibrated, optionally built on BTYD outputs."""

from clvtier.churn.models import BTYD_OUTPUTS, ML_FEATURES, XGBoostChurn

__all__ = ["BTYD_OUTPUTS", "ML_FEATURES", "XGBoostChurn"]
