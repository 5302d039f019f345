"""The training pipeline against a private MLflow store: runs, nested runs, metrics, artifacts,
datasets without rows, registry aliases, export, and predictions of the reloaded model."""

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from clvtier.cli import app
from clvtier.config import parse_config
from clvtier.data import Transactions, load_transactions
from clvtier.data.datasets import load_cdnow
from clvtier.pipelines.train import STEPS, train
from clvtier.tiering import OUTPUT_COLUMNS

SMALL_XGB = {"n_estimators": 60, "learning_rate": 0.1, "min_child_weight": 10}


def _config(tmp_path, **changes):
    tree = {
        "experiment": "sample",
        "seed": 0,
        "data": {"dataset": "cdnow_sample"},
        "split": {"train_cutoff": "1997-07-01", "test_cutoff": "1997-12-30", "horizon": 26},
        "models": {
            "bgnbd_gg": {},
            "xgboost": SMALL_XGB,
            "hybrid": SMALL_XGB,
            "clusters": {"method": "kmeans", "k_range": [2, 4]},
        },
        "registry": {"name": "tiers", "export_dir": str(tmp_path / "models")},
    }
    tree.update(changes)
    return parse_config(tree)


@pytest.fixture(scope="module")
def trained(new_store, tmp_path_factory):
    """One training run in a private store, shared by the read-only checks below. It must never
    copy the transactions into pandas (train stays out of core, like score)."""
    folder = tmp_path_factory.mktemp("trained")
    uri = new_store(folder)
    steps = []

    def refuse(self, as_of=None):
        raise AssertionError("train copied every transaction into pandas")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Transactions, "to_pandas", refuse)
        result = train(_config(folder), tracking_uri=uri, progress=lambda s, sec: steps.append((s, sec)))
    return result, uri, steps


def _client(uri):
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(uri)


def test_parent_run_has_params_metrics_tags_and_plots(trained):
    result, uri, steps = trained
    client = _client(uri)
    run = client.get_run(result.run_id)
    assert run.data.params["models.xgboost.n_estimators"] == "60"
    assert run.data.params["protocol.test_cutoff"] == "1997-12-30"
    assert run.data.params["protocol.time_unit"] == "weeks" and run.data.params["protocol.horizon"] == "26.0"
    assert len(run.data.params["data.fingerprint"]) == 64
    assert (
        run.data.metrics["rows.rows_read"]
        == run.data.metrics["rows.rows_used"]
        + run.data.metrics["rows.rows_after_as_of"]
        + run.data.metrics["rows.rows_quarantined"]
    )
    hybrid = result.table.set_index("model").loc["hybrid"]
    assert run.data.metrics["tiering.gini"] == pytest.approx(hybrid["gini"])
    assert (
        run.data.tags["clvtier.git_commit"] and run.data.tags["clvtier.version.mlflow"] == mlflow.__version__
    )
    assert "clvtier.version.pandas" in run.data.tags
    assert run.data.tags["clvtier.registry"] == "tiers v1 @champion"
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {
        "model_metrics.csv",
        "calibration.csv",
        "calibration_curve.png",
        "gain_curve.png",
        "tracking_plot.png",
    } <= artifacts
    assert "data" not in artifacts  # no rows without --log-data
    metrics_csv = pd.read_csv(client.download_artifacts(result.run_id, "model_metrics.csv"))
    assert metrics_csv["model"].tolist() == result.table["model"].tolist()
    assert [s for s, sec in steps if sec is None] == [s for s, sec in steps if sec is not None] == list(STEPS)


def test_nested_runs_per_model(trained):
    result, uri, _ = trained
    client = _client(uri)
    children = client.search_runs(
        [result.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'"
    )
    by_name = {r.info.run_name: r for r in children}
    assert set(by_name) == {"bgnbd_gg", "xgboost", "hybrid", "clusters"}
    for name in ("bgnbd_gg", "xgboost", "hybrid"):
        metrics = by_name[name].data.metrics
        assert {"gini", "spearman", "top20_share", "decile_mape", "roc_auc", "pr_auc", "brier", "ece"} <= set(
            metrics
        )
    assert float(by_name["bgnbd_gg"].data.params["fitted.r"]) > 0
    assert by_name["hybrid"].data.tags["clvtier.builds_on"] == "bgnbd_gg"
    assert "probability_alive.png" in {a.path for a in client.list_artifacts(by_name["bgnbd_gg"].info.run_id)}
    assert "feature_importance.png" in {a.path for a in client.list_artifacts(by_name["hybrid"].info.run_id)}
    assert by_name["clusters"].data.metrics["n_clusters"] >= 2
    # XGBoost parts logged natively (UBJ), with a signature
    models = mlflow.search_logged_models(experiment_ids=[result.experiment_id], output_format="list")
    names = {m.name for m in models}
    assert {
        "xgboost_purchase",
        "xgboost_spend",
        "hybrid_purchase",
        "hybrid_spend",
        "clusters",
        "tiering_model",
    } <= names
    booster = mlflow.xgboost.load_model(next(m.model_uri for m in models if m.name == "xgboost_spend"))
    assert booster.get_booster().num_boosted_rounds() == 60
    example = result.fits["hybrid"].model.ml.spend_model_  # the evaluation fit's spend booster
    hybrid = mlflow.xgboost.load_model(next(m.model_uri for m in models if m.name == "hybrid_spend"))
    x = pd.DataFrame(
        np.ones((3, len(example.get_booster().feature_names))), columns=example.get_booster().feature_names
    )
    np.testing.assert_array_equal(
        hybrid.predict(x, output_margin=True), example.predict(x, output_margin=True)
    )


def test_datasets_logged_as_fingerprint_and_schema_without_rows(trained):
    result, uri, _ = trained
    run = _client(uri).get_run(result.run_id)
    inputs = {d.dataset.name: d.dataset for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"sample-transactions", "sample-train_features", "sample-test_features"}
    tx = inputs["sample-transactions"]
    assert tx.digest == run.data.params["data.fingerprint"][:16]
    assert {c["name"] for c in json.loads(tx.schema)["mlflow_colspec"]} >= {"customer_id", "date", "amount"}
    assert tx.source_type == "code" and tx.profile is None  # described by the engine, never copied to pandas
    assert 'customer_id"' not in tx.source  # the source names the dataset, not its rows


def test_champion_exported_and_reloaded_models_predict_as_in_memory(trained):
    result, uri, _ = trained
    _client(uri)
    assert result.alias == "champion" and result.version == "1"
    info = json.loads((result.export_path / "registered.json").read_text())
    assert (
        info["version"] == "1"
        and info["alias"] == "champion"
        and info["protocol"]["test_cutoff"] == "1997-12-30"
    )
    tx = load_transactions(load_cdnow(sample=True)).to_pandas()
    tx["customer_id"] = tx["customer_id"].astype(str)
    expected = result.tiering.predict(tx, as_of="1997-12-30")
    assert list(expected.columns) == list(OUTPUT_COLUMNS) and len(expected) == 2357
    for source in (str(result.export_path), "models:/tiers@champion"):
        loaded = mlflow.pyfunc.load_model(source)
        pd.testing.assert_frame_equal(loaded.predict(tx, params={"as_of": "1997-12-30"}), expected)
    # the model's own test predictions: those of the benchmark's hybrid row
    test = result.tiering.predict(tx, as_of=result.protocol["test_cutoff"])
    assert np.isfinite(test["predicted_clv"]).all() and test["churn_probability"].between(0, 1).all()


BTYD_ONLY = {"models": {"bgnbd_gg": {}}, "tiering": {"clv_model": "bgnbd_gg", "btyd_model": "bgnbd_gg"}}


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, marks=pytest.mark.slow, id="every-model"),
        pytest.param(BTYD_ONLY, id="btyd-only"),  # the fast equivalent: the same rules, one model
    ],
)
def test_same_config_same_metrics_then_challenger_and_champion_rules(trained, new_store, tmp_path, changes):
    """Re-running reproduces the metrics to the last digit; a tie is no win (challenger, champion
    and export untouched); beating the champion's metric promotes; another protocol is never compared."""
    first, _, _ = trained
    uri = new_store(tmp_path)
    config = _config(tmp_path, **changes)
    one = train(config, tracking_uri=uri)
    two = train(config, tracking_uri=uri)
    drop = ["fit_seconds"]
    if not changes:
        pd.testing.assert_frame_equal(
            one.table.drop(columns=drop), first.table.drop(columns=drop), check_exact=True
        )
    pd.testing.assert_frame_equal(
        two.table.drop(columns=drop), one.table.drop(columns=drop), check_exact=True
    )
    assert (one.alias, two.alias) == ("champion", "challenger")
    assert "does not beat champion v1" in two.reason and two.export_path is None
    client = _client(uri)
    assert str(client.get_model_version_by_alias("tiers", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("tiers", "challenger").version) == "2"
    assert client.get_run(two.run_id).data.tags["clvtier.registry_reason"] == two.reason

    client.set_model_version_tag("tiers", "1", "clvtier.test.gini", "0.0")
    three = train(config, tracking_uri=uri)
    assert three.alias == "champion" and "beats champion v1's 0.0000" in three.reason
    assert json.loads((three.export_path / "registered.json").read_text())["version"] == "3"

    other = train(
        _config(tmp_path, split={"train_cutoff": "1997-06-01", "test_cutoff": "1997-12-30", "horizon": 26},
                **changes),
        tracking_uri=uri,
    )
    assert other.alias == "challenger" and "another protocol" in other.reason
    assert str(client.get_model_version_by_alias("tiers", "champion").version) == "3"


def test_train_command_with_overrides_and_log_data(new_store, tmp_path, monkeypatch):
    uri = new_store(tmp_path)
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "exp.yaml"
    config.write_text(
        "experiment: cli\ndata: {dataset: cdnow_sample}\n"
        "split: {train_cutoff: 1997-07-01, test_cutoff: 1997-12-30, horizon: 26}\n"
        "models: {bgnbd_gg: {}, xgboost: {n_estimators: 30}}\n"
        "tiering: {clv_model: xgboost}\nregistry: {name: cli-tiers}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--config",
            str(config),
            "--set",
            "models.xgboost.max_depth=3",
            "--tracking-uri",
            uri,
            "--log-data",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "done fit models" in result.output and "xgboost" in result.output
    assert "registered cli-tiers v1 as @champion" in result.output
    assert (tmp_path / "models" / "cli-tiers" / "MLmodel").exists()
    client = _client(uri)
    run = client.search_runs(
        [client.get_experiment_by_name("cli").experiment_id], filter_string="tags.`clvtier.command` = 'train'"
    )[0]
    assert run.data.params["models.xgboost.max_depth"] == "3"
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "data")}
    assert logged == {
        "data/transactions.parquet",
        "data/train_features.parquet",
        "data/test_features.parquet",
    }


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "models.xgboost.max_dept=4"], "models.xgboost.max_dept: unknown key"),
        (["--set", "split.horizon=0"], "split.horizon: Input should be greater than 0"),
    ],
)
def test_train_command_config_errors_are_one_line(args, message, tmp_path):
    from pathlib import Path

    config = Path(__file__).parents[1] / "experiments" / "cdnow.yaml"
    result = CliRunner().invoke(
        app, ["train", "--config", str(config), *args, "--tracking-uri", f"sqlite:///{tmp_path / 'x.db'}"]
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"clvtier: error: {config}: {message}"]
    assert not (tmp_path / "x.db").exists()
