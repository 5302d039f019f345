"""The model catalogue: every model clvtier can fit, declared once.

An entry names the model as configs write it (``models: {bgnbd_gg: {}}``), its settings class
(the config schema of that key), what it can be used for (``roles``), what it builds on, and the
function that fits it under the out-of-time protocol. The experiment config's ``models:`` and
``tiering:`` sections, the fitting loop (:func:`fit_models`), the benchmark rows, the nested
MLflow runs and the tiering model are all derived from this table; nothing else lists model
names. README, "Adding a model", walks through a new entry.

Roles:

- ``clv``: predicts spend over the horizon and churn (``tiering.clv_model`` may name it);
- ``purchase``: a BTYD model whose expected purchases and P(alive) the tiering model reports
  (``tiering.btyd_model`` may name it);
- ``clusters``: value clusters fitted on the test-cutoff features, judged on the holdout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
from pydantic import Field, field_validator

from clvtier.clv.btyd import BetaGeoModel, GammaGammaModel, ModifiedBetaGeoModel, ParetoNBDModel
from clvtier.clv.fitted import BTYDCLV, HybridCLV, XGBoostCLVModel
from clvtier.clv.ml import XGBoostCLV
from clvtier.errors import InputError
from clvtier.segment import ValueClusters
from clvtier.settings import Settings

# ---------------------------------------------------------------------------------------------
# settings: the config schema of each model key


class BTYDSettings(Settings):
    """A BTYD purchase model with the Gamma-Gamma spend model (shared by all BTYD models)."""

    penalizer: float = Field(0.0, ge=0)


class XGBoostSettings(Settings):
    """Hyperparameters of :class:`clvtier.clv.XGBoostCLV` (both parts)."""

    n_estimators: int = Field(600, ge=1)
    learning_rate: float = Field(0.03, gt=0, le=1)
    max_depth: int = Field(2, ge=1, le=16)
    min_child_weight: float = Field(50, ge=0)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    calibration: Literal["sigmoid", "isotonic", "none"] = "sigmoid"
    n_jobs: int = Field(2, ge=1)


class HybridSettings(XGBoostSettings):
    """XGBoost on top of a BTYD model's outputs, its total matched to that model's forecast."""

    base: str = "bgnbd_gg"

    @field_validator("base")
    @classmethod
    def _purchase_model(cls, value: str) -> str:
        allowed = names("purchase")
        if value not in allowed:
            raise ValueError(f"valid options are {', '.join(map(repr, allowed))}; got {value!r}")
        return value


class ClustersSettings(Settings):
    """:class:`clvtier.segment.ValueClusters` on the features as of the test cutoff."""

    method: Literal["kmeans", "gmm"] = "kmeans"
    n_clusters: int | None = Field(None, ge=1)
    k_range: tuple[int, int] = (2, 8)
    selection: Literal["silhouette", "bic"] | None = None
    features: tuple[str, ...] = ("recency_days", "frequency_count", "monetary_total")


# ---------------------------------------------------------------------------------------------
# fitting under the protocol


@dataclass
class FitContext:
    """What every fit may use: ``train`` (features at the training cutoff with the targets of the
    window after it), ``test`` (features at the test cutoff: the history BTYD models fit on), the
    horizon and time unit, the seed, and the models configured (so one can build on another)."""

    train: pd.DataFrame
    test: pd.DataFrame
    horizon: float
    time_unit: str
    random_state: int
    settings: dict[str, Settings]
    _models: dict = field(default_factory=dict)
    _spend: tuple | None = None

    def spend(self) -> tuple[GammaGammaModel, float]:
        """The Gamma-Gamma model on the test history (one for every BTYD model) and its fit time."""
        if self._spend is None:
            start = time.perf_counter()
            model = GammaGammaModel().fit(self.test)
            self._spend = model, time.perf_counter() - start
        return self._spend

    def model(self, name: str):
        """Model ``name`` fitted with its configured settings (its defaults when not configured)."""
        if name not in self._models:
            entry = CATALOGUE[name]
            self._models[name] = entry.fit(self.settings.get(name) or entry.settings(), self)
        return self._models[name]


def _btyd(name: str, purchase_class) -> Callable:
    def fit(settings: BTYDSettings, ctx: FitContext) -> BTYDCLV:
        spend, _ = ctx.spend()
        purchase = purchase_class(time_unit=ctx.time_unit, penalizer=settings.penalizer).fit(ctx.test)
        return BTYDCLV(name, purchase, spend, ctx.horizon)

    return fit


def _fit_xgboost(settings: XGBoostSettings, ctx: FitContext) -> XGBoostCLVModel:
    ml = XGBoostCLV(random_state=ctx.random_state, **settings.model_dump())
    return XGBoostCLVModel(
        "xgboost", ml.fit(ctx.train, ctx.train["holdout_spend"]), ctx.horizon, ctx.time_unit
    )


def _fit_hybrid(settings: HybridSettings, ctx: FitContext) -> HybridCLV:
    # BTYD refitted at each cutoff on the history before it; ranking from the hybrid, level from
    # the base model's aggregate forecast (ML totals carry the age shift)
    base = ctx.model(settings.base)
    at_train = BTYDCLV(
        settings.base,
        type(base.purchase)(**base.purchase.get_params()).fit(ctx.train),
        GammaGammaModel().fit(ctx.train),
        ctx.horizon,
    )
    ml = XGBoostCLV(offset=True, random_state=ctx.random_state, **settings.model_dump(exclude={"base"}))
    ml.fit(at_train.outputs(ctx.train), ctx.train["holdout_spend"])
    return HybridCLV("hybrid", ml, ctx.horizon, ctx.time_unit, base=base).match_level(ctx.test)


def _fit_clusters(settings: ClustersSettings, ctx: FitContext) -> ValueClusters:
    return ValueClusters(**settings.model_dump(), random_state=ctx.random_state).fit(ctx.test)


# ---------------------------------------------------------------------------------------------
# the table


@dataclass(frozen=True)
class Entry:
    """One model: config key, settings class, roles, what it builds on, how it is fitted."""

    name: str
    settings: type[Settings]
    roles: frozenset[str]
    fit: Callable[[Settings, FitContext], object]
    description: str
    builds_on: Callable[[Settings], str | None] = lambda settings: None


_BTYD_ROLES = frozenset({"clv", "purchase"})

CATALOGUE: dict[str, Entry] = {
    e.name: e
    for e in (
        Entry("bgnbd_gg", BTYDSettings, _BTYD_ROLES, _btyd("bgnbd_gg", BetaGeoModel), "BG/NBD + Gamma-Gamma"),
        Entry(
            "pareto_nbd_gg",
            BTYDSettings,
            _BTYD_ROLES,
            _btyd("pareto_nbd_gg", ParetoNBDModel),
            "Pareto/NBD + Gamma-Gamma",
        ),
        Entry(
            "mbgnbd_gg",
            BTYDSettings,
            _BTYD_ROLES,
            _btyd("mbgnbd_gg", ModifiedBetaGeoModel),
            "MBG/NBD + Gamma-Gamma",
        ),
        Entry(
            "xgboost",
            XGBoostSettings,
            frozenset({"clv"}),
            _fit_xgboost,
            "two-part XGBoost: P(purchase) x E[spend | purchase]",
        ),
        Entry(
            "hybrid",
            HybridSettings,
            frozenset({"clv"}),
            _fit_hybrid,
            "XGBoost on a BTYD model's outputs, total matched to it",
            builds_on=lambda settings: settings.base,
        ),
        Entry(
            "clusters",
            ClustersSettings,
            frozenset({"clusters"}),
            _fit_clusters,
            "value clusters on the test-cutoff features",
        ),
    )
}


def names(role: str) -> tuple[str, ...]:
    """Catalogue names with ``role``, in catalogue order."""
    return tuple(name for name, e in CATALOGUE.items() if role in e.roles)


@dataclass
class Fit:
    """A configured model, fitted: the model, its settings and the seconds its fit took."""

    name: str
    model: object
    settings: Settings
    seconds: float

    @property
    def roles(self) -> frozenset[str]:
        return CATALOGUE[self.name].roles

    @property
    def builds_on(self) -> str | None:
        """The catalogue model this one is built on (the hybrid's BTYD base), if any."""
        return CATALOGUE[self.name].builds_on(self.settings)


def fit_models(
    train: pd.DataFrame,
    test: pd.DataFrame,
    settings: dict[str, Settings],
    *,
    horizon: float,
    time_unit: str,
    random_state: int = 0,
) -> dict[str, Fit]:
    """Fit every configured model (``settings``: catalogue name -> settings), in catalogue order.

    BTYD models are fitted on the history up to the test cutoff (``test``'s calibration
    columns); ML models learn from ``train`` (features at the training cutoff, targets after it).
    A BTYD model's time includes the shared Gamma-Gamma fit.
    """
    unknown = [name for name in settings if name not in CATALOGUE]
    if unknown:
        raise InputError("models", f"valid models are {', '.join(CATALOGUE)}; got {', '.join(unknown)}")
    ctx = FitContext(train, test, horizon, time_unit, random_state, dict(settings))
    out = {}
    for name in (n for n in CATALOGUE if n in settings):
        spend_shared = ctx._spend is not None  # else its fit is timed inside this one
        start = time.perf_counter()
        model = ctx.model(name)
        seconds = time.perf_counter() - start
        if "purchase" in CATALOGUE[name].roles and spend_shared:
            seconds += ctx.spend()[1]
        out[name] = Fit(name, model, settings[name], seconds)
    return out


__all__ = [
    "CATALOGUE",
    "BTYDSettings",
    "ClustersSettings",
    "Entry",
    "Fit",
    "FitContext",
    "HybridSettings",
    "XGBoostSettings",
    "fit_models",
    "names",
]
