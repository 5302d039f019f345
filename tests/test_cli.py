import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from clvtier.cli import app

runner = CliRunner()


def _csv(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_text("客户ID;交易日期;交易金额\nA;2021-01-01;10,5\nA;2021-02-01;4,5\n"
                    "B;2021-01-15;abc\nB;2021-03-01;7\nC;2021-09-01;1\n", encoding="utf-8")
    return path


def test_features_command(tmp_path):
    out = tmp_path / "f.parquet"
    result = runner.invoke(app, ["features", "--input", str(_csv(tmp_path)), "--as-of",
                                 "2021-06-30", "--output", str(out), "--columns",
                                 "customer_id=客户ID,date=交易日期,amount=交易金额",
                                 "--time-unit", "weeks"])
    assert result.exit_code == 0, result.output
    feats = pd.read_parquet(out)
    assert feats["customer_id"].tolist() == ["A", "B"]
    assert feats["monetary_total"].tolist() == [15.0, 7.0]
    assert feats.loc[0, "recency"] == pytest.approx(31 / 7)
    for text in ("rows read", "5", "after as_of", "bad_amount", "rejects"):
        assert text in result.output
    rejects = pd.read_csv(tmp_path / "f.parquet.rejects.csv")
    assert rejects[["source_line", "reason"]].values.tolist() == [[4, "bad_amount"]]
    assert rejects.loc[0, "amount"] == "abc"


def test_features_rejects_path_and_csv_output(tmp_path):
    result = runner.invoke(app, ["features", "-i", str(_csv(tmp_path)), "--as-of", "2021-12-31",
                                 "-o", str(tmp_path / "f.csv"), "--rejects",
                                 str(tmp_path / "bad.parquet"), "--columns",
                                 "customer_id=客户ID,date=交易日期,amount=交易金额"])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "f.csv")) == 3
    assert len(pd.read_parquet(tmp_path / "bad.parquet")) == 1


@pytest.mark.parametrize("args, message", [
    (["--as-of", "2021-06-30", "-o", "f.csv"], "required column 'customer_id' is missing; "
                                                "columns found: '客户ID', '交易日期', '交易金额'"),
    (["--as-of", "someday", "-o", "f.csv"], "--as-of: expected a date like 1997-12-31"),
    (["--as-of", "2021-06-30", "-o", "f.json"], "output must end in .csv or .parquet"),
    (["--as-of", "2021-06-30", "-o", "f.csv", "--time-unit", "months"],
     "valid options are 'days', 'weeks'; got 'months'"),
])
def test_features_errors_are_one_line_exit_2(tmp_path, args, message):
    result = runner.invoke(app, ["features", "-i", str(_csv(tmp_path)), *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_synth_command(tmp_path):
    out = tmp_path / "s.parquet"
    result = runner.invoke(app, ["synth", "--customers", "500", "--seed", "3", "--output",
                                 str(out), "--with-profit"])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert frame["customer_id"].nunique() == 500 and "profit" in frame


def test_help_explains_every_option():
    for command in ([], ["features"], ["synth"], ["demo"]):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0
    text = runner.invoke(app, ["features", "--help"]).output
    for option in ("--input", "--as-of", "--output", "--columns", "--time-unit", "--rejects",
                   "--delimiter", "--decimal", "--encoding", "--sheet", "--date-format",
                   "--returns", "--drop-duplicates", "--max-amount"):
        assert option in text


def test_real_subprocess_error_has_no_traceback(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    proc = subprocess.run([sys.executable, "-m", "clvtier", "features", "-i", str(empty),
                           "--as-of", "2021-01-01", "-o", str(tmp_path / "f.csv")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"clvtier: error: {empty}: file is empty"
    assert not (tmp_path / "f.csv").exists()


def test_demo_command_on_the_sample(tmp_path, tracking_uri):
    """The fast equivalent of the full demo below: the same job on the 2,357-customer sample."""
    config = tmp_path / "sample.yaml"
    config.write_text(
        "experiment: sample\n"
        "data: {dataset: cdnow_sample}\n"
        "split: {train_cutoff: 1997-07-01, test_cutoff: 1997-12-30, horizon: 26}\n"
        "models: {bgnbd_gg: {}, hybrid: {n_estimators: 40, learning_rate: 0.1, min_child_weight: 10}}\n"
        f"registry: {{name: sample, export_dir: {tmp_path / 'models'}}}\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["demo", "--output-dir", str(tmp_path), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "SAMPLE demo: customer features as of 1998-06-30" in result.output and "6,919" in result.output
    assert len(pd.read_parquet(tmp_path / "sample_features.parquet")) == 2357
    assert pd.read_csv(tmp_path / "sample_model_metrics.csv")["model"].tolist()[-1] == "hybrid"
    assert "registered sample v1 as @champion" in result.output
    tiers = pd.read_parquet(tmp_path / "sample_tiers.parquet")
    assert len(tiers) == 2357 and set(tiers["tier"]) == {"premium", "develop", "potential", "marginal"}
    assert "Tiers as of 1998-06-30, compared with 1998-03-31" in result.output
    assert "migration (rows: previous tier" in result.output
    # the champion that scores 1998-06-30 was refitted on data up to 1998-06-30
    window = json.loads((tmp_path / "models" / "sample" / "registered.json").read_text())["data_window"]
    assert window["btyd_history_to"] == "1998-06-30" and window["ml_targets_to"] == "1998-06-30"


@pytest.mark.slow
def test_demo_command(tmp_path, tracking_uri):
    config = Path(__file__).parents[1] / "experiments" / "cdnow.yaml"
    result = runner.invoke(app, ["demo", "--output-dir", str(tmp_path), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "23,570" in result.output and "69,659" in result.output
    assert len(pd.read_parquet(tmp_path / "cdnow_features.parquet")) == 23_570
    metrics = pd.read_csv(tmp_path / "cdnow_model_metrics.csv")
    assert metrics["model"].tolist()[-1] == "hybrid"
    assert "registered clvtier-cdnow v1 as @champion" in result.output
    assert f"mlflow ui --backend-store-uri {tracking_uri}" in result.output
    assert (tmp_path / "models" / "clvtier-cdnow" / "MLmodel").exists()
    assert "verdict: tiering is worth it" in result.output and "Champions" in result.output
    segments = pd.read_csv(tmp_path / "cdnow_segments_rfm10.csv")
    assert len(segments) == 23_570 and segments["strategy"].notna().all()
    tiers = pd.read_parquet(tmp_path / "cdnow_tiers.parquet")
    assert len(tiers) == 23_570 and set(tiers["tier"]) == {"premium", "develop", "potential", "marginal"}
    assert "Tiers as of 1998-06-30, compared with 1998-03-31" in result.output
    assert "share_predicted_value" in result.output and "migration (rows: previous tier" in result.output
    exported = tmp_path / "models" / "clvtier-cdnow" / "registered.json"
    window = json.loads(exported.read_text())["data_window"]
    assert window == {"btyd_history_to": "1998-06-30", "ml_features_as_of": "1997-12-30",
                      "ml_targets_to": "1998-06-30", "refit": True}
    assert "Rolling backtest over 2 origins" in result.output
