"""``train(config)``: prepare -> fit -> evaluate out of time -> log to MLflow -> register.

Each step is a plain function of the previous steps' results, callable and testable alone:

- :func:`prepare`: load and validate the data, the protocol's cutoffs, the feature tables at the
  training and the test cutoff, the tier policy, the data fingerprint (computed in DuckDB);
- :func:`fit`: every configured model of the catalogue (:func:`clvtier.clv.catalogue.fit_models`);
- :func:`evaluate`: the benchmark table on the test window, calibration, cluster outcomes, the
  tiering model and what the registry needs to know about it;
- :func:`log`: the run in MLflow (:func:`clvtier.tracking.runs.log_training`);
- :func:`register`: the registry's decision and the export
  (:func:`clvtier.tracking.registry.register_and_export`).

No MLflow calls, maths or file formats live here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clvtier.clv.catalogue import Fit, fit_models
from clvtier.clv.diagnostics import (
    ModelWarning,
    calibration_warnings,
    dropout_warnings,
    equal_prediction_warnings,
    level_warnings,
    spend_warnings,
)
from clvtier.config import DataConfig, ExperimentConfig, SplitConfig
from clvtier.data import Accounting, Transactions, load_transactions
from clvtier.data.datasets import load_cdnow, synthetic_transactions
from clvtier.evaluate import backtest_summary, segment_outcomes
from clvtier.features import repeat_purchases_by_period, window_length
from clvtier.pipelines.evaluate_models import (
    COLUMNS,
    benchmark_row,
    benchmark_table,
    out_of_time_frames,
    test_predictions,
)
from clvtier.pipelines.steps import Steps
from clvtier.segment import Diagnosis, diagnose
from clvtier.tiering import TieringModel
from clvtier.tiering.policy import TierPolicy, load_policy
from clvtier.tracking import resolve_tracking_uri, use_tracking_uri
from clvtier.tracking.models import load_model
from clvtier.tracking.registry import (
    Retrain,
    check_export_target,
    current_champion_at,
    is_retrain,
    register_and_export,
)
from clvtier.tracking.runs import LoggedRun, log_training

STEPS = (
    "load and validate data",
    "features",
    "fit models",
    "evaluate out of time",
    "refit on the latest data",
    "log to MLflow",
    "register and export",
)


@dataclass
class Window:
    """One backtest origin: cutoffs and the feature tables (with targets) at both cutoffs."""

    train_cutoff: str
    test_cutoff: str
    partial: bool
    train: pd.DataFrame
    test: pd.DataFrame


@dataclass
class Prepared:
    """The data of a training run: transactions, protocol, feature tables, policy, fingerprint."""

    transactions: Transactions
    accounting: Accounting
    protocol: dict
    fingerprint: str
    policy: TierPolicy
    windows: list[Window] = field(default_factory=list)

    @property
    def train(self) -> pd.DataFrame:
        """The latest origin's training frame."""
        return self.windows[-1].train

    @property
    def test(self) -> pd.DataFrame:
        """The latest origin's test frame."""
        return self.windows[-1].test


@dataclass
class Evaluation:
    """Test-window results: the metrics table (means over origins), the per-origin table, the
    latest origin's calibration, predictions, cluster outcomes and tracking curves, the warnings,
    and the tiering model with its metadata (set by :func:`refit`, or the evaluation fit)."""

    table: pd.DataFrame
    origins: pd.DataFrame
    summary: pd.DataFrame
    calibration: pd.DataFrame
    predictions: dict
    test_metrics: dict[str, float]
    model_info: dict
    tiering: TieringModel
    diagnosis: Diagnosis
    tracking_curves: tuple
    warnings: list[ModelWarning] = field(default_factory=list)
    clusters: pd.DataFrame | None = None


@dataclass
class Run:
    """Everything a training run produced before it is logged (what :mod:`tracking.runs` reads):
    ``fits`` are the latest origin's evaluation fits."""

    config: ExperimentConfig
    prepared: Prepared
    fits: dict[str, Fit]
    evaluation: Evaluation


@dataclass
class TrainResult:
    """What a training run produced and where it went."""

    config: ExperimentConfig
    tracking_uri: str
    experiment_id: str
    run_id: str
    protocol: dict
    accounting: Accounting
    table: pd.DataFrame
    tiering: TieringModel
    model_name: str
    version: str
    alias: str
    reason: str
    export_path: Path | None
    model_uri: str
    step_seconds: dict[str, float] = field(default_factory=dict)
    #: The latest origin's evaluation fits (what the nested runs log); ``tiering`` is the refit.
    fits: dict[str, Fit] = field(default_factory=dict)
    evaluation: Evaluation | None = None

    def format(self) -> str:
        p = self.protocol
        shown = self.table.drop(columns=["customers"]).to_string(
            index=False, float_format=lambda v: f"{v:.4f}"
        )
        where = (
            f"exported to {self.export_path}"
            if self.export_path
            else f"not exported: {self.config.registry.export_dir / self.model_name} keeps the champion"
        )
        ui = (
            f"mlflow ui --backend-store-uri {self.tracking_uri}"
            if self.tracking_uri.startswith("sqlite:")
            else f"open {self.tracking_uri}"
        )
        origins = p["origins"]
        head = (
            f"Test: features as of {p['test_cutoff']}, the next {p['horizon']:g} {p['time_unit']}; "
            f"ML models trained as of {p['train_cutoff']} "
            f"({self.table['customers'].iloc[0]:,} test customers)."
        )
        if len(origins) > 1:
            head = (
                f"Rolling backtest over {len(origins)} origins (test cutoffs "
                f"{', '.join(o['test_cutoff'] for o in origins)}; the next {p['horizon']:g} {p['time_unit']} "
                "after each, ML models trained one horizon earlier): means over the origins."
            )
        lines = [head, "", shown]
        if len(origins) > 1 and self.evaluation is not None:
            lines += ["", self._ranges()]
        window = self.tiering.info.get("data_window", {})
        fitted = (
            f"refitted on the latest data (BTYD on history to {window['btyd_history_to']}, ML on features as "
            f"of {window['ml_features_as_of']} with targets to {window['ml_targets_to']})"
            if window.get("refit")
            else "as evaluated (refit: false)"
        )
        lines += [f"WARNING: {w}" for w in (self.evaluation.warnings if self.evaluation else [])]
        return "\n".join(
            [
                *lines,
                "",
                f"tiering model: {self.config.tiering.clv_model}, {fitted} -> registered {self.model_name} "
                f"v{self.version} as @{self.alias} ({self.reason}); {where}",
                f"run {self.run_id} in experiment {self.config.experiment!r}; total "
                f"{sum(self.step_seconds.values()):.1f} s",
                f"look: {ui}",
            ]
        )

    def _ranges(self) -> str:
        """Each model's gini and top20_share over the origins: mean [min, max]."""
        s = self.evaluation.summary.set_index(["model", "metric"])
        rows = []
        for model in self.table["model"]:
            cells = []
            for m in ("gini", "top20_share", "total_ratio"):
                mean, low, high = s.loc[(model, m), ["mean", "min", "max"]]
                cells.append(f"{m} {mean:.4f} [{low:.4f}, {high:.4f}]")
            rows.append(f"{model:>18}  " + "  ".join(cells))
        return "range over origins (mean [min, max]):\n" + "\n".join(rows)


def data_source(cfg: DataConfig):
    """What a config's data is: a built-in or synthetic DataFrame, or the user's file path."""
    if cfg.dataset is not None:
        return load_cdnow(sample=cfg.dataset == "cdnow_sample")
    if cfg.synthetic is not None:
        return synthetic_transactions(
            cfg.synthetic.customers, **cfg.synthetic.model_dump(mode="json", exclude={"customers"})
        )
    return cfg.path


def load_data(cfg: DataConfig, engine: str = "duckdb") -> Transactions:
    """The transactions a config names, read and validated by the local engine, or by Spark
    (``engine="spark"``: the feature tables are then computed in Spark and collected)."""
    if engine == "spark":
        from clvtier.spark import spark_session
        from clvtier.spark.load import load_spark

        return load_spark(spark_session(), data_source(cfg), cfg.spec)
    return load_transactions(data_source(cfg), cfg.spec)


def protocol(cfg: SplitConfig, tx: Transactions) -> dict:
    """Cutoffs of every origin, horizon and time unit (see :meth:`SplitConfig.protocol`)."""
    return cfg.protocol(tx.first_date, tx.last_date)


def protocol_digest(fingerprint_: str, proto: dict) -> str:
    text = json.dumps({"data": fingerprint_, **proto}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_digest(config: ExperimentConfig) -> str:
    """What a retrain must share with the champion: every setting but the data's location (a
    monthly retrain reads a newer file) and where the model is exported."""
    settings = {k: v for k, v in config.flat().items()
                if k not in ("data.path", "registry.export_dir") and not k.startswith("compare.")}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def prepare(config: ExperimentConfig, engine: str = "duckdb") -> Prepared:
    """Load and validate the data; the protocol, policy and fingerprint (no features yet)."""
    tx = load_data(config.data, engine)
    return Prepared(
        transactions=tx,
        accounting=tx.accounting(),
        protocol=protocol(config.split, tx),
        fingerprint=tx.fingerprint(),
        policy=load_policy(config.tiering.policy),
    )


def features(prepared: Prepared) -> Prepared:
    """The feature tables at the training and the test cutoff of every origin, with targets."""
    p = prepared.protocol
    prepared.windows = []
    for origin in p["origins"]:
        train, test = out_of_time_frames(
            prepared.transactions,
            train_cutoff=origin["train_cutoff"],
            test_cutoff=origin["test_cutoff"],
            horizon=p["horizon"],
            time_unit=p["time_unit"],
        )
        prepared.windows.append(
            Window(origin["train_cutoff"], origin["test_cutoff"], origin["partial"], train, test)
        )
    return prepared


def fit(config: ExperimentConfig, prepared: Prepared) -> list[dict[str, Fit]]:
    """Every configured model, fitted under the protocol at every origin (oldest first)."""
    p = prepared.protocol
    return [
        fit_models(
            w.train,
            w.test,
            config.models.settings(),
            horizon=p["horizon"],
            time_unit=p["time_unit"],
            random_state=config.seed,
        )
        for w in prepared.windows
    ]


def evaluate(config: ExperimentConfig, prepared: Prepared, fits: list[dict[str, Fit]]) -> Evaluation:
    """Metrics at every origin and their means (the table models are chosen on); the tiering model
    as evaluated at the latest origin (:func:`refit` replaces it); the warnings."""
    tables, latest = [], None
    for window, window_fits in zip(prepared.windows, fits, strict=True):
        predictions = test_predictions(window.test, window_fits)
        table, calibration = benchmark_table(window.test, window_fits, predictions)
        tables.append(table.assign(origin=window.test_cutoff, partial=window.partial))
        latest = predictions, calibration
    origins = pd.concat(tables, ignore_index=True)
    table = mean_table(origins)
    predictions, calibration = latest
    test, last_fits = prepared.test, fits[-1]
    clusters = next((f.model for f in last_fits.values() if "clusters" in f.roles), None)
    outcomes = None
    if clusters is not None:
        outcomes = segment_outcomes(clusters.predict(test), test["holdout_spend"], ~test["active"].to_numpy())
    chosen = table.set_index("model").loc[config.tiering.clv_model].to_dict()
    test_metrics = {
        k: float(v) for k, v in chosen.items() if k not in ("model", "customers") and not pd.isna(v)
    }
    info = model_info(config, prepared, test_metrics)
    warnings = diagnose_fits(config, prepared, fits, origins, predictions)
    info["warnings"] = [str(w) for w in warnings]
    tiering = TieringModel(
        clv=last_fits[config.tiering.clv_model].model,
        btyd=last_fits[config.tiering.btyd_model].model,
        info=info,
    )
    return Evaluation(
        table=table,
        origins=origins,
        summary=backtest_summary(origins),
        calibration=calibration,
        predictions=predictions,
        test_metrics=test_metrics,
        model_info=info,
        tiering=tiering,
        diagnosis=diagnose(test),
        tracking_curves=tracking_curves(last_fits, prepared),
        warnings=warnings,
        clusters=outcomes,
    )


def model_info(config: ExperimentConfig, prepared: Prepared, test_metrics: dict) -> dict:
    """What the registered model carries about itself: protocol, digests, test metrics, policy,
    the data window its parts were fitted on (the evaluation fit's; :func:`refit` updates it)."""
    p = prepared.protocol
    return {
        "registered_model": config.registry.name,
        "experiment": config.experiment,
        "protocol": {
            **p,
            "digest": protocol_digest(prepared.fingerprint, p),
            "data_fingerprint": prepared.fingerprint,
        },
        "config_digest": config_digest(config),
        "data_last_date": prepared.transactions.last_date.isoformat(),
        "test_metrics": test_metrics,
        "clv_model": config.tiering.clv_model,
        "btyd_model": config.tiering.btyd_model,
        "policy": prepared.policy.model_dump(mode="json"),
        "data_window": {
            "btyd_history_to": p["test_cutoff"],
            "ml_features_as_of": p["train_cutoff"],
            "ml_targets_to": (
                pd.Timestamp(p["train_cutoff"]).date() + window_length(p["horizon"], p["time_unit"])
            ).isoformat(),
            "refit": False,
        },
    }


def mean_table(origins: pd.DataFrame) -> pd.DataFrame:
    """One row per model: each metric's mean over the origins (customers: the latest origin's)."""
    numeric = [c for c in COLUMNS if c not in ("model", "customers")]
    means = origins.groupby("model", sort=False)[numeric].mean()
    customers = origins.groupby("model", sort=False)["customers"].last()
    return means.assign(customers=customers).reset_index()[COLUMNS]


def diagnose_fits(
    config, prepared: Prepared, fits: list[dict[str, Fit]], origins: pd.DataFrame, predictions: dict
) -> list:
    """Every check of :mod:`clvtier.clv.diagnostics` on this run's fits and backtest."""
    last = fits[-1]
    purchase = {n: f.model for n, f in last.items() if "purchase" in f.roles}
    out = dropout_warnings({n: m.purchase for n, m in purchase.items()})
    if len(purchase) > 1:
        # the latest origin's test predictions, already computed for the benchmark
        out += equal_prediction_warnings({n: predictions[n][0] for n in purchase})
    if purchase:
        out += spend_warnings(next(iter(purchase.values())).spend)
    chosen = origins[origins["model"] == config.tiering.clv_model]
    tx, window = (
        prepared.transactions,
        window_length(prepared.protocol["horizon"], prepared.protocol["time_unit"]),
    )
    daily = pd.DataFrame(
        [
            {
                "origin": w.test_cutoff,
                "before": tx.total_amount(pd.Timestamp(w.test_cutoff).date() - window, w.test_cutoff)
                / window.days,
                "after": tx.total_amount(w.test_cutoff, pd.Timestamp(w.test_cutoff).date() + window)
                / window.days,
            }
            for w in prepared.windows
            if not w.partial
        ]
    )
    out += level_warnings(chosen[~chosen["partial"]], daily) if len(daily) else []
    out += calibration_warnings(config.tiering.clv_model, float(chosen["ece"].mean()))
    return out


def refit(config: ExperimentConfig, prepared: Prepared, evaluation: Evaluation) -> Evaluation:
    """The tiering model refitted on the latest data: ML parts on the features as of
    ``last - horizon`` with targets in the final horizon, BTYD and Gamma-Gamma on all history to
    the last date, the hybrid's level matched on that population. Off with ``refit: false``."""
    if not config.refit:
        return evaluation
    p, tx = prepared.protocol, prepared.transactions
    last = tx.last_date
    ml_cut = last - window_length(p["horizon"], p["time_unit"])
    train, population = out_of_time_frames(
        tx, train_cutoff=ml_cut, test_cutoff=last, horizon=p["horizon"], time_unit=p["time_unit"]
    )
    t = config.tiering
    settings = config.models.settings()
    wanted = {name: settings[name] for name in dict.fromkeys((t.clv_model, t.btyd_model))}
    fits = fit_models(
        train, population, wanted, horizon=p["horizon"], time_unit=p["time_unit"], random_state=config.seed
    )
    info = {
        **evaluation.model_info,
        "data_window": {
            "btyd_history_to": last.isoformat(),
            "ml_features_as_of": ml_cut.isoformat(),
            "ml_targets_to": last.isoformat(),
            "refit": True,
        },
    }
    evaluation.model_info = info
    evaluation.tiering = TieringModel(clv=fits[t.clv_model].model, btyd=fits[t.btyd_model].model, info=info)
    return evaluation


def tracking_curves(fits: dict[str, Fit], prepared: Prepared) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Cumulative repeat purchases in the test window, actual and as each BTYD model expects."""
    p, test = prepared.protocol, prepared.test
    cut = pd.Timestamp(p["test_cutoff"]).date()
    actual = repeat_purchases_by_period(
        prepared.transactions,
        calibration_end=cut,
        observation_end=cut + window_length(p["horizon"], p["time_unit"]),
        time_unit=p["time_unit"],
    )
    ends = np.minimum(actual["period"].to_numpy(dtype=float), p["horizon"])
    predicted = {
        name: np.array([fit.model.purchase.expected_purchases(test, t).sum() for t in ends])
        for name, fit in fits.items()
        if "purchase" in fit.roles
    }
    return actual, predicted


def log(run: Run, *, tracking_uri: str, log_data: bool = False) -> LoggedRun:
    """The run in MLflow: params, metrics, plots, nested model runs, the tiering model."""
    return log_training(run, uri=tracking_uri, log_data=log_data)


def challenge(run: Run, *, tracking_uri: str) -> Retrain | None:
    """When this run retrains the champion's config on newer data, score the champion model (as
    registered, no refit) and this run's evaluation fit on the newest complete backtest window."""
    config, info = run.config, run.evaluation.model_info
    champion = current_champion_at(config.registry.name, tracking_uri)
    if champion is None or not is_retrain(
        champion,
        config_digest=info["config_digest"],
        data_last_date=info["data_last_date"],
        protocol=info["protocol"]["digest"],
    ):
        return None
    window = next(w for w in reversed(run.prepared.windows) if not w.partial)
    loaded = load_model(f"models:/{config.registry.name}/{champion.version}")
    clv, churn = loaded.model.clv.predict(window.test)
    metric = config.registry.metric
    champion_value = benchmark_row("champion", window.test, clv, churn)[metric]
    origins = run.evaluation.origins
    mine = origins[(origins["origin"] == window.test_cutoff) & (origins["model"] == config.tiering.clv_model)]
    age = pd.Timestamp(info["data_last_date"]) - pd.Timestamp(champion.tags["clvtier.data_last_date"])
    return Retrain(
        challenger=float(mine[metric].iloc[0]),
        champion=float(champion_value),
        window=window.test_cutoff,
        age_days=int(age.days),
        tolerance=config.registry.tolerance,
        max_age_days=config.registry.max_age_days,
    )


def register(run: Run, logged: LoggedRun, *, tracking_uri: str):
    """Champion or challenger by the registry metric (or, for a retrain on newer data, by both
    models' metric on the newest window); the champion is exported."""
    config = run.config
    return register_and_export(
        logged.model_uri,
        name=config.registry.name,
        metric=config.registry.metric,
        test_metrics=run.evaluation.test_metrics,
        model_info=run.evaluation.model_info,
        run_id=logged.run_id,
        export_dir=config.registry.export_dir,
        tracking_uri=tracking_uri,
        experiment=config.experiment,
        retrain=challenge(run, tracking_uri=tracking_uri),
        description="\n".join(f"WARNING {w}" for w in run.evaluation.warnings),
    )


def train(
    config: ExperimentConfig,
    *,
    tracking_uri: str | None = None,
    log_data: bool = False,
    progress: Callable[[str, float | None], None] | None = None,
) -> TrainResult:
    """Run the experiment ``config``: fit, evaluate out of time, log to MLflow, register, export.

    Parameters
    ----------
    tracking_uri : str, optional
        Default: ``MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db``.
    log_data : bool, default=False
        Also log the used transactions and the train/test feature tables (customer rows and ids)
        as artifacts. Without it only the datasets' fingerprints and schemas are logged.
    progress : callable, optional
        Called as ``progress(step, None)`` when a step starts and ``progress(step, seconds)`` when
        it ends.
    """
    steps = Steps(progress)
    uri = use_tracking_uri(resolve_tracking_uri(tracking_uri))  # a store that cannot be used stops us now
    check_export_target(config.registry.export_dir / config.registry.name)  # before any work
    with steps("load and validate data"):
        prepared = prepare(config)
    with steps("features"):
        features(prepared)
    with steps("fit models"):
        fits = fit(config, prepared)
    with steps("evaluate out of time"):
        run = Run(config, prepared, fits[-1], evaluate(config, prepared, fits))
    with steps("refit on the latest data"):
        refit(config, prepared, run.evaluation)
    with steps("log to MLflow"):
        logged = log(run, tracking_uri=uri, log_data=log_data)
    with steps("register and export"):
        registered = register(run, logged, tracking_uri=uri)
    return TrainResult(
        config=config,
        tracking_uri=uri,
        experiment_id=logged.experiment_id,
        run_id=logged.run_id,
        protocol=prepared.protocol,
        accounting=prepared.accounting,
        table=run.evaluation.table,
        tiering=run.evaluation.tiering,
        model_name=config.registry.name,
        version=registered.version,
        alias=registered.decision.alias,
        reason=registered.decision.reason,
        export_path=registered.export_path,
        model_uri=logged.model_uri,
        step_seconds=steps.seconds,
        fits=run.fits,
        evaluation=run.evaluation,
    )


__all__ = [
    "STEPS",
    "Evaluation",
    "Prepared",
    "Run",
    "TrainResult",
    "data_source",
    "challenge",
    "evaluate",
    "features",
    "fit",
    "load_data",
    "log",
    "prepare",
    "protocol",
    "refit",
    "register",
    "train",
]
