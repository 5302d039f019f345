"""Experiment configs: the typed schema of ``experiments/*.yaml`` and how it is loaded.

A config says where the data is and how to read it, how time is split (two cutoffs and a
horizon, or the last N time units as holdout), which models to fit with which
hyperparameters, which of them feeds the tiering model, and where that model is registered.
Unknown keys are errors naming their path (``models.xgboost.max_dept``); ``--set
path=value`` overrides any value before validation. Relative paths are relative to the
working directory (the project folder), not to the config file.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, create_model, model_validator

from clvtier.clv.catalogue import CATALOGUE, names
from clvtier.data import LoadSpec
from clvtier.errors import InputError
from clvtier.features import window_length
from clvtier.settings import Settings

#: Test metrics a champion can be chosen on, and whether higher is better.
METRIC_DIRECTIONS = {
    "gini": True,
    "spearman": True,
    "top20_share": True,
    "roc_auc": True,
    "pr_auc": True,
    "top_decile_lift": True,
    "decile_mape": False,
    "brier": False,
    "ece": False,
}
CLV_MODELS = names("clv")
PURCHASE_MODELS = names("purchase")


class SyntheticData(Settings):
    """Transactions drawn by :func:`clvtier.data.datasets.synthetic_transactions`."""

    customers: int = Field(5000, ge=1)
    seed: int = 0
    model: Literal[PURCHASE_MODELS] = "bgnbd_gg"
    start: dt.date = dt.date(2020, 1, 1)
    acquisition_weeks: float = Field(12, gt=0)
    observation_weeks: float = Field(78, gt=0)
    with_profit: bool = False
    with_satisfaction: bool = False


class DataConfig(LoadSpec):
    """Exactly one of ``dataset`` (built-in), ``path`` (your file) or ``synthetic``; the reader
    options are those of :class:`clvtier.data.LoadSpec`."""

    dataset: Literal["cdnow", "cdnow_sample"] | None = None
    path: Path | None = None
    synthetic: SyntheticData | None = None

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("dataset", "path", "synthetic") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of dataset, path or synthetic; got {given or 'none'}")
        return self

    @property
    def spec(self) -> LoadSpec:
        return LoadSpec(**self.model_dump(include=set(LoadSpec.model_fields)))


class SplitConfig(Settings):
    """Out-of-time protocol: ML models learn from features as of ``train_cutoff`` and the
    ``horizon`` after it; every model is tested on features as of ``test_cutoff`` against the
    ``horizon`` after that. ``holdout_last: N`` instead puts the test window on the last N time
    units of the data and the training window just before it (``horizon`` = N).

    ``origins: N`` repeats the protocol at N test cutoffs ``step`` time units apart (default: the
    horizon), the given one being the latest, each with its training cutoff one horizon earlier
    (a rolling-origin backtest). Every window must lie inside the data unless
    ``allow_partial_window`` (then metrics of a partial window are marked ``partial``)."""

    time_unit: Literal["days", "weeks"] = "weeks"
    horizon: float | None = Field(None, gt=0)
    train_cutoff: dt.date | None = None
    test_cutoff: dt.date | None = None
    holdout_last: float | None = Field(None, gt=0)
    origins: int = Field(1, ge=1)
    step: float | None = Field(None, gt=0)
    allow_partial_window: bool = False

    @model_validator(mode="after")
    def _cutoffs_or_last(self):
        cutoffs = self.train_cutoff is not None, self.test_cutoff is not None
        if self.holdout_last is not None:
            if any(cutoffs):
                raise ValueError("give either holdout_last or train_cutoff and test_cutoff, not both")
            if self.horizon is not None and self.horizon != self.holdout_last:
                raise ValueError(
                    f"with holdout_last the horizon is the holdout: {self.holdout_last:g}; "
                    f"got horizon {self.horizon:g}"
                )
        elif not all(cutoffs):
            raise ValueError("give train_cutoff and test_cutoff (with horizon), or holdout_last")
        elif self.horizon is None:
            raise ValueError("horizon is required with train_cutoff and test_cutoff")
        return self

    @property
    def window(self) -> float:
        return self.holdout_last if self.holdout_last is not None else self.horizon

    def protocol(self, first: dt.date, last: dt.date) -> dict:
        """Cutoffs of every origin (oldest first) for data from ``first`` to ``last``; the top-level
        ``train_cutoff``/``test_cutoff`` are the latest origin's. Raises InputError naming the
        window when a test window ends after ``last`` (unless ``allow_partial_window``) or a
        training cutoff has no history before it."""
        window = window_length(self.window, self.time_unit)
        step = window_length(self.step or self.window, self.time_unit)
        if self.holdout_last is None:
            train_cut, test_cut = self.train_cutoff, self.test_cutoff
        else:
            test_cut = last - window
            train_cut = test_cut - window
        origins = []
        for k in range(self.origins - 1, -1, -1):
            t0, t1 = train_cut - k * step, test_cut - k * step
            partial = t1 + window > last
            if partial and not self.allow_partial_window:
                raise InputError(
                    "split",
                    f"the test window {t1} to {t1 + window} ends after the last transaction ({last}): "
                    "move the cutoffs earlier, shorten the horizon or use fewer origins "
                    "(or set allow_partial_window: true to accept partial metrics)",
                )
            if t0 < first:
                raise InputError(
                    "split",
                    f"the training cutoff {t0} is before the first transaction ({first}): there is "
                    "no history to learn from; move the cutoffs later or use fewer origins",
                )
            origins.append(
                {"train_cutoff": t0.isoformat(), "test_cutoff": t1.isoformat(), "partial": partial}
            )
        return {
            "train_cutoff": origins[-1]["train_cutoff"],
            "test_cutoff": origins[-1]["test_cutoff"],
            "horizon": self.window,
            "time_unit": self.time_unit,
            "origins": origins,
        }


class _Models(Settings):
    def fitted(self) -> list[str]:
        """Configured models, in catalogue order."""
        return [name for name in CATALOGUE if getattr(self, name) is not None]

    def settings(self) -> dict:
        """Catalogue name -> settings of every configured model."""
        return {name: getattr(self, name) for name in self.fitted()}


#: The models to fit: a key present (``{}`` for defaults) is fitted, an absent one is not. One
#: optional key per catalogue entry, typed by the entry's settings class.
ModelsConfig = create_model(
    "ModelsConfig",
    __base__=_Models,
    __doc__="The models to fit, one optional key per entry of clvtier.clv.catalogue.CATALOGUE.",
    **{name: (entry.settings | None, None) for name, entry in CATALOGUE.items()},
)


class TieringConfig(Settings):
    """What the registered tiering model is made of."""

    clv_model: Literal[CLV_MODELS] = "hybrid"
    btyd_model: Literal[PURCHASE_MODELS] = "bgnbd_gg"
    policy: str | None = None  # tier policy: a built-in name (corporate4, abc4_clv, clv_cs) or a YAML file


class RegistryConfig(Settings):
    """Registry name, the test metric that decides champion vs challenger, the export folder."""

    name: str = Field("clvtier", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    metric: Literal[tuple(METRIC_DIRECTIONS)] = "gini"
    export_dir: Path = Path("models")
    #: A retrain on newer data replaces the champion when its metric on the newest backtest
    #: window is not worse than the champion's there by more than this.
    tolerance: float = Field(0.0, ge=0)
    #: ... or, whatever the metric, when the champion's data ended this many days before the
    #: retrain's (None: never by age).
    max_age_days: int | None = Field(None, ge=1)


#: Segmentations compared by default: every rule-based and learned method, with its defaults.
COMPARE_METHODS = ("rfm8", "rfm10", "rfm", "abc4", "pyramid", "value-matrix", "weighted", "kmeans", "gmm")


class CompareConfig(Settings):
    """What ``clvtier compare`` judges (README, "Comparing segmentations").

    ``methods`` maps each rule-based or learned method of ``clvtier segment`` to its options
    (the fields of :class:`clvtier.pipelines.segment.SegmentOptions`, e.g. ``{threshold: median}``);
    ``policies`` are the tier policies applied to the tiering model's evaluation fits, and
    ``clv_deciles`` adds the model's predicted CLV cut in ten equal groups. ``share`` is the
    equal size of top groups, ``reference`` the segmentation differences are measured against,
    ``draws`` the paired bootstrap draws (0: no intervals).
    """

    methods: dict[str, dict[str, Any]] = Field(default_factory=lambda: {m: {} for m in COMPARE_METHODS})
    policies: list[str] = Field(default_factory=lambda: ["corporate4", "abc4_clv"])
    clv_deciles: bool = True
    share: float = Field(0.2, gt=0, lt=1)
    reference: str = "abc4"
    draws: int = Field(1000, ge=0, le=100_000)


class ExperimentConfig(Settings):
    """One experiment: data, split, models, tiering model, registry, seed."""

    experiment: str = Field(min_length=1)
    seed: int = 0
    data: DataConfig
    split: SplitConfig
    models: ModelsConfig
    tiering: TieringConfig = TieringConfig()
    registry: RegistryConfig = RegistryConfig()
    compare: CompareConfig = CompareConfig()
    #: Refit the tiering model on the latest data after the out-of-time evaluation (what is
    #: registered and scores customers); false keeps the evaluation-time fit (for studies).
    refit: bool = True

    @model_validator(mode="after")
    def _tiering_models_fitted(self):
        fitted = self.models.fitted()
        for key in ("clv_model", "btyd_model"):
            name = getattr(self.tiering, key)
            if name not in fitted:
                raise ValueError(
                    f"tiering.{key} is {name!r}, which is not under models "
                    f"(fitted: {', '.join(fitted) or 'none'})"
                )
        return self

    def flat(self) -> dict[str, str]:
        """Every setting as ``dotted.key -> text`` (MLflow params)."""
        return flatten(self.model_dump(mode="json"))


def flatten(tree: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = "" if value is None else str(value)
    return out


def apply_override(tree: dict, assignment: str, *, source: str = "--set") -> None:
    """Set ``a.b.c=value`` in a nested dict; the value is parsed as YAML (``4``, ``true``, ``[2, 6]``)."""
    path, sep, text = assignment.partition("=")
    keys = path.strip().split(".")
    if not sep or not all(keys):
        raise InputError(
            source, f"write path.to.key=value, e.g. models.xgboost.max_depth=4; got {assignment!r}"
        )
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise InputError(source, f"{path}: value {text!r} is not valid YAML") from None
    node = tree
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise InputError(
                source, f"{'.'.join(keys[: i + 1])} is a value, not a section; cannot set {path}"
            )
        node = child
    node[keys[-1]] = value


def load_config(path, overrides=()) -> ExperimentConfig:
    """Read, override and validate an experiment config; errors name the file and the key path."""
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(str(path), "config file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise InputError(str(path), f"{where}not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(tree, dict):
        raise InputError(str(path), "expected a mapping of settings at the top level")
    for assignment in overrides:
        apply_override(tree, assignment)
    return parse_config(tree, source=str(path))


def parse_config(tree: dict[str, Any], *, source: str = "<config>") -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(tree)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = "".join(
                f"{p}: " if i == len(err["loc"]) - 1 else f"{p}." for i, p in enumerate(err["loc"])
            )
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(where + msg.removeprefix("Value error, "))
        raise InputError(source, "; ".join(problems)) from None


__all__ = [
    "CLV_MODELS",
    "CompareConfig",
    "METRIC_DIRECTIONS",
    "ExperimentConfig",
    "apply_override",
    "flatten",
    "load_config",
    "parse_config",
]
