"""Production training (issue 16): windows inside the data, rolling-origin backtests, the refit
on the latest data, monthly retrains that can become champion, and the warnings a model gives
when it cannot be trusted."""

import datetime as dt
import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from clvtier.cli import app
from clvtier.clv import GammaGammaModel
from clvtier.clv.diagnostics import (
    calibration_warnings,
    equal_prediction_warnings,
    level_warnings,
    spend_warnings,
)
from clvtier.config import SplitConfig, parse_config
from clvtier.data.datasets import load_cdnow, synthetic_transactions
from clvtier.errors import InputError
from clvtier.pipelines.score import score
from clvtier.pipelines.train import train

FIRST, LAST = dt.date(1997, 1, 1), dt.date(1998, 6, 30)
SMALL_XGB = {"n_estimators": 30, "learning_rate": 0.1, "min_child_weight": 10}


def _config(tmp_path, **changes):
    tree = {
        "experiment": "prod",
        "data": {"dataset": "cdnow_sample"},
        "split": {"train_cutoff": "1997-12-30", "test_cutoff": "1998-03-31", "horizon": 13},
        "models": {"bgnbd_gg": {}},
        "tiering": {"clv_model": "bgnbd_gg", "btyd_model": "bgnbd_gg"},
        "registry": {"name": "prod", "export_dir": str(tmp_path / "models")},
    }
    tree.update(changes)
    return parse_config(tree)


# --- windows ------------------------------------------------------------------------------------


def test_origins_step_back_from_the_given_cutoffs():
    split = SplitConfig(train_cutoff="1997-12-30", test_cutoff="1998-03-31", horizon=13, origins=3)
    p = split.protocol(FIRST, LAST)
    # 13 weeks = 91 days: 1998-03-31 - 91 d = 1997-12-30, - 182 d = 1997-09-30
    assert [o["test_cutoff"] for o in p["origins"]] == ["1997-09-30", "1997-12-30", "1998-03-31"]
    assert [o["train_cutoff"] for o in p["origins"]] == ["1997-07-01", "1997-09-30", "1997-12-30"]
    assert p["test_cutoff"] == "1998-03-31" and not any(o["partial"] for o in p["origins"])
    stepped = SplitConfig(holdout_last=13, origins=2, step=4).protocol(FIRST, LAST)
    assert [o["test_cutoff"] for o in stepped["origins"]] == ["1998-03-03", "1998-03-31"]  # 4 weeks apart


@pytest.mark.parametrize(
    "split, message",
    [
        (
            {"train_cutoff": "1997-07-01", "test_cutoff": "1997-12-30", "horizon": 39},
            r"the test window 1997-12-30 to 1998-09-29 ends after the last transaction \(1998-06-30\)",
        ),
        (
            {"train_cutoff": "1997-12-30", "test_cutoff": "1998-03-31", "horizon": 13, "origins": 6},
            r"the training cutoff 1996-10-01 is before the first transaction \(1997-01-01\)",
        ),
    ],
)
def test_windows_outside_the_data_are_refused(split, message):
    with pytest.raises(InputError, match=message):
        SplitConfig(**split).protocol(FIRST, LAST)


def test_partial_windows_only_when_allowed_and_marked(tmp_path, new_store):
    split = {"train_cutoff": "1997-04-01", "test_cutoff": "1997-12-30", "horizon": 39}
    p = SplitConfig(**split, allow_partial_window=True).protocol(FIRST, LAST)
    assert p["origins"][-1]["partial"]
    result = train(
        _config(tmp_path, split={**split, "allow_partial_window": True}), tracking_uri=new_store(tmp_path)
    )
    assert result.evaluation.origins["partial"].all()


def test_invalid_window_is_one_line_exit_2_through_the_cli(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "experiment: w\ndata: {dataset: cdnow_sample}\n"
        "split: {train_cutoff: 1997-07-01, test_cutoff: 1997-12-30, horizon: 39}\n"
        "models: {bgnbd_gg: {}}\ntiering: {clv_model: bgnbd_gg}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        app, ["train", "-c", str(config), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]
    )
    assert result.exit_code == 2
    assert result.output.strip().startswith("clvtier: error: split: the test window 1997-12-30 to 1998-09-29")
    assert len(result.output.strip().splitlines()) == 1


# --- rolling backtest and refit --------------------------------------------------------------------


@pytest.fixture(scope="module")
def backtest(new_store, tmp_path_factory):
    folder = tmp_path_factory.mktemp("backtest")
    uri = new_store(folder)
    config = _config(
        folder,
        split={"train_cutoff": "1997-12-30", "test_cutoff": "1998-03-31", "horizon": 13, "origins": 3},
        models={"bgnbd_gg": {}, "hybrid": SMALL_XGB},
        tiering={"clv_model": "hybrid", "btyd_model": "bgnbd_gg"},
    )
    return train(config, tracking_uri=uri), uri


def test_rolling_backtest_reports_every_origin_and_their_mean(backtest):
    result, uri = backtest
    origins = result.evaluation.origins
    assert sorted(set(origins["origin"])) == ["1997-09-30", "1997-12-30", "1998-03-31"]
    hybrid = origins[origins["model"] == "hybrid"]
    assert result.table.set_index("model").loc["hybrid", "gini"] == pytest.approx(hybrid["gini"].mean())
    summary = result.evaluation.summary.set_index(["model", "metric"])
    assert summary.loc[("hybrid", "gini"), "min"] == pytest.approx(hybrid["gini"].min())
    assert summary.loc[("hybrid", "gini"), "origins"] == 3
    # the registry decides on the mean
    run = mlflow.MlflowClient(uri).get_run(result.run_id)
    assert run.data.metrics["tiering.gini"] == pytest.approx(hybrid["gini"].mean())
    assert run.data.params["protocol.origins"] == "3"
    artifacts = {a.path for a in mlflow.MlflowClient(uri).list_artifacts(result.run_id)}
    assert {"backtest_origins.csv", "backtest_summary.csv", "tiering_data_window.json"} <= artifacts
    assert "range over origins (mean [min, max])" in result.format()


def test_registered_model_is_refitted_on_the_latest_data(backtest, tmp_path):
    result, uri = backtest
    window = result.tiering.info["data_window"]
    assert window == {
        "btyd_history_to": "1998-06-30",
        "ml_features_as_of": "1998-03-31",
        "ml_targets_to": "1998-06-30",
        "refit": True,
    }
    exported = json.loads((result.export_path / "registered.json").read_text())
    assert exported["data_window"] == window
    version = mlflow.MlflowClient(uri).get_model_version("prod", result.version)
    assert version.tags["clvtier.data_window.btyd_history_to"] == "1998-06-30"
    # the refit's BTYD parameters are not the evaluation fit's (history to 1998-03-31)
    refit_r = result.tiering.btyd.purchase.params_["r"]
    assert refit_r != result.fits["bgnbd_gg"].model.purchase.params_["r"]
    path = tmp_path / "tx.csv"
    load_cdnow(sample=True).to_csv(path, index=False)
    scored = score(
        str(result.export_path), path, as_of="1998-06-30", output=tmp_path / "t.parquet", log_to_mlflow=False
    )
    assert scored.model.model.info["data_window"]["btyd_history_to"] == "1998-06-30"


def test_refit_false_keeps_the_evaluation_fit(tmp_path, new_store):
    result = train(_config(tmp_path, refit=False), tracking_uri=new_store(tmp_path))
    assert result.tiering.info["data_window"] == {
        "btyd_history_to": "1998-03-31",
        "ml_features_as_of": "1997-12-30",
        "ml_targets_to": "1998-03-31",
        "refit": False,
    }
    assert result.tiering.btyd is result.fits["bgnbd_gg"].model


# --- monthly retrains -------------------------------------------------------------------------------


def test_three_monthly_retrains_move_the_champion(tmp_path, new_store):
    """Data cut at the end of March, April, May and June 1998; the same config each month. A retrain
    is compared with the champion on the newest complete window and promoted when not worse (or when
    the champion's data is more than 45 days older)."""
    uri = new_store(tmp_path)
    sample = load_cdnow(sample=True)
    results = []
    for cut in ("1998-03-31", "1998-04-30", "1998-05-31", "1998-06-30"):
        path = tmp_path / f"tx_{cut}.csv"
        sample[sample["date"] <= cut].to_csv(path, index=False)
        config = _config(
            tmp_path,
            data={"path": str(path)},
            split={"holdout_last": 13},
            registry={"name": "monthly", "export_dir": str(tmp_path / "models"), "max_age_days": 45},
        )
        results.append(train(config, tracking_uri=uri))
    client = mlflow.MlflowClient(uri)
    assert results[0].alias == "champion" and results[0].reason == "no champion yet"
    champion = "1"
    for result in results[1:]:
        version = client.get_model_version("monthly", result.version)
        challenger, held = (
            float(version.tags["clvtier.retrain.challenger"]),
            float(version.tags["clvtier.retrain.champion"]),
        )
        age = int(version.tags["clvtier.retrain.age_days"])
        assert "retrain on newer data" in result.reason and f"champion v{champion}" in result.reason
        expected = "champion" if challenger >= held or age > 45 else "challenger"
        assert result.alias == expected, result.reason
        run_tags = client.get_run(result.run_id).data.tags
        assert run_tags["clvtier.retrain.champion"] == version.tags["clvtier.retrain.champion"]
        if result.alias == "champion":
            champion = result.version
    assert champion != "1"  # the champion moved
    assert str(client.get_model_version_by_alias("monthly", "champion").version) == champion
    exported = json.loads((tmp_path / "models" / "monthly" / "registered.json").read_text())
    assert exported["version"] == champion and exported["data_window"]["refit"] is True


# --- diagnostics ------------------------------------------------------------------------------------


def _synthetic_config(tmp_path, frame, **changes):
    path = tmp_path / "tx.csv"
    frame.to_csv(path, index=False)
    tree = {
        "data": {"path": str(path)},
        "split": {"holdout_last": 13},
        "models": {"bgnbd_gg": {}, "mbgnbd_gg": {}},
    }
    tree.update(changes)
    return _config(tmp_path, **tree)


def test_no_dropout_simulation_warns_and_a_normal_one_does_not(tmp_path, new_store):
    uri = new_store(tmp_path)
    immortal = synthetic_transactions(3000, seed=1, params={"r": 0.5, "alpha": 8.0, "a": 1e-3, "b": 50.0})
    warned = train(_synthetic_config(tmp_path, immortal), tracking_uri=uri)
    codes = {w.code for w in warned.evaluation.warnings}
    assert {"no_dropout.bgnbd_gg", "no_dropout.mbgnbd_gg"} <= codes
    run = mlflow.MlflowClient(uri).get_run(warned.run_id)
    assert "P(alive) is 1 for everyone" in run.data.tags["clvtier.warning.no_dropout.bgnbd_gg"]
    version = mlflow.MlflowClient(uri).get_model_version("prod", warned.version)
    assert "no_dropout.bgnbd_gg" in version.description
    normal = train(_synthetic_config(tmp_path, synthetic_transactions(3000, seed=1)), tracking_uri=uri)
    assert not [w for w in normal.evaluation.warnings if w.code.startswith("no_dropout")]


def test_growth_in_spend_warns_of_level_drift_and_scoring_repeats_it(tmp_path, new_store):
    uri = new_store(tmp_path)
    frame = synthetic_transactions(3000, seed=2)
    last = frame["date"].max()
    grown = frame.assign(
        amount=np.where(frame["date"] > last - pd.Timedelta(days=91), 2.5, 1.0) * frame["amount"]
    )
    warned = train(_synthetic_config(tmp_path, grown, models={"bgnbd_gg": {}}), tracking_uri=uri)
    drift = [w for w in warned.evaluation.warnings if w.code == "level_drift.daily_spend"]
    assert drift and "mean daily spend rose by" in drift[0].message
    path = tmp_path / "grown.csv"
    grown.to_csv(path, index=False)
    scored = score(
        str(warned.export_path),
        path,
        as_of=str(last.date()),
        output=tmp_path / "t.parquet",
        log_to_mlflow=False,
    )
    assert "MODEL WARNING (from training): level_drift.daily_spend" in scored.format()
    steady = train(_synthetic_config(tmp_path, frame, models={"bgnbd_gg": {}}), tracking_uri=uri)
    assert not [w for w in steady.evaluation.warnings if w.code.startswith("level_drift")]


def test_level_drift_of_totals_needs_two_origins_in_the_same_direction():
    daily = pd.DataFrame({"origin": ["a"], "before": [10.0], "after": [11.0]})
    over = pd.DataFrame({"origin": ["a", "b", "c"], "total_ratio": [1.3, 1.25, 0.9]})
    (warning,) = level_warnings(over, daily)
    assert warning.code == "level_drift.totals" and "above the actual at 2 origins (a, b)" in warning.message
    assert "falling" in warning.message
    mixed = pd.DataFrame({"origin": ["a", "b"], "total_ratio": [1.3, 0.7]})
    assert level_warnings(mixed, daily) == []


def test_equal_predictions_spend_correlation_and_calibration_checks():
    same = np.array([1.0, 2.0, 3.0])
    assert (
        equal_prediction_warnings({"bgnbd_gg": same, "pareto_nbd_gg": same.copy()})[0].code
        == "equal_predictions"
    )
    assert equal_prediction_warnings({"bgnbd_gg": same, "pareto_nbd_gg": same * 1.1}) == []
    rng = np.random.default_rng(0)
    f = rng.integers(1, 30, 2000).astype(float)
    independent = pd.DataFrame({"frequency": f, "monetary_value": rng.gamma(4, 10, 2000)})
    tied = independent.assign(
        monetary_value=independent["monetary_value"] * f / 5
    )  # spend grows with frequency
    assert spend_warnings(GammaGammaModel().fit(independent)) == []
    assert [w.code for w in spend_warnings(GammaGammaModel().fit(tied))] == ["spend_frequency_correlation"]
    assert calibration_warnings("hybrid", 0.08)[0].code == "churn_calibration"
    assert calibration_warnings("hybrid", 0.02) == []
