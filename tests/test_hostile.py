"""Hostile but realistic use (issue 15): nothing deleted that clvtier did not write, no input
overwritten by an output, no output replaced by a failing run."""

import json
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
def hybrid(new_store, tmp_path_factory):
    """An exported hybrid model: BTYD parameters, XGBoost boosters and calibrators."""
    folder = tmp_path_factory.mktemp("hybrid")
    config = parse_config(
        {
            "experiment": "hostile-hybrid",
            "data": {"dataset": "cdnow_sample"},
            "split": {"holdout_last": 13},
            "models": {"bgnbd_gg": {}, "hybrid": {"n_estimators": 20}},
            "registry": {"name": "hybrid", "export_dir": str(folder / "models")},
        }
    )
    tx = folder / "tx.csv"
    load_cdnow(sample=True).to_csv(tx, index=False)
    return train(config, tracking_uri=new_store(folder)).export_path, tx


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


# --- tier edge cases ---------------------------------------------------------------------------


def _population(n, spend=None, rng_seed=0):
    import numpy as np

    rng = np.random.default_rng(rng_seed)
    return pd.DataFrame(
        {
            "predicted_clv": rng.gamma(2, 20, n),
            "monetary_total": rng.gamma(2, 50, n) if spend is None else spend,
            "churn_probability": rng.uniform(0, 1, n),
        }
    )


def test_a_lone_customer_and_all_equal_customers_are_in_the_top_tier():
    from clvtier.tiering.policy import load_policy

    policy = load_policy("corporate4")
    one = _population(1)
    assert policy.fit(one).assign(one)["tier"].tolist() == ["premium"]
    same = pd.DataFrame(
        {"predicted_clv": [5.0] * 500, "monetary_total": [9.0] * 500, "churn_probability": 0.2}
    )
    assert set(policy.fit(same).assign(same)["tier"]) == {"premium"}


def test_a_quantile_condition_on_a_degenerate_column_warns_and_never_fires():
    import numpy as np

    from clvtier.tiering.policy import load_policy

    policy = load_policy("corporate4")
    spend = np.where(np.arange(1000) < 900, 0.0, 50.0)  # 90% spent nothing: the 75% quantile is 0
    nobody = _population(1000, spend=spend)
    fitted = policy.fit(nobody)
    assert not fitted.assign(nobody)["at_risk"].any()
    assert fitted.warnings and "cannot separate customers" in fitted.warnings[0]
    normal = _population(1000)
    fitted = policy.fit(normal)
    assert fitted.assign(normal)["at_risk"].any() and fitted.warnings == []


def test_mixing_pseudonymised_and_raw_runs_warns(exported, tmp_path, monkeypatch):
    from clvtier.data.privacy import SALT_ENV

    model, tx, _ = exported
    monkeypatch.setenv(SALT_ENV, "a-test-salt-of-24-chars!")
    hashed = tmp_path / "hashed.parquet"
    score(str(model), tx, as_of=AS_OF, output=hashed, pseudonymize_ids=True, log_to_mlflow=False)
    raw = score(
        str(model), tx, as_of=AS_OF, output=tmp_path / "raw.parquet", previous=hashed, log_to_mlflow=False
    )
    assert any("holds pseudonymised customer ids and this run writes raw ones" in w for w in raw.warnings)
    both = score(
        str(model),
        tx,
        as_of=AS_OF,
        output=tmp_path / "h2.parquet",
        previous=hashed,
        pseudonymize_ids=True,
        log_to_mlflow=False,
    )
    assert not any("pseudonymised customer ids" in w for w in both.warnings)


# --- outputs that are safe to open -------------------------------------------------------------


def test_csv_outputs_defuse_formulas_unless_asked_and_parquet_keeps_raw_values(exported, tmp_path):
    model, _, _ = exported
    frame = load_cdnow(sample=True)
    frame["customer_id"] = frame["customer_id"].astype(str)
    frame.loc[frame["customer_id"] == frame["customer_id"].iloc[5], "customer_id"] = '=HYPERLINK("http://x")'
    frame.loc[0, "date"] = None  # one reject, whose id cell also starts with '='
    frame.loc[0, "customer_id"] = "@SUM(A1)"
    tx = tmp_path / "tx.csv"
    frame.to_csv(tx, index=False)
    result = CliRunner().invoke(
        app, ["features", "-i", str(tx), "--as-of", AS_OF, "-o", str(tmp_path / "f.csv")]
    )
    assert result.exit_code == 0, result.output
    ids = pd.read_csv(tmp_path / "f.csv", dtype=str)["customer_id"]
    assert '\'=HYPERLINK("http://x")' in set(ids) and not ids.str.startswith("=").any()
    rejects = pd.read_csv(tmp_path / "f.csv.rejects.csv", dtype=str)
    assert rejects["customer_id"].tolist() == ["'@SUM(A1)"]
    scored = tmp_path / "t.csv"
    score(str(model), tx, as_of=AS_OF, output=scored, log_to_mlflow=False)
    assert '\'=HYPERLINK("http://x")' in set(pd.read_csv(scored, dtype=str)["customer_id"])
    raw = tmp_path / "raw.csv"
    score(str(model), tx, as_of=AS_OF, output=raw, log_to_mlflow=False, escape_formulas=False)
    assert '=HYPERLINK("http://x")' in set(pd.read_csv(raw, dtype=str)["customer_id"])
    parquet = tmp_path / "t.parquet"
    score(str(model), tx, as_of=AS_OF, output=parquet, log_to_mlflow=False)
    assert '=HYPERLINK("http://x")' in set(pd.read_parquet(parquet)["customer_id"])


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_follow_the_umask(tmp_path, umask, mode):
    import os

    from clvtier.data import write_frame

    previous = os.umask(umask)
    try:
        path = write_frame(pd.DataFrame({"a": [1]}), tmp_path / "a.csv")
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == mode


# --- MLflow that cannot be used ----------------------------------------------------------------


@pytest.mark.parametrize(
    "uri, message",
    [
        ("sqlite:////nonexistent/dir/x.db", "the folder /nonexistent/dir does not exist"),
        ("http://127.0.0.1:9/", "the tracking server does not answer"),
    ],
)
def test_an_unusable_tracking_store_stops_before_any_work(exported, tmp_path, uri, message):
    import time

    model, tx, _ = exported
    args = ("score", "-m", model, "-i", tx, "--as-of", AS_OF, "-o", tmp_path / "t.csv", "--tracking-uri", uri)
    start = time.perf_counter()
    code, out = _cli(*args)
    assert code == 2 and message in out and len(out.splitlines()) == 1
    assert time.perf_counter() - start < 15 and not (tmp_path / "t.csv").exists()
    assert not Path("/nonexistent").exists()
    code, out = _cli(*args, "--no-tracking")
    assert code == 0, out
    assert (tmp_path / "t.csv").exists()


def test_concurrent_runs_on_a_new_sqlite_store(tmp_path):
    import subprocess
    import sys

    code = (
        "import mlflow, sys\n"
        "from clvtier.tracking import use_tracking_uri\n"
        "use_tracking_uri(sys.argv[1])\n"
        "with mlflow.start_run(): mlflow.log_metric('x', 1)\n"
    )
    uri = f"sqlite:///{tmp_path / 'new.db'}"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, uri], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors


# --- scratch files and pseudonyms ----------------------------------------------------------------


def test_pseudonymised_output_is_ordered_by_pseudonym(exported, tmp_path, monkeypatch):
    from clvtier.data.privacy import SALT_ENV

    model, tx, _ = exported
    monkeypatch.setenv(SALT_ENV, "a-test-salt-of-24-chars!")
    out = tmp_path / "p.parquet"
    score(str(model), tx, as_of=AS_OF, output=out, pseudonymize_ids=True, log_to_mlflow=False, chunk_size=500)
    ids = pd.read_parquet(out)["customer_id"].tolist()
    assert ids == sorted(ids) and len(set(ids)) == 2357  # nothing follows the raw ids' order


def test_scratch_lives_beside_the_output_and_stale_scratch_is_removed(exported, tmp_path):
    model, tx, _ = exported
    out = tmp_path / "t.parquet"
    dead = tmp_path / ".t.parquet.scratch-999999999"  # a killed run's leftovers (no such process)
    dead.mkdir()
    (dead / "scratch.duckdb").write_text("raw ids")
    alive = tmp_path / ".t.parquet.scratch-1"  # a run still going (pid 1 exists): left alone
    alive.mkdir()
    score(str(model), tx, as_of=AS_OF, output=out, log_to_mlflow=False)
    assert not dead.exists() and alive.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".t.parquet.scratch-1", "t.parquet"]


# --- inputs that used to end in a traceback --------------------------------------------------------


def _cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output.strip()


def test_empty_sheet_and_wrong_encoding_are_one_line_errors(tmp_path):
    frame = load_cdnow(sample=True).head(20)
    book = tmp_path / "book.xlsx"
    with pd.ExcelWriter(book) as writer:
        frame.to_excel(writer, sheet_name="data", index=False)
        pd.DataFrame().to_excel(writer, sheet_name="empty", index=False)
    code, out = _cli("features", "-i", book, "--sheet", "empty", "--as-of", AS_OF, "-o", tmp_path / "f.csv")
    assert code == 2 and out == f"clvtier: error: {book}: sheet 'empty' is empty"
    utf8 = tmp_path / "tx.csv"
    frame.to_csv(utf8, index=False)
    code, out = _cli(
        "features", "-i", utf8, "--encoding", "utf-16", "--as-of", AS_OF, "-o", tmp_path / "f.csv"
    )
    assert code == 2 and out.startswith(f"clvtier: error: {utf8}: cannot be decoded as utf-16")
    assert len(out.splitlines()) == 1 and not (tmp_path / "f.csv").exists()


def test_amounts_that_would_overflow_are_quarantined_and_the_rest_is_used(tmp_path):
    frame = load_cdnow(sample=True).head(200)
    frame["customer_id"] = frame["customer_id"].astype(str)
    frame.loc[:2, "customer_id"] = "huge"
    frame.loc[:2, "amount"] = 1e308  # three of them overflow a total
    path = tmp_path / "tx.csv"
    frame.to_csv(path, index=False)
    code, out = _cli("features", "-i", path, "--as-of", AS_OF, "-o", tmp_path / "f.csv")
    assert code == 0, out
    assert "amount_out_of_range" in out
    rejects = pd.read_csv(tmp_path / "f.csv.rejects.csv", dtype=str)
    assert rejects["reason"].tolist() == ["amount_out_of_range"] * 3
    assert "huge" not in set(pd.read_csv(tmp_path / "f.csv", dtype=str)["customer_id"])


def test_no_rejects_file_is_promised_when_none_is_written(tmp_path):
    path = tmp_path / "tx.csv"
    pd.DataFrame({"customer_id": ["a", "b"], "date": ["soon", "later"], "amount": [1, 2]}).to_csv(
        path, index=False
    )
    code, out = _cli("features", "-i", path, "--as-of", AS_OF, "-o", tmp_path / "f.csv")
    assert code == 2 and "rejects file" not in out and "most often bad_date: date is empty or cannot" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tx.csv"]


# --- results that do not depend on chance --------------------------------------------------------


def test_shuffled_input_rows_give_byte_identical_outputs(exported, tmp_path):
    """Money is summed exactly (decimals), so no output byte depends on the order of the rows."""
    import numpy as np

    model, _, _ = exported
    frame = load_cdnow()
    frame = frame[frame["customer_id"] <= frame["customer_id"].quantile(0.2)]  # about 4,700 customers
    rng = np.random.default_rng(0)
    outputs = []
    for i in range(7):
        path = tmp_path / f"tx{i}.csv"
        frame.iloc[rng.permutation(len(frame))].to_csv(path, index=False)
        out = tmp_path / f"t{i}.parquet"
        score(str(model), path, as_of=AS_OF, output=out, log_to_mlflow=False)
        outputs.append(out.read_bytes())
        code, text = _cli("features", "-i", path, "--as-of", AS_OF, "-o", tmp_path / f"f{i}.csv")
        assert code == 0, text
    assert all(o == outputs[0] for o in outputs)
    features = {(tmp_path / f"f{i}.csv").read_bytes() for i in range(7)}
    assert len(features) == 1


# --- parsing that does not depend on where a row is ---------------------------------------------------


@pytest.mark.parametrize("position", ["first", "middle", "last"])
@pytest.mark.parametrize(
    "field, value",
    [
        ('"a,b"', "a,b"),
        ('"say ""hi"""', 'say "hi"'),
        ('"x\r\ny"', "x\r\ny"),
        ('"line1\nline2"', "line1\nline2"),
    ],
    ids=["comma", "doubled-quotes", "crlf", "lf"],
)
def test_quoted_fields_parse_wherever_the_row_is(tmp_path, position, field, value):
    from clvtier.data import load_transactions

    frame = load_cdnow()[["customer_id", "date", "amount"]]
    lines = frame.to_csv(index=False).splitlines(keepends=True)
    row = f"{field},1998-06-01,5.0\n"
    at = {"first": 1, "middle": len(lines) // 2, "last": len(lines)}[position]
    path = tmp_path / "tx.csv"
    path.write_text("".join(lines[:at]) + row + "".join(lines[at:]), newline="")
    tx = load_transactions(path)
    accounting = tx.accounting()
    assert accounting.rows_read == len(frame) + 1 and accounting.rows_quarantined == 0
    ids = tx.con.sql("SELECT customer_id FROM tx WHERE date = DATE '1998-06-01' AND amount = 5.0").fetchall()
    assert (value,) in ids


def test_a_bare_year_is_not_an_excel_serial_and_zones_do_not_depend_on_the_host(tmp_path):
    from clvtier.data import load_transactions

    path = tmp_path / "years.csv"
    pd.DataFrame({"customer_id": ["a", "b"], "date": ["1997", "1998-02-03"], "amount": [1.0, 2.0]}).to_csv(
        path, index=False
    )
    tx = load_transactions(path)
    assert tx.accounting().quarantined == {"bad_date": 1}
    serials = tmp_path / "serials.csv"
    pd.DataFrame({"customer_id": ["a"], "date": ["35431"], "amount": [1.0]}).to_csv(serials, index=False)
    assert str(load_transactions(serials, date_format="excel").first_date) == "1997-01-01"
    # 1998-06-30 23:30 in Shanghai is 15:30 UTC: the day is the 30th wherever this runs
    stamps = pd.to_datetime(["1998-06-30 23:30", "1998-07-01 00:30"]).tz_localize("Asia/Shanghai")
    frame = pd.DataFrame({"customer_id": ["a", "b"], "date": stamps, "amount": [1.0, 2.0]})
    parquet = tmp_path / "tz.parquet"
    frame.to_parquet(parquet)
    for source in (frame, parquet):
        days = load_transactions(source).to_pandas()["date"].dt.strftime("%Y-%m-%d").tolist()
        assert days == ["1998-06-30", "1998-07-01"], source


# --- services and time ---------------------------------------------------------------------------------


def test_far_future_cutoffs_stop_at_once_and_far_as_of_warns(tmp_path):
    import time

    path = tmp_path / "tx.csv"
    load_cdnow(sample=True).to_csv(path, index=False)
    start = time.perf_counter()
    code, out = _cli(
        "evaluate-models", "-i", path, "--train-cutoff", "2097-01-01", "--test-cutoff", "2098-06-30"
    )
    assert code == 2 and "ends after the last transaction (1998-06-30)" in out and len(out.splitlines()) == 1
    assert time.perf_counter() - start < 10
    code, out = _cli("features", "-i", path, "--as-of", "3000-01-01", "-o", tmp_path / "f.csv")
    assert code == 0 and "WARNING: as_of 3000-01-01 is 365,793 days after the last transaction" in out


def test_every_fit_has_a_time_budget():
    import numpy as np

    from clvtier.clv.btyd import ModelFitError, _minimise

    calls = []

    def slow(x):  # a likelihood that never settles
        calls.append(1)
        time.sleep(0.002)
        return float(np.sin(len(calls)) + (x**2).sum())

    import time

    with pytest.raises(ModelFitError, match="did not converge within its time budget of 0.05 s"):
        _minimise(slow, np.zeros(2), tol=1e-12, name="test", seconds=0.05)


# --- model folders: data, not code -------------------------------------------------------------------


def test_a_stored_model_round_trips_exactly_with_either_calibration(tmp_path, new_store):
    import numpy as np

    from clvtier.features import customer_features
    from clvtier.tiering.storage import load_model, save_model

    sample = load_cdnow(sample=True)
    for calibration in ("sigmoid", "isotonic"):
        config = _config(tmp_path, name=f"m{calibration}").model_copy(
            update={
                "models": _config(tmp_path).models.model_validate(
                    {"bgnbd_gg": {}, "hybrid": {"n_estimators": 20, "calibration": calibration}}
                ),
                "tiering": _config(tmp_path).tiering.model_copy(update={"clv_model": "hybrid"}),
            }
        )
        model = train(config, tracking_uri=new_store(tmp_path)).tiering
        folder = save_model(model, tmp_path / f"stored-{calibration}")
        again = load_model(folder)
        features = customer_features(sample, as_of=AS_OF, time_unit="weeks")
        pd.testing.assert_frame_equal(again.predict(features), model.predict(features))
        assert not list(folder.glob("*.pkl")) and {p.suffix for p in folder.iterdir()} == {".json", ".ubj"}
        assert np.isclose(again.clv.scale, model.clv.scale)
        # the policy comes back with its keys in order: its reasons and digest do not change
        assert json.dumps(again.info["policy"]) == json.dumps(model.info["policy"])


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda f: (f / "model.json").write_text(
                '{"format": "clvtier-tiering-model/1", "model": {"__dataclass__": "os:system", "fields": {}}}'
            ),
            "is not one of clvtier's",
        ),
        (
            lambda f: (f / "model.json").write_text(
                '{"format": "clvtier-tiering-model/1", "model": {"__dataclass__": '
                '"clvtier.cli:main", "fields": {}}}'
            ),
            "not a clvtier model class",
        ),
        (lambda f: (f / "model.json").write_text((f / "model.json").read_text()[:500]), "JSONDecodeError"),
        (lambda f: (f / "model.json").write_text(""), "damaged"),
        (lambda f: (f / "model.json").unlink(), "has no model.json"),
        (lambda f: (f / "part1.ubj").write_bytes(b"\x00garbage" * 10), "damaged"),
        (lambda f: (f / "part1.ubj").unlink(), "damaged"),
    ],
    ids=[
        "foreign-class",
        "non-model-class",
        "truncated",
        "empty",
        "missing",
        "flipped-booster",
        "missing-part",
    ],
)
def test_a_crafted_or_damaged_model_folder_is_one_line_and_runs_nothing(hybrid, tmp_path, damage, message):
    import shutil

    model, tx = hybrid
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    stored = copy / "artifacts" / "tiering_model"
    damage(stored)
    marker = tmp_path / "pwned"
    (copy / "artifacts" / "tiering_model.pkl").write_bytes(  # a planted pickle is never read
        b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    )
    code, out = _cli(
        "score", "-m", copy, "-i", tx, "--as-of", AS_OF, "-o", tmp_path / "t.csv", "--no-tracking"
    )
    assert code == 2 and message in out and len(out.splitlines()) == 1, out
    assert not marker.exists()


def test_a_damaged_registered_json_is_one_line(exported, tmp_path):
    import shutil

    model, tx, _ = exported
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    (copy / "registered.json").write_text('{"version": 1')
    code, out = _cli(
        "score", "-m", copy, "-i", tx, "--as-of", AS_OF, "-o", tmp_path / "t.csv", "--no-tracking"
    )
    assert code == 2 and "registered.json: is damaged" in out and len(out.splitlines()) == 1


def test_sigterm_during_a_long_query_exits_143_without_output(tmp_path):
    """The signal lands while DuckDB reads and aggregates (or just after): either way exit 143, one
    line, no traceback and no output file."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from clvtier.data.datasets import write_synthetic

    big = write_synthetic(tmp_path / "big.parquet", 1_000_000, seed=1)["path"]
    out = tmp_path / "f.parquet"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clvtier",
            "features",
            "-i",
            str(big),
            "--as-of",
            "2021-06-30",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    time.sleep(3.0)  # imports take about 1.5 s; the query several seconds more
    assert proc.poll() is None, "the job ended before the signal; make the file larger"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "clvtier: stopped by signal 15" and "Traceback" not in err
    assert not out.exists()


def test_a_read_only_store_is_refused_before_any_work(tmp_path, monkeypatch):
    """(As root every folder is writable, so the permission check itself is simulated.)"""
    import clvtier.tracking.store as store
    from clvtier.tracking import use_tracking_uri

    monkeypatch.setattr(store.os, "access", lambda path, mode: False)
    with pytest.raises(TrackingError, match="is not writable"):
        use_tracking_uri(f"sqlite:///{tmp_path / 'm.db'}")
    assert not (tmp_path / "m.db").exists()


def test_evaluate_models_takes_the_reader_options_its_errors_recommend(tmp_path):
    path = tmp_path / "tx.csv"
    load_cdnow(sample=True).rename(columns={"customer_id": "客户ID"}).to_csv(path, index=False, sep=";")
    code, out = _cli(
        "evaluate-models",
        "-i",
        path,
        "--train-cutoff",
        "1997-06-01",
        "--test-cutoff",
        "1997-12-01",
        "--horizon",
        "180",
        "--time-unit",
        "days",
        "--delimiter",
        ";",
        "--columns",
        "customer_id=客户ID",
        "--max-amount",
        "5000",
    )
    assert code == 0, out
    assert "2,357 customers" in out
