"""Batch scoring with a registered model: output schema, chunking, atomicity (killed mid-way),
idempotence, migration and drift, pseudonymised ids, MLflow logging without customer rows."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from clvtier.cli import app
from clvtier.config import parse_config
from clvtier.data import load_transactions
from clvtier.data.datasets import load_cdnow
from clvtier.data.privacy import SALT_ENV, pseudonymize
from clvtier.errors import InputError
from clvtier.features import customer_features
from clvtier.pipelines.score import SCORE_COLUMNS, score
from clvtier.pipelines.train import train
from clvtier.tiering.monitor import drift_warnings, migration_matrix
from clvtier.tracking.models import load_model

AS_OF = "1998-06-30"
SALT = "a-test-salt-of-24-chars!"


@pytest.fixture(scope="module")
def model(new_store, tmp_path_factory):
    """A small hybrid tiering model on the CDNOW sample, registered and exported."""
    folder = tmp_path_factory.mktemp("model")
    uri = new_store(folder)
    xgb = {"n_estimators": 40, "learning_rate": 0.1, "min_child_weight": 10}
    config = parse_config(
        {
            "experiment": "score-test",
            "data": {"dataset": "cdnow_sample"},
            "split": {"train_cutoff": "1997-07-01", "test_cutoff": "1997-12-30", "horizon": 26},
            "models": {"bgnbd_gg": {}, "hybrid": xgb},
            "registry": {"name": "tiers", "export_dir": str(folder / "models")},
        }
    )
    result = train(config, tracking_uri=uri)
    return result.export_path, uri


@pytest.fixture(scope="module")
def transactions(tmp_path_factory):
    path = tmp_path_factory.mktemp("tx") / "cdnow_sample.csv"
    load_cdnow(sample=True).to_csv(path, index=False)
    return path


@pytest.fixture
def store(model, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", model[1])
    return model[1]


def _score(model, source, output, **kwargs):
    kwargs.setdefault("as_of", AS_OF)
    kwargs.setdefault("log_to_mlflow", False)
    return score(str(model[0]), source, output=output, **kwargs)


def test_scores_every_customer_once_with_the_documented_columns(model, transactions, tmp_path):
    result = _score(model, transactions, tmp_path / "tiers.parquet")
    out = pd.read_parquet(tmp_path / "tiers.parquet")
    assert tuple(out.columns) == SCORE_COLUMNS
    assert len(out) == result.customers == 2357 and out["customer_id"].is_unique
    assert out["customer_id"].tolist() == sorted(out["customer_id"])  # text ids from CSV, in text order
    assert out["tier"].isin(["premium", "develop", "potential", "marginal"]).all()
    assert out.notna().all().all()
    assert (out["model_name"] == "tiers").all() and (out["model_version"] == "1").all()
    assert (out["policy"] == "corporate4@v1").all()
    assert (out["as_of"] == pd.Timestamp(AS_OF)).all()
    assert out["churn_probability"].between(0, 1).all() and (out["predicted_clv"] >= 0).all()
    acc = result.accounting
    assert acc.rows_read == acc.rows_used + acc.rows_after_as_of + acc.rows_quarantined == 6919
    assert result.tiers["customers"].sum() == 2357
    assert result.tiers["share_predicted_value"].sum() == pytest.approx(1)
    counts = out["tier"].value_counts()
    assert (result.tiers.set_index("tier")["customers"] == counts.reindex(result.tiers["tier"])).all()
    text = result.format()
    assert "premium" in text and "share_predicted_value" in text and "rows read" in text


def test_chunks_give_the_same_table_as_one_pass(model, transactions, tmp_path):
    _score(model, transactions, tmp_path / "one.parquet", chunk_size=100_000)
    _score(model, transactions, tmp_path / "many.parquet", chunk_size=97)
    one, many = pd.read_parquet(tmp_path / "one.parquet"), pd.read_parquet(tmp_path / "many.parquet")
    pd.testing.assert_frame_equal(one, many)
    # and the model scored in memory on the whole table agrees (RFM scores are population-wide)
    frame = pd.read_csv(transactions, dtype={"customer_id": str})  # text ids, as the CSV scan reads them
    whole = load_model(str(model[0])).model.predict(frame, AS_OF)
    pd.testing.assert_frame_equal(many[whole.columns.tolist()], whole, check_dtype=False)


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_same_inputs_write_an_identical_file(model, transactions, tmp_path, suffix):
    first, second = tmp_path / f"a.{suffix}", tmp_path / f"b.{suffix}"
    _score(model, transactions, first, chunk_size=500)
    _score(model, transactions, second, chunk_size=500)
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, second.name])


def test_rows_after_as_of_and_quarantined_rows_are_accounted(model, tmp_path):
    tx = load_cdnow(sample=True)
    tx["amount"] = tx["amount"].astype(object)
    tx.loc[[0, 5], "amount"] = "n/a"
    result = _score(model, tx, tmp_path / "t.parquet", as_of="1998-01-31")
    acc = result.accounting
    assert acc.quarantined == {"bad_amount": 2} and acc.rows_after_as_of > 0
    assert acc.rows_read == len(tx) == acc.rows_used + acc.rows_after_as_of + acc.rows_quarantined


def test_policy_comes_from_the_model_and_can_be_replaced(model, transactions, tmp_path):
    result = _score(model, transactions, tmp_path / "abc.csv", policy="abc4_clv")
    out = pd.read_csv(tmp_path / "abc.csv", dtype={"customer_id": str})
    assert result.policy.name == "abc4_clv" and set(out["tier"]) == {"top", "key", "regular", "small"}
    shares = result.tiers.set_index("tier")["share_customers"]
    # equal predicted CLVs share a tier, so shares hold within the largest tie, not exactly
    assert shares["top"] == pytest.approx(0.05, abs=0.01) and shares["small"] == pytest.approx(0.5, abs=0.05)


def test_bad_inputs_are_clear_errors(model, transactions, tmp_path):
    with pytest.raises(InputError, match="not an exported tiering model"):
        score(str(tmp_path), transactions, as_of=AS_OF, output=tmp_path / "t.parquet", log_to_mlflow=False)
    with pytest.raises(InputError, match="output must end in .csv or .parquet"):
        _score(model, transactions, tmp_path / "t.xlsx")
    with pytest.raises(InputError, match="no valid transactions on or before as_of 1990-01-01"):
        _score(model, transactions, tmp_path / "t.parquet", as_of="1990-01-01")
    assert not (tmp_path / "t.parquet").exists()


def test_migration_matrix_and_drift_warning_table():
    before = pd.DataFrame({"customer_id": list("abcdefgh"), "tier": ["p", "p", "p", "p", "d", "d", "m", "m"]})
    now = pd.DataFrame({"customer_id": list("abcdefgi"), "tier": ["p", "p", "d", "d", "d", "d", "m", "p"]})
    matrix = migration_matrix(before, now, ["p", "d", "m"])
    assert matrix.loc["p"].tolist() == [2, 2, 0, 0]
    assert matrix.loc["d"].tolist() == [0, 2, 0, 0]
    assert matrix.loc["m"].tolist() == [0, 0, 1, 1]  # h is gone
    assert matrix.loc["new"].tolist() == [1, 0, 0, 0]  # i is new
    assert matrix.to_numpy().sum() == 9
    warnings = drift_warnings(matrix, ["p", "d", "m"], 0.2)
    assert [w.split("'")[1] for w in warnings] == ["p", "d", "m"]
    assert "-25.0% (4 -> 3 customers)" in warnings[0]
    assert drift_warnings(matrix, ["p", "d", "m"], 1.0) == []


def test_previous_output_gives_migration_and_drift_warning(model, transactions, tmp_path):
    first = tmp_path / "before.parquet"
    _score(model, transactions, first)
    same = _score(model, transactions, tmp_path / "same.parquet", previous=first)
    diagonal = np.diag(
        same.migration.matrix.loc[
            ["premium", "develop", "potential", "marginal"], ["premium", "develop", "potential", "marginal"]
        ]
    )
    assert diagonal.sum() == 2357 and same.warnings == []
    # an earlier file in which a third of the premium customers were in develop
    edited = pd.read_parquet(first)
    premium = edited.index[edited["tier"] == "premium"]
    edited.loc[premium[: len(premium) // 3], "tier"] = "develop"
    edited.to_csv(tmp_path / "edited.csv", index=False)
    moved = _score(model, transactions, tmp_path / "now.parquet", previous=tmp_path / "edited.csv")
    assert moved.migration.matrix.loc["develop", "premium"] == len(premium) // 3
    assert len(moved.warnings) == 1 and "tier 'premium' changed size by +" in moved.warnings[0]
    assert "more than the 20% allowed" in moved.warnings[0]
    quiet = _score(
        model, transactions, tmp_path / "now2.parquet", previous=tmp_path / "edited.csv", drift_threshold=0.6
    )
    assert quiet.warnings == []


def test_pseudonymised_ids_are_salted_hashes(model, transactions, tmp_path, monkeypatch):
    monkeypatch.delenv(SALT_ENV, raising=False)
    with pytest.raises(InputError, match=SALT_ENV):
        _score(model, transactions, tmp_path / "p.parquet", pseudonymize_ids=True)
    monkeypatch.setenv(SALT_ENV, SALT)
    _score(model, transactions, tmp_path / "p1.parquet", pseudonymize_ids=True)
    _score(model, transactions, tmp_path / "p2.parquet", pseudonymize_ids=True)
    monkeypatch.setenv(SALT_ENV, SALT[::-1])
    _score(model, transactions, tmp_path / "p3.parquet", pseudonymize_ids=True)
    _score(model, transactions, tmp_path / "plain.parquet")
    p1, p3, plain = (pd.read_parquet(tmp_path / f"{n}.parquet") for n in ("p1", "p3", "plain"))
    assert (tmp_path / "p1.parquet").read_bytes() == (tmp_path / "p2.parquet").read_bytes()
    assert p1["customer_id"].str.fullmatch("[0-9a-f]{20}").all() and p1["customer_id"].is_unique
    assert not set(p1["customer_id"]) & set(plain["customer_id"])
    assert not set(p1["customer_id"]) & set(p3["customer_id"])
    # the same rows, ordered by pseudonym (so the order says nothing about the raw ids)
    plain["customer_id"] = pseudonymize(plain["customer_id"], SALT)
    plain = plain.sort_values("customer_id", ignore_index=True)
    pd.testing.assert_frame_equal(p1, plain)


def test_run_is_logged_to_the_scoring_experiment_without_customer_rows(model, store, transactions, tmp_path):
    result = score("models:/tiers@champion", transactions, as_of=AS_OF, output=tmp_path / "t.parquet")
    assert result.model.version == "1" and result.tracking_uri == store
    client = mlflow.MlflowClient(store)
    run = client.get_run(result.run_id)
    assert client.get_experiment(run.info.experiment_id).name == "scoring"
    params, metrics = run.data.params, run.data.metrics
    assert params["model.name"] == "tiers" and params["model.version"] == "1"
    assert params["policy"] == "corporate4@v1" and params["as_of"] == AS_OF
    assert metrics["rows.rows_read"] == 6919 and metrics["customers"] == 2357
    assert metrics["tier.premium.customers"] == result.tiers.set_index("tier").loc["premium", "customers"]
    assert 0 < metrics["tier.premium.share_predicted_value"] < 1
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert artifacts == {"tier_table.csv", "policy.yaml", "policy_cutoffs.json", "row_accounting.json"}
    assert not run.inputs.dataset_inputs
    for name in artifacts:  # aggregates only: no id column, nothing the size of a customer table
        text = open(mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path=name)).read()
        assert "customer_id" not in text and len(text) < 5_000, name
    table = mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path="tier_table.csv")
    assert len(pd.read_csv(table)) == 4
    # loading from the registry downloads to a temporary folder, never into the artifact store
    artifact_store = Path(store.removeprefix("sqlite:///")).parent / "mlartifacts"
    assert artifact_store.is_dir() and not list(artifact_store.rglob("registered_model_meta"))


def test_model_refuses_features_in_another_time_unit(model, transactions):
    """A feature table in days scored by a model in weeks would read recency and T 7x too long."""
    loaded = load_model(str(model[0]))
    assert loaded.model.time_unit == "weeks"
    tx = load_transactions(transactions)
    days = customer_features(tx, as_of=AS_OF, time_unit="days")
    with pytest.raises(InputError, match="recency and T are in 'days' but the model's are in 'weeks'"):
        loaded.model.predict(days)
    weeks = customer_features(tx, as_of=AS_OF, time_unit="weeks")
    assert len(loaded.model.predict(weeks)) == 2357
    pyfunc = mlflow.pyfunc.load_model(str(model[0]))
    bare = pd.DataFrame(weeks)  # a plain frame: its attrs (as_of, time_unit) are gone
    bare.attrs = {}
    with pytest.raises(InputError, match="needs its time unit"):
        pyfunc.predict(bare, params={"as_of": AS_OF})
    with pytest.raises(InputError, match="in 'days'"):
        pyfunc.predict(bare, params={"as_of": AS_OF, "time_unit": "days"})
    pd.testing.assert_frame_equal(
        pyfunc.predict(bare, params={"as_of": AS_OF, "time_unit": "weeks"}), loaded.model.predict(weeks)
    )


def test_previous_file_of_another_policy_is_refused_unless_allowed(model, transactions, tmp_path):
    first = tmp_path / "corporate.parquet"
    _score(model, transactions, first)
    output = tmp_path / "abc.parquet"
    with pytest.raises(InputError, match="scored with policy 'corporate4@v1', not 'abc4_clv@v1'"):
        _score(model, transactions, output, policy="abc4_clv", previous=first)
    assert not output.exists()  # refused before any work
    changed = _score(model, transactions, output, policy="abc4_clv", previous=first, allow_policy_change=True)
    assert changed.migration.policy_change and changed.warnings == []
    assert "policy change: migration" in changed.format()
    assert changed.migration.matrix.to_numpy().sum() == 2357


def test_cli_scores_and_prints_the_tier_table(model, store, transactions, tmp_path):
    out = tmp_path / "tiers.csv"
    result = CliRunner().invoke(
        app,
        [
            "score",
            "--model",
            str(model[0]),
            "--input",
            str(transactions),
            "--as-of",
            AS_OF,
            "--output",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "share_predicted_value" in result.output and "marginal" in result.output
    assert "scored 2,357 customers with tiers v1" in result.output
    assert len(pd.read_csv(out)) == 2357


@pytest.mark.parametrize(
    "args, message",
    [
        (["--as-of", "soon"], "--as-of: expected a date like 1997-12-31, got 'soon'"),
        (["--as-of", AS_OF, "--policy", "nope.yaml"], "nope.yaml: no such policy file"),
        (["--as-of", AS_OF, "--pseudonymize-ids"], f"{SALT_ENV}: pseudonymised ids need a secret salt"),
        (["--as-of", AS_OF, "--memory-limit", "lots"], "--memory-limit: expected a size like 4GB"),
        (["--as-of", AS_OF, "--previous", "missing.parquet"], "missing.parquet: file not found"),
        (["--as-of", AS_OF, "--drift-threshold", "0"], "--drift-threshold: must be a positive share"),
    ],
)
def test_cli_errors_are_one_line_exit_2(model, store, transactions, tmp_path, monkeypatch, args, message):
    monkeypatch.delenv(SALT_ENV, raising=False)
    result = CliRunner().invoke(
        app, ["score", "-m", str(model[0]), "-i", str(transactions), "-o", str(tmp_path / "t.parquet"), *args]
    )
    assert result.exit_code == 2
    assert result.output.strip() == f"clvtier: error: {message}" or message in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_job_leaves_no_partial_file(model, tmp_path, sig):
    """Kill the job while it writes; the old output must survive untouched, no new one appear."""
    big = tmp_path / "cdnow.parquet"
    load_cdnow().to_parquet(big)
    out = tmp_path / "tiers.parquet"
    out.write_bytes(b"the previous complete output")
    env = {**os.environ, "MLFLOW_TRACKING_URI": model[1]}
    cmd = [
        sys.executable,
        "-m",
        "clvtier",
        "score",
        "-m",
        str(model[0]),
        "-i",
        str(big),
        "--as-of",
        AS_OF,
        "-o",
        str(out),
        "--chunk-size",
        "200",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        temps = [p for p in tmp_path.iterdir() if p.name.startswith(".tiers.parquet.") and p.is_file()]
        if temps and temps[0].stat().st_size > 0:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the job ended before it could be killed; make it longer"
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert out.read_bytes() == b"the previous complete output"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".tiers.parquet.")]
    if sig == signal.SIGTERM:  # a terminated job cleans up after itself
        assert proc.returncode == 128 + signal.SIGTERM and leftovers == []
        assert proc.stderr.read().decode().strip().splitlines()[-1] == "clvtier: stopped by signal 15"
    # SIGKILL cannot be caught: only the hidden temporary file may remain, never the output


def test_the_registered_pyfunc_takes_ordinary_data_without_casts(model):
    """Integer ids, quantities and amounts, text or timestamp dates: as load_cdnow() returns them."""
    pyfunc = mlflow.pyfunc.load_model(str(model[0]))
    tx = load_cdnow(sample=True)  # customer_id int64, quantity int64, date datetime64
    out = pyfunc.predict(tx, params={"as_of": AS_OF})
    assert len(out) == 2357
    text = tx.assign(customer_id=tx["customer_id"].astype(str), date=tx["date"].dt.strftime("%Y-%m-%d"),
                     amount=tx["amount"].round().astype("int64"))
    assert len(pyfunc.predict(text, params={"as_of": AS_OF})) == 2357


def test_chinese_output_has_every_text_column_in_chinese_and_codes_unchanged(model, transactions, tmp_path):
    en = pd.read_parquet(_score(model, transactions, tmp_path / "en.parquet").output)
    zh = pd.read_parquet(_score(model, transactions, tmp_path / "zh.parquet", lang="zh").output)
    pd.testing.assert_series_equal(zh["tier"], en["tier"])
    pd.testing.assert_series_equal(zh["rfm_segment"], en["rfm_segment"])  # codes stay
    cjk = r"[\u4e00-\u9fff]"
    for column in ("tier_reason", "action", "rfm_segment_label"):
        assert zh[column].str.contains(cjk).all(), column
        assert not en[column].str.contains(cjk).any(), column
    assert zh["tier_reason"].str.startswith("得分").all()
    assert not zh["tier_reason"].str.contains("score|cut-off|at risk|quantile").any()
    assert set(en.loc[en["rfm_segment"] == "champions", "rfm_segment_label"]) == {"Champions"}


def test_chunks_computed_on_threads_come_back_in_order_and_errors_reach_the_consumer():
    import random
    import time

    from clvtier.pipelines.score import _in_order

    def slow_square(x):
        time.sleep(random.random() / 500)  # threads finish out of order
        return x * x

    assert list(_in_order(slow_square, iter(range(200)))) == [x * x for x in range(200)]

    def fails_on_3(x):
        if x == 3:
            raise ValueError("bad chunk")
        return x

    got = []
    with pytest.raises(ValueError, match="bad chunk"):
        for item in _in_order(fails_on_3, iter(range(10))):
            got.append(item)
    assert got == [0, 1, 2]

    def failing_source():
        yield 1
        raise ValueError("bad source")

    with pytest.raises(ValueError, match="bad source"):
        list(_in_order(slow_square, failing_source()))
    stream = _in_order(slow_square, iter(range(10**6)))  # a consumer that stops early does not hang
    assert next(stream) == 0
    stream.close()


def test_background_appender_writes_tables_in_order_and_raises_writer_errors(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from clvtier.pipelines.score import _BackgroundWriter

    with _BackgroundWriter(tmp_path / "a.parquet") as out:
        for i in range(5):
            out.write(pa.table({"x": list(range(i * 3, i * 3 + 3))}))
    assert pq.read_table(tmp_path / "a.parquet")["x"].to_pylist() == list(range(15))
    with pytest.raises((pa.ArrowInvalid, ValueError)):
        with _BackgroundWriter(tmp_path / "b.parquet") as out:
            out.write(pa.table({"x": [1]}))
            out.write(pa.table({"y": ["other schema"]}))
            out.write(pa.table({"x": [2]}))
