"""Tiering: the fitted tiering model and the tier policies applied to its output."""

from clvtier.tiering.model import OUTPUT_COLUMNS, TRANSACTION_COLUMNS, TieringModel
from clvtier.tiering.policy import FittedPolicy, TierPolicy, load_policy

__all__ = [
    "OUTPUT_COLUMNS",
    "TRANSACTION_COLUMNS",
    "FittedPolicy",
    "TieringModel",
    "TierPolicy",
    "load_policy",
]
