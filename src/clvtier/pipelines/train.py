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
from clvtier.config import DataConfig, ExperimentConfig, SplitConfig
from clvtier.data import Accounting, Transactions, load_transactions
from clvtier.data.datasets import load_cdnow, synthetic_transactions
from clvtier.evaluate import segment_outcomes
from clvtier.features import repeat_purchases_by_period, window_length
from clvtier.pipelines.evaluate_models import benchmark_table, out_of_time_frames, test_predictions
from clvtier.pipelines.steps import Steps
from clvtier.segment import Diagnosis, diagnose
from clvtier.tiering import TieringModel
from clvtier.tiering.policy import TierPolicy, load_policy
from clvtier.tracking import resolve_tracking_uri
from clvtier.tracking.registry import register_and_export
from clvtier.tracking.runs import LoggedRun, log_training

STEPS = (
    "load and validate data",
    "features",
    "fit models",
    "evaluate out of time",
    "log to MLflow",
    "register and export",
)


@dataclass
class Prepared:
    """The data of a training run: transactions, protocol, feature tables, policy, fingerprint."""

    transactions: Transactions
    accounting: Accounting
    protocol: dict
    fingerprint: str
    policy: TierPolicy
    train: pd.DataFrame | None = None
    test: pd.DataFrame | None = None


@dataclass
class Evaluation:
    """Test-window results: metrics table, calibration, predictions, cluster outcomes, the tiering
    model and its metadata."""

    table: pd.DataFrame
    calibration: pd.DataFrame
    predictions: dict
    test_metrics: dict[str, float]
    model_info: dict
    tiering: TieringModel
    diagnosis: Diagnosis
    tracking_curves: tuple
    clusters: pd.DataFrame | None = None


@dataclass
class Run:
    """Everything a training run produced before it is logged (what :mod:`tracking.runs` reads)."""

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
        return "\n".join(
            [
                f"Test: features as of {p['test_cutoff']}, the next {p['horizon']:g} {p['time_unit']}; "
                f"ML models trained as of {p['train_cutoff']} "
                f"({self.table['customers'].iloc[0]:,} test customers).",
                "",
                shown,
                "",
                f"tiering model: {self.config.tiering.clv_model} -> registered {self.model_name} "
                f"v{self.version} as @{self.alias} ({self.reason}); {where}",
                f"run {self.run_id} in experiment {self.config.experiment!r}; total "
                f"{sum(self.step_seconds.values()):.1f} s",
                f"look: {ui}",
            ]
        )


def data_source(cfg: DataConfig):
    """What a config's data is: a built-in or synthetic DataFrame, or the user's file path."""
    if cfg.dataset is not None:
        return load_cdnow(sample=cfg.dataset == "cdnow_sample")
    if cfg.synthetic is not None:
        return synthetic_transactions(
            cfg.synthetic.customers, **cfg.synthetic.model_dump(mode="json", exclude={"customers"})
        )
    return cfg.path


def load_data(cfg: DataConfig) -> Transactions:
    """The transactions a config names, read and validated."""
    return load_transactions(data_source(cfg), cfg.spec)


def protocol(cfg: SplitConfig, tx: Transactions) -> dict:
    """Cutoffs, horizon and time unit; ``holdout_last`` counts back from the last transaction date."""
    horizon = cfg.window
    if cfg.holdout_last is None:
        train_cut, test_cut = cfg.train_cutoff, cfg.test_cutoff
    else:
        window = window_length(horizon, cfg.time_unit)
        test_cut = tx.last_date - window
        train_cut = test_cut - window
    return {
        "train_cutoff": train_cut.isoformat(),
        "test_cutoff": test_cut.isoformat(),
        "horizon": horizon,
        "time_unit": cfg.time_unit,
    }


def protocol_digest(fingerprint_: str, proto: dict) -> str:
    text = json.dumps({"data": fingerprint_, **proto}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def prepare(config: ExperimentConfig) -> Prepared:
    """Load and validate the data; the protocol, policy and fingerprint (no features yet)."""
    tx = load_data(config.data)
    return Prepared(
        transactions=tx,
        accounting=tx.accounting(),
        protocol=protocol(config.split, tx),
        fingerprint=tx.fingerprint(),
        policy=load_policy(config.tiering.policy),
    )


def features(prepared: Prepared) -> Prepared:
    """The feature tables at the training and the test cutoff, with their targets."""
    p = prepared.protocol
    prepared.train, prepared.test = out_of_time_frames(
        prepared.transactions,
        train_cutoff=p["train_cutoff"],
        test_cutoff=p["test_cutoff"],
        horizon=p["horizon"],
        time_unit=p["time_unit"],
    )
    return prepared


def fit(config: ExperimentConfig, prepared: Prepared) -> dict[str, Fit]:
    """Every configured model, fitted under the protocol."""
    p = prepared.protocol
    return fit_models(
        prepared.train,
        prepared.test,
        config.models.settings(),
        horizon=p["horizon"],
        time_unit=p["time_unit"],
        random_state=config.seed,
    )


def evaluate(config: ExperimentConfig, prepared: Prepared, fits: dict[str, Fit]) -> Evaluation:
    """Metrics on the test window; the tiering model (fitted exactly as evaluated) and its metadata."""
    test, p = prepared.test, prepared.protocol
    predictions = test_predictions(test, fits)
    table, calibration = benchmark_table(test, fits, predictions)
    clusters = next((f.model for f in fits.values() if "clusters" in f.roles), None)
    outcomes = None
    if clusters is not None:
        outcomes = segment_outcomes(clusters.predict(test), test["holdout_spend"], ~test["active"].to_numpy())
    chosen = table.set_index("model").loc[config.tiering.clv_model].to_dict()
    test_metrics = {
        k: float(v) for k, v in chosen.items() if k not in ("model", "customers") and not pd.isna(v)
    }
    info = {
        "registered_model": config.registry.name,
        "experiment": config.experiment,
        "protocol": {
            **p,
            "digest": protocol_digest(prepared.fingerprint, p),
            "data_fingerprint": prepared.fingerprint,
        },
        "test_metrics": test_metrics,
        "clv_model": config.tiering.clv_model,
        "btyd_model": config.tiering.btyd_model,
        "policy": prepared.policy.model_dump(mode="json"),
    }
    tiering = TieringModel(
        clv=fits[config.tiering.clv_model].model, btyd=fits[config.tiering.btyd_model].model, info=info
    )
    return Evaluation(
        table=table,
        calibration=calibration,
        predictions=predictions,
        test_metrics=test_metrics,
        model_info=info,
        tiering=tiering,
        diagnosis=diagnose(test),
        tracking_curves=tracking_curves(fits, prepared),
        clusters=outcomes,
    )


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


def register(run: Run, logged: LoggedRun, *, tracking_uri: str):
    """Champion or challenger by the registry metric; the champion is exported."""
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
    uri = resolve_tracking_uri(tracking_uri)
    with steps("load and validate data"):
        prepared = prepare(config)
    with steps("features"):
        features(prepared)
    with steps("fit models"):
        fits = fit(config, prepared)
    with steps("evaluate out of time"):
        run = Run(config, prepared, fits, evaluate(config, prepared, fits))
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
    )


__all__ = [
    "STEPS",
    "Evaluation",
    "Prepared",
    "Run",
    "TrainResult",
    "data_source",
    "evaluate",
    "features",
    "fit",
    "load_data",
    "log",
    "prepare",
    "protocol",
    "register",
    "train",
]
