"""Hostile but realistic use (issue 15): nothing deleted that clvtier did not write, no input
overwritten by an output, no output replaced by a failing run."""

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from clvtier.cli import app
from clvtier.config import parse_config
from clvtier.data.datasets import load_cdnow
from clvtier.errors import InputError, TrackingError
from clvtier.pipelines import score as score_module
from clvtier.pipelines.score import score
from clvtier.pipelines.train import train

AS_OF = "1998-06-30"


def _config(folder, name="tiers"):
    return parse_config(
        {
            "experiment": "hostile",
            "data": {"dataset": "cdnow_sample"},
            "split": {"holdout_last": 13},
            "models": {"bgnbd_gg": {}},
            "tiering": {"clv_model": "bgnbd_gg"},
            "registry": {"name": name, "export_dir": str(folder / "models")},
        }
    )


@pytest.fixture(scope="module")
def exported(new_store, tmp_path_factory):
    folder = tmp_path_factory.mktemp("exported")
    result = train(_config(folder), tracking_uri=new_store(folder))
    tx = folder / "tx.csv"
    load_cdnow(sample=True).to_csv(tx, index=False)
    return result.export_path, tx, folder


def test_train_never_replaces_a_folder_it_did_not_write(tmp_path, new_store):
    mine = tmp_path / "models" / "tiers"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("my work")
    uri = new_store(tmp_path)
    with pytest.raises(InputError, match="is not a clvtier model export .* refusing to replace it"):
        train(_config(tmp_path), tracking_uri=uri)
    assert (mine / "notes.txt").read_text() == "my work" and [p.name for p in mine.iterdir()] == ["notes.txt"]
    import mlflow

    assert mlflow.MlflowClient(uri).search_experiments(filter_string="name = 'hostile'") == []  # no work done
    empty = tmp_path / "models" / "empty"
    empty.mkdir()
    assert (
        train(_config(tmp_path, name="empty"), tracking_uri=uri).export_path == empty
    )  # an empty folder is fine


@pytest.mark.parametrize("same", ["input", "rejects"])
def test_features_refuses_to_overwrite_its_input(tmp_path, same, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tx = tmp_path / "tx.csv"
    load_cdnow(sample=True).to_csv(tx, index=False)
    before = tx.read_bytes()
    args = ["features", "-i", "tx.csv", "--as-of", AS_OF, "-o", str(tx)]
    if same == "rejects":
        args = ["features", "-i", str(tx), "--as-of", AS_OF, "-o", "f.csv", "--rejects", "./tx.csv"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert (
        "is both the transactions and the" in result.output and len(result.output.strip().splitlines()) == 1
    )
    assert tx.read_bytes() == before


def test_score_refuses_overlapping_paths(exported, tmp_path):
    model, tx, _ = exported
    before = tx.read_bytes()
    with pytest.raises(InputError, match="is both the transactions and the output"):
        score(str(model), tx, as_of=AS_OF, output=tx, log_to_mlflow=False)
    previous = tmp_path / "prev.parquet"
    score(str(model), tx, as_of=AS_OF, output=previous, log_to_mlflow=False)
    kept = previous.read_bytes()
    with pytest.raises(InputError, match="is both the previous tiers and the output"):
        score(str(model), tx, as_of=AS_OF, output=previous, previous=previous, log_to_mlflow=False)
    assert tx.read_bytes() == before and previous.read_bytes() == kept


def test_a_failing_step_after_writing_leaves_the_earlier_output(exported, tmp_path, monkeypatch):
    model, tx, _ = exported
    output = tmp_path / "tiers.parquet"
    score(str(model), tx, as_of=AS_OF, output=output, log_to_mlflow=False)
    earlier = output.read_bytes()
    wrong = tmp_path / "wrong.csv"
    pd.DataFrame({"customer_id": ["1"], "segment": ["x"]}).to_csv(wrong, index=False)  # no tier column
    with pytest.raises(InputError, match="wrong.csv: not a scoring output"):
        score(str(model), tx, as_of="1998-03-31", output=output, previous=wrong, log_to_mlflow=False)
    assert output.read_bytes() == earlier

    def unreachable(*args, **kwargs):
        raise TrackingError("MLflow: cannot reach the tracking server")

    monkeypatch.setattr(score_module, "log_scoring", unreachable)
    with pytest.raises(TrackingError):
        score(str(model), tx, as_of="1998-03-31", output=output)
    assert output.read_bytes() == earlier
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiers.parquet", "wrong.csv"]  # no temp left


def test_score_cli_names_the_user_output_not_the_temp_file(exported, tmp_path):
    model, tx, _ = exported
    wrong = tmp_path / "wrong.csv"
    pd.DataFrame({"customer_id": ["1"]}).to_csv(wrong, index=False)
    result = CliRunner().invoke(
        app,
        [
            "score",
            "-m",
            str(model),
            "-i",
            str(tx),
            "--as-of",
            AS_OF,
            "-o",
            str(tmp_path / "t.csv"),
            "--previous",
            str(wrong),
            "--tracking-uri",
            f"sqlite:///{tmp_path}/m.db",
        ],
    )
    assert result.exit_code == 2 and ".tmp" not in result.output
    assert not Path(tmp_path / "t.csv").exists()
