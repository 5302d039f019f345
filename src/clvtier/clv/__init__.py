"""Customer lifetime value models: BTYD purchase models with Gamma-Gamma spend, and XGBoost."""

from clvtier.clv.btyd import (
    BetaGeoModel,
    GammaGammaModel,
    ModelFitError,
    ModifiedBetaGeoModel,
    ParetoNBDModel,
)

__all__ = ["BetaGeoModel", "GammaGammaModel", "ModelFitError", "ModifiedBetaGeoModel", "ParetoNBDModel"]
