"""Customer lifetime value models: BTYD purchase models with Gamma-Gamma spend, and XGBoost."""

from clvtier.clv.btyd import (
    BetaGeoModel,
    GammaGammaModel,
    ModelFitError,
    ModifiedBetaGeoModel,
    ParetoNBDModel,
)
from clvtier.clv.ml import XGBoostCLV, btyd_outputs, match_total

__all__ = ["BetaGeoModel", "GammaGammaModel", "ModelFitError", "ModifiedBetaGeoModel", "ParetoNBDModel",
           "XGBoostCLV", "btyd_outputs", "match_total"]
