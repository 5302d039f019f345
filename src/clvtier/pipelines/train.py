"""``train(config)``: load -> features -> fit -> evaluate out of time -> log to MLflow -> register.

One MLflow run per call (in the experiment named by the config) with a nested run per model.
The parent run holds the flattened config, the protocol, the data fingerprint, the row
accounting, package versions and git commit, the benchmark table, the comparison plots and the
tiering model; each nested run holds its model's settings, fitted parameters, test metrics,
plots and (XGBoost, clusters) the model itself. No customer rows or ids are logged unless
``log_data`` is set.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from clvtier.clv import btyd_outputs
from clvtier.config import METRIC_DIRECTIONS, DataConfig, ExperimentConfig, SplitConfig
from clvtier.data import Accounting, ReadOptions, Transactions, load_transactions
from clvtier.data.datasets import load_cdnow, synthetic_transactions
from clvtier.evaluate import segment_outcomes
from clvtier.features import repeat_purchases_by_period, unit_days
from clvtier.pipelines.evaluate_models import (
    FittedModel,
    benchmark_table,
    fit_models,
    out_of_time_frames,
)
from clvtier.pipelines.steps import Steps
from clvtier.report import plots
from clvtier.segment import ValueClusters, diagnose
from clvtier.tiering import TieringModel
from clvtier.tiering.policy import load_policy
from clvtier.tracking import environment_tags, experiment_id, resolve_tracking_uri, use_tracking_uri
from clvtier.tracking.pyfunc import log_tiering_model
from clvtier.tracking.registry import CHAMPION, decide, export, register
from clvtier.tracking.store import pinned_requirements

STEPS = (
    "load and validate data",
    "features",
    "fit models",
    "evaluate out of time",
    "log to MLflow",
    "register and export",
)


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


def load_data(cfg: DataConfig) -> Transactions:
    """The transactions a config names, read and validated."""
    if cfg.dataset is not None:
        source = load_cdnow(sample=cfg.dataset == "cdnow_sample")
    elif cfg.synthetic is not None:
        source = synthetic_transactions(
            cfg.synthetic.customers, **cfg.synthetic.model_dump(mode="json", exclude={"customers"})
        )
    else:
        source = cfg.path
    options = ReadOptions(
        delimiter=cfg.delimiter,
        decimal=cfg.decimal,
        encoding=cfg.encoding,
        sheet=cfg.sheet,
        date_format=cfg.date_format,
    )
    return load_transactions(
        source,
        columns=cfg.columns or None,
        options=options,
        returns=cfg.returns,
        drop_duplicates=cfg.drop_duplicates,
        max_amount=cfg.max_amount,
    )


def protocol(cfg: SplitConfig, tx: Transactions) -> dict:
    """Cutoffs, horizon and time unit; ``holdout_last`` counts back from the last transaction date."""
    horizon = cfg.window
    if cfg.holdout_last is None:
        train_cut, test_cut = cfg.train_cutoff, cfg.test_cutoff
    else:
        window = dt.timedelta(days=round(horizon * unit_days(cfg.time_unit)))
        test_cut = tx.last_date - window
        train_cut = test_cut - window
    return {
        "train_cutoff": train_cut.isoformat(),
        "test_cutoff": test_cut.isoformat(),
        "horizon": horizon,
        "time_unit": cfg.time_unit,
    }


def fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 of the rows' values (order included): equal data, equal fingerprint."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    digest.update(",".join(map(str, frame.columns)).encode())
    return digest.hexdigest()


def protocol_digest(fingerprint_: str, proto: dict) -> str:
    text = json.dumps({"data": fingerprint_, **proto}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def tiering_model(
    config: ExperimentConfig, fitted: dict[str, FittedModel], proto: dict, info: dict
) -> TieringModel:
    """The registered model: the chosen CLV/churn model, the BTYD model behind expected purchases
    and P(alive), the spend model; fitted exactly as evaluated (no refit after the test)."""
    t = config.tiering
    clv = fitted[t.clv_model]
    purchase = {t.btyd_model: fitted[t.btyd_model].purchase}
    base = clv.base if t.clv_model == "hybrid" else (None if t.clv_model == "xgboost" else t.clv_model)
    if base is not None:
        purchase[base] = clv.purchase
    return TieringModel(
        purchase_models=purchase,
        spend_model=fitted[t.btyd_model].spend,
        clv_model=t.clv_model,
        btyd_model=t.btyd_model,
        horizon=proto["horizon"],
        time_unit=proto["time_unit"],
        ml=clv.ml,
        base=clv.base,
        scale=clv.scale,
        info=info,
    )


def _median_row(frame: pd.DataFrame, columns) -> pd.DataFrame:
    """One made-up row (column medians): an input example that is no customer's data."""
    return frame[list(columns)].astype(float).median().to_frame().T


def _metrics(row: dict) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if k not in ("model", "customers") and not pd.isna(v)}


def _log_figure(fig, name: str) -> None:
    mlflow.log_figure(fig, name)
    fig.clear()


def _log_frame(frame: pd.DataFrame, folder: Path, name: str) -> None:
    path = folder / name
    frame.to_csv(path, index=False)
    mlflow.log_artifact(str(path))


def _child(name: str):
    """A nested run in the parent's experiment (without it MLflow would use the default one)."""
    return mlflow.start_run(run_name=name, nested=True, experiment_id=mlflow.active_run().info.experiment_id)


def _log_model_runs(config, fitted, table, calibration, test, proto, folder, clustering) -> None:
    rows = {r["model"]: r for r in table.to_dict("records")}
    unit = proto["time_unit"]
    for name, model in fitted.items():
        with _child(name):
            mlflow.set_tag("clvtier.model", name)
            mlflow.log_params({f"model.{k}": v for k, v in model.params.items()})
            mlflow.log_metrics(_metrics(rows[name]))
            if model.ml is None:
                mlflow.log_params({f"fitted.{k}": v for k, v in model.purchase.params_.items()})
                mlflow.log_params({f"fitted.spend.{k}": v for k, v in model.spend.params_.items()})
                mlflow.log_metric("log_likelihood", model.purchase.log_likelihood_)
                max_f = int(min(test["frequency"].quantile(0.99), 40))
                _log_figure(
                    plots.probability_alive_matrix(
                        model.purchase,
                        max_frequency=max(max_f, 1),
                        max_T=float(test["T"].max()),
                        title=f"{name}: P(alive), T = max T ({unit})",
                    ),
                    "probability_alive.png",
                )
            else:
                if model.base:
                    mlflow.log_param("fitted.scale", model.scale)
                parts = {"purchase": model.ml.purchase_model_.booster_, "spend": model.ml.spend_model_}
                gains = {
                    part: pd.Series(est.get_booster().get_score(importance_type="total_gain"))
                    for part, est in parts.items()
                }
                _log_figure(
                    plots.feature_importance(gains, title=f"{name}: feature importance"),
                    "feature_importance.png",
                )
                inputs = (
                    btyd_outputs(test, model.purchase, model.spend, proto["horizon"]) if model.base else test
                )
                example = _median_row(inputs, parts["spend"].get_booster().feature_names)
                for part, est in parts.items():
                    mlflow.xgboost.log_model(
                        est,
                        name=f"{name}_{part}",
                        input_example=example,
                        signature=mlflow.models.infer_signature(
                            example, est.predict(example, output_margin=True)
                        ),
                        pip_requirements=pinned_requirements(),
                    )
            _log_frame(calibration[calibration["model"] == name], folder, f"{name}_calibration.csv")
    if clustering is not None:
        estimator, outcomes = clustering
        with _child("clusters"):
            mlflow.set_tag("clvtier.model", "clusters")
            mlflow.log_params({f"model.{k}": v for k, v in config.models.clusters.model_dump().items()})
            mlflow.log_param("fitted.n_clusters", estimator.n_clusters_)
            for k, score in estimator.selection_scores_.items():
                mlflow.log_metric("selection_score", score, step=int(k))
            top = outcomes.iloc[0]
            mlflow.log_metrics(
                {
                    "n_clusters": estimator.n_clusters_,
                    "top_cluster_share_customers": float(top["share_customers"]),
                    "top_cluster_share_holdout_spend": float(top["share_holdout_spend"]),
                    "holdout_spend_monotone": float(outcomes.attrs["monotone"]),
                }
            )
            _log_frame(outcomes, folder, "clusters_holdout.csv")
            example = _median_row(test, estimator.features)
            example.insert(0, "customer_id", "example")
            mlflow.sklearn.log_model(
                estimator,
                name="clusters",
                serialization_format="skops",
                skops_trusted_types=["clvtier.segment.cluster.ValueClusters"],
                input_example=example,
                signature=mlflow.models.infer_signature(example, estimator.predict(example)),
                pip_requirements=pinned_requirements(),
            )


def _tracking_curves(fitted, test, tx, proto) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    cut = dt.date.fromisoformat(proto["test_cutoff"])
    window = dt.timedelta(days=round(proto["horizon"] * unit_days(proto["time_unit"])))
    actual = repeat_purchases_by_period(
        tx, calibration_end=cut, observation_end=cut + window, time_unit=proto["time_unit"]
    )
    ends = np.minimum(actual["period"].to_numpy(dtype=float), proto["horizon"])
    predicted = {
        name: np.array([model.purchase.expected_purchases(test, t).sum() for t in ends])
        for name, model in fitted.items()
        if model.ml is None
    }
    return actual, predicted


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
    seed = config.seed
    with steps("load and validate data"):
        tx = load_data(config.data)
        policy = load_policy(config.tiering.policy)
        proto = protocol(config.split, tx)
        used = tx.to_pandas()
        data_fingerprint = fingerprint(used)
        accounting = tx.accounting()
    with steps("features"):
        train_frame, test = out_of_time_frames(
            tx,
            train_cutoff=proto["train_cutoff"],
            test_cutoff=proto["test_cutoff"],
            horizon=proto["horizon"],
            time_unit=proto["time_unit"],
        )
    with steps("fit models"):
        fitted = fit_models(
            train_frame,
            test,
            config.models,
            horizon=proto["horizon"],
            time_unit=proto["time_unit"],
            random_state=seed,
        )
        clustering = None
        if config.models.clusters is not None:
            estimator = ValueClusters(**config.models.clusters.model_dump(), random_state=seed).fit(test)
    with steps("evaluate out of time"):
        table, calibration = benchmark_table(test, fitted)
        if config.models.clusters is not None:
            clustering = (
                estimator,
                segment_outcomes(estimator.predict(test), test["holdout_spend"], ~test["active"].to_numpy()),
            )
        actual, predicted = _tracking_curves(fitted, test, tx, proto)
        chosen = table.set_index("model").loc[config.tiering.clv_model]
        test_metrics = _metrics(chosen.to_dict())
        digest = protocol_digest(data_fingerprint, proto)
        model_info = {
            "registered_model": config.registry.name,
            "experiment": config.experiment,
            "protocol": {**proto, "digest": digest, "data_fingerprint": data_fingerprint},
            "test_metrics": test_metrics,
            "clv_model": config.tiering.clv_model,
            "btyd_model": config.tiering.btyd_model,
            "policy": policy.model_dump(mode="json"),
        }
        tiering = tiering_model(config, fitted, proto, model_info)

    uri = use_tracking_uri(resolve_tracking_uri(tracking_uri))
    with (
        steps("log to MLflow"),
        tempfile.TemporaryDirectory(prefix="clvtier-run-") as scratch,
        _quiet_mlflow(),
    ):
        folder = Path(scratch)
        exp_id = experiment_id(config.experiment)
        with mlflow.start_run(experiment_id=exp_id, run_name=f"train {config.experiment}") as run:
            mlflow.set_tags({**environment_tags(), "clvtier.command": "train", "clvtier.protocol": digest})
            mlflow.log_params(config.flat())
            mlflow.log_params({f"protocol.{k}": v for k, v in proto.items()})
            mlflow.log_params({"data.fingerprint": data_fingerprint, "protocol.digest": digest})
            mlflow.log_metrics(
                {
                    f"rows.{k}": v
                    for k, v in accounting.as_dict().items()
                    if isinstance(v, int | float) and not isinstance(v, bool)
                }
            )
            mlflow.log_metrics({f"tiering.{k}": v for k, v in test_metrics.items()})
            diagnosis = diagnose(test)
            mlflow.log_metrics(
                {
                    "test.customers": len(test),
                    "test.repeat_rate": diagnosis.repeat_rate,
                    "test.gini": diagnosis.gini,
                    "test.top20_share": diagnosis.top20_share,
                }
            )
            _log_inputs(config, used, train_frame, test, data_fingerprint, folder, log_data)
            mlflow.log_dict(policy.model_dump(mode="json"), "policy.yaml")
            mlflow.log_params({"policy": policy.label, "policy.digest": policy.digest()})
            _log_frame(table, folder, "model_metrics.csv")
            _log_frame(calibration, folder, "calibration.csv")
            _log_figure(plots.calibration_curves(calibration), "calibration_curve.png")
            _log_figure(
                plots.gain_curves(test["holdout_spend"], {n: m.clv for n, m in fitted.items()}),
                "gain_curve.png",
            )
            if predicted:
                _log_figure(
                    plots.tracking_plot(actual, predicted, time_unit=proto["time_unit"]), "tracking_plot.png"
                )
            _log_model_runs(config, fitted, table, calibration, test, proto, folder, clustering)
            logged = log_tiering_model(
                tiering,
                name="tiering_model",
                folder=folder,
                requirements=pinned_requirements(),
                metadata={"clvtier": model_info},
            )
    with steps("register and export"):
        version, decision, export_path = _register_and_export(
            config, logged.model_uri, test_metrics, model_info, run.info.run_id, uri
        )
    return TrainResult(
        config=config,
        tracking_uri=uri,
        experiment_id=exp_id,
        run_id=run.info.run_id,
        protocol=proto,
        accounting=accounting,
        table=table,
        tiering=tiering,
        model_name=config.registry.name,
        version=version,
        alias=decision.alias,
        reason=decision.reason,
        export_path=export_path,
        model_uri=logged.model_uri,
        step_seconds=steps.seconds,
    )


def _register_and_export(config, model_uri, test_metrics, model_info, run_id, uri):
    metric, digest = config.registry.metric, model_info["protocol"]["digest"]
    decision = decide(
        config.registry.name,
        protocol=digest,
        metric=metric,
        value=test_metrics.get(metric, math.nan),
        higher_is_better=METRIC_DIRECTIONS[metric],
    )
    tags = {
        "clvtier.protocol": digest,
        "clvtier.experiment": config.experiment,
        "clvtier.run_id": run_id,
        **{f"clvtier.test.{k}": str(v) for k, v in test_metrics.items()},
    }
    version = str(register(model_uri, config.registry.name, decision, tags).version)
    client = mlflow.MlflowClient()
    client.set_tag(run_id, "clvtier.registry", f"{config.registry.name} v{version} @{decision.alias}")
    client.set_tag(run_id, "clvtier.registry_reason", decision.reason)
    export_path = None
    if decision.alias == CHAMPION:
        info = {
            **model_info,
            "version": version,
            "alias": decision.alias,
            "run_id": run_id,
            "tracking_uri": uri,
        }
        export_path = export(model_uri, config.registry.export_dir / config.registry.name, info)
    return version, decision, export_path


@contextlib.contextmanager
def _quiet_mlflow():
    """MLflow's advice to the model author (type hints on predict, integer columns in inferred
    schemas) is addressed by the explicit signatures here; keep it off the user's screen."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\.")
        yield


def _log_inputs(config, used, train_frame, test, data_fingerprint, folder, log_data) -> None:
    """Datasets as fingerprint + schema (mlflow.data logs no rows); the rows only with ``log_data``."""
    from mlflow.data.code_dataset_source import CodeDatasetSource

    d = config.data
    where = (
        {"path": str(Path(d.path).resolve())} if d.path is not None else {"dataset": d.dataset or "synthetic"}
    )
    source = CodeDatasetSource(where)
    frames = {"transactions": used, "train_features": train_frame, "test_features": test}
    for context, frame in frames.items():
        digest = data_fingerprint if context == "transactions" else fingerprint(frame)
        dataset = mlflow.data.from_pandas(
            frame, source=source, name=f"{config.experiment}-{context}", digest=digest[:16]
        )
        mlflow.log_input(dataset, context=context)
        if log_data:
            path = folder / f"{context}.parquet"
            frame.to_parquet(path, index=False)
            mlflow.log_artifact(str(path), artifact_path="data")


__all__ = ["STEPS", "TrainResult", "fingerprint", "load_data", "protocol", "tiering_model", "train"]
