"""What a training or scoring run writes to MLflow. Pipelines hand over their results; this module
alone decides how they look in the store. No customer rows or ids are logged unless asked.
"""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from clvtier.report import plots
from clvtier.tracking.pyfunc import log_tiering_model
from clvtier.tracking.store import (
    environment_tags,
    experiment_id,
    pinned_requirements,
    tracking_errors,
    use_tracking_uri,
)


@dataclass
class LoggedRun:
    run_id: str
    experiment_id: str
    model_uri: str | None = None


@contextlib.contextmanager
def _quiet_mlflow():
    """MLflow's advice to the model author (type hints on predict, integer columns in inferred
    schemas) is addressed by the explicit signatures here; keep it off the user's screen."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\.")
        yield


def numeric(values: dict) -> dict[str, float]:
    """The entries of ``values`` that are numbers (not bools, not NaN), as floats."""
    return {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and not pd.isna(v)
    }


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


def _median_row(frame: pd.DataFrame, columns) -> pd.DataFrame:
    """One made-up row (column medians): an input example that is no customer's data."""
    return frame[list(columns)].astype(float).median().to_frame().T


# ---------------------------------------------------------------------------------------------
# training


def log_training(run, *, uri: str, log_data: bool) -> LoggedRun:
    """Log a training run: ``run`` is the train pipeline's record of it (see
    :class:`clvtier.pipelines.train.Evaluation` and friends), read by attribute only."""
    config, prepared, evaluation = run.config, run.prepared, run.evaluation
    use_tracking_uri(uri)
    with (
        tracking_errors(),
        tempfile.TemporaryDirectory(prefix="clvtier-run-") as scratch,
        _quiet_mlflow(),
    ):
        folder = Path(scratch)
        exp_id = experiment_id(config.experiment)
        digest = evaluation.model_info["protocol"]["digest"]
        with mlflow.start_run(experiment_id=exp_id, run_name=f"train {config.experiment}") as active:
            mlflow.set_tags({**environment_tags(), "clvtier.command": "train", "clvtier.protocol": digest})
            mlflow.log_params({k: v for k, v in config.flat().items() if not k.startswith("compare.")})
            mlflow.log_params(
                {f"protocol.{k}": v for k, v in prepared.protocol.items() if k != "origins"}
                | {"protocol.origins": len(prepared.protocol["origins"])}
            )
            mlflow.set_tags({f"clvtier.warning.{w.code}": w.message[:5000] for w in evaluation.warnings})
            mlflow.log_params({"data.fingerprint": prepared.fingerprint, "protocol.digest": digest})
            mlflow.log_metrics({f"rows.{k}": v for k, v in numeric(prepared.accounting.as_dict()).items()})
            mlflow.log_metrics({f"tiering.{k}": v for k, v in evaluation.test_metrics.items()})
            d = evaluation.diagnosis
            mlflow.log_metrics(
                {
                    "test.customers": d.customers,
                    "test.repeat_rate": d.repeat_rate,
                    "test.value_gini": d.gini,
                    "test.value_top20_share": d.top20_share,
                }
            )
            _log_inputs(config, prepared, folder, log_data)
            policy = prepared.policy
            mlflow.log_dict(policy.model_dump(mode="json"), "policy.yaml")
            mlflow.log_params({"policy": policy.label, "policy.digest": policy.digest()})
            _log_frame(evaluation.table, folder, "model_metrics.csv")
            _log_frame(evaluation.origins, folder, "backtest_origins.csv")
            _log_frame(evaluation.summary, folder, "backtest_summary.csv")
            mlflow.log_dict(evaluation.model_info["data_window"], "tiering_data_window.json")
            _log_frame(evaluation.calibration, folder, "calibration.csv")
            _log_figure(plots.calibration_curves(evaluation.calibration), "calibration_curve.png")
            _log_figure(
                plots.gain_curves(
                    prepared.test["holdout_spend"], {n: clv for n, (clv, _) in evaluation.predictions.items()}
                ),
                "gain_curve.png",
            )
            actual, predicted = evaluation.tracking_curves
            if predicted:
                _log_figure(
                    plots.tracking_plot(actual, predicted, time_unit=prepared.protocol["time_unit"]),
                    "tracking_plot.png",
                )
            _log_model_runs(run, folder)
            logged = log_tiering_model(
                evaluation.tiering,
                name="tiering_model",
                folder=folder,
                requirements=pinned_requirements(),
                metadata={"clvtier": evaluation.model_info},
            )
    return LoggedRun(active.info.run_id, exp_id, logged.model_uri)


def _log_model_runs(run, folder: Path) -> None:
    """One nested run per fitted model: settings, fitted parameters, test metrics, plots and
    (XGBoost parts, clusters) the model itself."""
    prepared, evaluation = run.prepared, run.evaluation
    rows = {r["model"]: r for r in evaluation.table.to_dict("records")}
    test, unit = prepared.test, prepared.protocol["time_unit"]
    for name, fit in run.fits.items():
        with _child(name):
            mlflow.set_tag("clvtier.model", name)
            if fit.builds_on:
                mlflow.set_tag("clvtier.builds_on", fit.builds_on)
            mlflow.log_params({f"model.{k}": v for k, v in fit.settings.model_dump().items()})
            if "clusters" in fit.roles:
                _log_clusters(fit.model, evaluation.clusters, test, folder)
                continue
            mlflow.log_params({f"fitted.{k}": v for k, v in fit.model.fitted_params().items()})
            mlflow.log_metrics(numeric({k: v for k, v in rows[name].items() if k != "customers"}))
            purchase = getattr(fit.model, "purchase", None)
            if purchase is not None:
                mlflow.log_metric("log_likelihood", purchase.log_likelihood_)
                max_f = int(min(test["frequency"].quantile(0.99), 40))
                _log_figure(
                    plots.probability_alive_matrix(
                        purchase,
                        max_frequency=max(max_f, 1),
                        max_T=float(test["T"].max()),
                        title=f"{name}: P(alive), T = max T ({unit})",
                    ),
                    "probability_alive.png",
                )
            boosters = fit.model.boosters() if hasattr(fit.model, "boosters") else {}
            if boosters:
                _log_boosters(name, fit.model, boosters, test)
            calibration = evaluation.calibration
            _log_frame(calibration[calibration["model"] == name], folder, f"{name}_calibration.csv")


def _log_boosters(name: str, model, boosters: dict, test: pd.DataFrame) -> None:
    gains = {
        part: pd.Series(est.get_booster().get_score(importance_type="total_gain"))
        for part, est in boosters.items()
    }
    _log_figure(
        plots.feature_importance(gains, title=f"{name}: feature importance"), "feature_importance.png"
    )
    base = getattr(model, "base", None)
    inputs = base.outputs(test) if base is not None else test
    example = _median_row(inputs, boosters["spend"].get_booster().feature_names)
    for part, est in boosters.items():
        mlflow.xgboost.log_model(
            est,
            name=f"{name}_{part}",
            input_example=example,
            signature=mlflow.models.infer_signature(example, est.predict(example, output_margin=True)),
            pip_requirements=pinned_requirements(),
        )


def _log_clusters(estimator, outcomes: pd.DataFrame, test: pd.DataFrame, folder: Path) -> None:
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


def _log_inputs(config, prepared, folder: Path, log_data: bool) -> None:
    """Datasets as fingerprint + schema (no rows); the rows only with ``log_data``. The
    transactions are described from the engine's schema, never copied into pandas."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.types.schema import ColSpec, Schema

    d = config.data
    where = (
        {"path": str(Path(d.path).resolve())} if d.path is not None else {"dataset": d.dataset or "synthetic"}
    )
    source = CodeDatasetSource(where)
    tx = prepared.transactions
    kinds = {"customer_id": "string", "date": "datetime", "order_id": "string"}
    schema = Schema([ColSpec(kinds.get(c, "double"), c) for c in tx.columns])
    mlflow.log_input(
        MetaDataset(
            source, name=f"{config.experiment}-transactions", digest=prepared.fingerprint[:16], schema=schema
        ),
        context="transactions",
    )
    for context, frame in {"train_features": prepared.train, "test_features": prepared.test}.items():
        dataset = mlflow.data.from_pandas(
            frame, source=source, name=f"{config.experiment}-{context}", digest=frame_fingerprint(frame)[:16]
        )
        mlflow.log_input(dataset, context=context)
    if log_data:
        for context, frame in {"train_features": prepared.train, "test_features": prepared.test}.items():
            frame.to_parquet(folder / f"{context}.parquet", index=False)
            mlflow.log_artifact(str(folder / f"{context}.parquet"), artifact_path="data")
        tx.write_used(folder / "transactions.parquet", prepared.transactions.last_date)
        mlflow.log_artifact(str(folder / "transactions.parquet"), artifact_path="data")


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 of a frame's values (order included) and column names."""
    import hashlib

    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    digest.update(",".join(map(str, frame.columns)).encode())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# scoring

SCORING_EXPERIMENT = "scoring"


def log_scoring(result, *, uri: str, params: dict) -> str:
    """One run in the ``scoring`` experiment: aggregates only, never customer rows or ids."""
    use_tracking_uri(uri)
    with tracking_errors():
        exp = experiment_id(SCORING_EXPERIMENT)
        with mlflow.start_run(
            experiment_id=exp,
            run_name=f"score {result.model.name} v{result.model.version} as of {params['as_of']}",
        ) as run:
            mlflow.set_tags({**environment_tags(), "clvtier.command": "score"})
            mlflow.log_params(params)
            acc = {f"rows.{k}": v for k, v in numeric(result.accounting.as_dict()).items()}
            drift = result.migration.warnings if result.migration is not None else []
            mlflow.log_metrics({**acc, "customers": result.customers, "drift_warnings": len(drift),
                                "warnings": len(result.warnings)})
            for row in result.tiers.itertuples():
                mlflow.log_metrics(
                    {
                        f"tier.{row.tier}.customers": row.customers,
                        f"tier.{row.tier}.share_customers": row.share_customers,
                        f"tier.{row.tier}.share_predicted_value": row.share_predicted_value,
                        f"tier.{row.tier}.share_past_value": row.share_past_value,
                        f"tier.{row.tier}.at_risk": row.at_risk,
                    }
                )
            mlflow.log_text(result.tiers.to_csv(index=False), "tier_table.csv")
            mlflow.log_dict(result.policy.model_dump(mode="json"), "policy.yaml")
            mlflow.log_dict(result.cutoffs, "policy_cutoffs.json")
            mlflow.log_dict(result.accounting.as_dict(), "row_accounting.json")
            if result.migration is not None:
                mlflow.log_text(result.migration.matrix.to_csv(), "migration.csv")
                if result.warnings:
                    mlflow.log_text("\n".join(drift) + "\n", "drift_warnings.txt")
    return run.info.run_id


def log_compare(result, *, uri: str) -> str:
    """A ``compare`` run in the config's experiment: the settings, ``compare.<segmentation>.<metric>``
    for every numeric summary column, the label warnings, the summary, bootstrap and agreement
    tables, and the report when it was written. Aggregates only: no customer rows or ids."""
    use_tracking_uri(uri)
    config = result.config
    with tracking_errors(), _quiet_mlflow():
        exp = experiment_id(config.experiment)
        with mlflow.start_run(experiment_id=exp, run_name="compare") as run:
            mlflow.set_tags({**environment_tags(), "clvtier.command": "compare"})
            params = {k: v for k, v in config.flat().items()
                      if k.startswith(("compare.", "split.", "data.dataset", "tiering.", "seed"))}
            params["origins"] = ", ".join(o.cutoff for o in result.origins)
            mlflow.log_params(params)
            metrics = {}
            for row in result.summary.to_dict("records"):
                name = str(row["segmentation"]).replace(":", "_")
                for key, value in row.items():
                    if key in ("segmentation", "kind"):
                        continue
                    value = float(value)
                    if np.isfinite(value):
                        metrics[f"compare.{name}.{key}"] = value
            mlflow.log_metrics({**metrics, "compare.label_warnings": len(result.label_warnings)})
            mlflow.log_text(result.summary.to_csv(index=False), "compare_summary.csv")
            mlflow.log_text(result.bootstrap.to_csv(index=False), "compare_bootstrap.csv")
            mlflow.log_text(result.agreement.to_csv(), "compare_agreement.csv")
            mlflow.log_text(result.nmi.to_csv(), "compare_nmi.csv")
            mlflow.log_text(result.overlap.to_csv(), "compare_top_overlap.csv")
            if result.label_warnings:
                mlflow.log_text("\n".join(result.label_warnings) + "\n", "label_warnings.txt")
            if result.output is not None:
                mlflow.log_artifact(str(result.output))
    return run.info.run_id


__all__ = [
    "SCORING_EXPERIMENT",
    "LoggedRun",
    "frame_fingerprint",
    "log_compare",
    "log_scoring",
    "log_training",
    "numeric",
    "tracking_errors",
]
