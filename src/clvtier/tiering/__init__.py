"""Tiering: the fitted tiering model (and, with the scoring module, the tier policy)."""

from clvtier.tiering.model import OUTPUT_COLUMNS, TieringModel

__all__ = ["OUTPUT_COLUMNS", "TieringModel"]
