"""The Spark engine gives the local engine's answers: the same accounting, rejects, features (numbers
to 1e-9, integers and text exactly) and, for every customer, the same tier, at-risk flag and
reason. Runs Spark in local[2]; CI requires it (CLVTIER_REQUIRE_SPARK=1 fails instead of skipping)."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from clvtier.cli import app
from clvtier.config import parse_config
from clvtier.data import LoadSpec, load_transactions
from clvtier.data.datasets import load_cdnow
from clvtier.errors import InputError
from clvtier.pipelines.features import build_features
from clvtier.pipelines.score import score
from clvtier.pipelines.train import train

AS_OF = "1997-09-30"
HOSTILE = (",1997-01-01,1,5\n42,notadate,1,5\n42,1997-02-01,1,abc\n42,1997-02-01,1,\"$1,234.50\"\n"
           "42,1997-02-01,1,1e400\n42,1997-02-01\n7,1997-03-01,1,-3.5\n7,1997-03-01,1,-3.5\n")


def _require_spark(java: bool = True):
    """Skip without pyspark (or Java 17) on a developer's machine; with CLVTIER_REQUIRE_SPARK=1
    (CI) fail instead, so these tests always run there."""
    required = os.environ.get("CLVTIER_REQUIRE_SPARK") == "1"
    missing = None
    try:
        import pyspark  # noqa: F401
    except ImportError:
        missing = "pyspark not installed: pip install 'clvtier[spark]'"
    if missing is None and java:
        from clvtier.spark.session import java_version

        if (java_version() or 0) < 17:
            missing = "Java 17 not installed"
    if missing:
        if required:
            pytest.fail(f"CLVTIER_REQUIRE_SPARK=1 but {missing}")
        pytest.skip(missing)


@pytest.fixture(scope="module")
def spark():
    _require_spark()
    warnings.filterwarnings("ignore", category=FutureWarning, module="pyspark")
    from clvtier.spark import spark_session

    return spark_session("local[2]")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The CDNOW sample as Parquet, and as CSV with hostile rows (each quarantine reason)."""
    folder = tmp_path_factory.mktemp("spark-tx")
    frame = load_cdnow(sample=True)
    frame["date"] = frame["date"].astype("datetime64[us]")
    frame.to_parquet(folder / "cdnow.parquet", index=False)
    frame.to_csv(folder / "cdnow.csv", index=False)
    with open(folder / "cdnow.csv", "a") as fh:
        fh.write(HOSTILE)
    return {"parquet": folder / "cdnow.parquet", "csv": folder / "cdnow.csv"}


@pytest.fixture(scope="module")
def model(new_store, tmp_path_factory):
    folder = tmp_path_factory.mktemp("spark-model")
    config = parse_config({
        "experiment": "spark-test", "data": {"dataset": "cdnow_sample"},
        "split": {"train_cutoff": "1997-07-01", "test_cutoff": "1997-12-30", "horizon": 26},
        "models": {"bgnbd_gg": {},
                   "hybrid": {"n_estimators": 40, "learning_rate": 0.1, "min_child_weight": 10}},
        "registry": {"name": "tiers", "export_dir": str(folder / "models")}})
    return str(train(config, tracking_uri=new_store(folder)).export_path)


def assert_same_table(local: pd.DataFrame, spark: pd.DataFrame, key: str = "customer_id"):
    """Same columns and types; numbers to 1e-9, everything else exactly."""
    assert list(spark.columns) == list(local.columns)
    assert spark.dtypes.to_dict() == local.dtypes.to_dict()
    assert len(spark) == len(local)
    assert spark[key].tolist() == local[key].tolist()  # same order: by customer id
    for c in local.columns:
        a, b = local[c].to_numpy(), spark[c].to_numpy()
        if a.dtype.kind == "f":
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-9, err_msg=c)
            assert np.array_equal(np.isnan(a), np.isnan(b)), c
        else:
            assert (pd.Series(a).astype(str) == pd.Series(b).astype(str)).all(), c


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_features_accounting_and_rejects_equal_the_local_engine(spark, files, kind, tmp_path):
    from clvtier.pipelines.spark import build_features_spark

    source = files[kind]
    local = build_features(source, as_of=AS_OF, output=tmp_path / "local.parquet",
                           rejects=tmp_path / "local.rejects.parquet")
    remote = build_features_spark(str(source), as_of=AS_OF, output=str(tmp_path / "spark.parquet"))
    assert remote.accounting.as_dict() == local.accounting.as_dict()
    assert remote.accounting.balanced()
    assert_same_table(pd.read_parquet(tmp_path / "local.parquet"),
                      pd.read_parquet(tmp_path / "spark.parquet"))
    if kind == "csv":
        a = pd.read_parquet(tmp_path / "local.rejects.parquet")
        b = pd.read_parquet(remote.rejects)
        assert len(a) == 7 and sorted(a["reason"]) == sorted(b["reason"])
        assert a["source_line"].tolist() == b["source_line"].tolist()
        cols = ["source_line", "reason", "customer_id", "date", "amount"]
        assert a[cols].astype(str).equals(b[cols].astype(str))


def test_a_catalogue_table_reads_like_its_file(spark, files, tmp_path):
    from clvtier.pipelines.spark import build_features_spark

    spark.read.parquet(str(files["parquet"])).createOrReplaceTempView("cdnow_tx")
    table = build_features_spark("table:cdnow_tx", as_of=AS_OF, output=str(tmp_path / "t.parquet"))
    path = build_features_spark(str(files["parquet"]), as_of=AS_OF, output=str(tmp_path / "p.parquet"))
    assert table.accounting.rows_used == path.accounting.rows_used
    assert_same_table(pd.read_parquet(tmp_path / "p.parquet"), pd.read_parquet(tmp_path / "t.parquet"))
    with pytest.raises(InputError, match="table:no_such_table"):
        build_features_spark("table:no_such_table", as_of=AS_OF, output=str(tmp_path / "n.parquet"))


def test_features_under_drop_duplicates_and_quarantined_returns(spark, files, tmp_path):
    from clvtier.pipelines.spark import build_features_spark

    spec = LoadSpec(returns="quarantine", drop_duplicates=True)
    local = build_features(files["csv"], as_of=AS_OF, output=tmp_path / "l.parquet", spec=spec)
    remote = build_features_spark(str(files["csv"]), as_of=AS_OF, output=str(tmp_path / "s.parquet"),
                                  spec=spec)
    assert remote.accounting.as_dict() == local.accounting.as_dict()
    assert remote.accounting.quarantined["duplicate"] == 21
    assert remote.accounting.quarantined["negative_amount"] == 2
    assert_same_table(pd.read_parquet(tmp_path / "l.parquet"), pd.read_parquet(tmp_path / "s.parquet"))


QUANTILE_POLICY = """
name: quantiles
version: 1
tiers:
  - code: top
    label: {en: Top}
    when:
      - {column: predicted_clv, op: ">=", quantile: 0.8}
    action: {en: Keep close.}
  - code: middle
    label: {en: Middle}
    when:
      - {column: predicted_clv, op: ">", quantile: 0.37}
      - {column: recency_days, op: "<", quantile: 0.5}
    action: {en: Grow.}
  - code: rest
    label: {en: Rest}
    action: {en: Automate.}
at_risk:
  when:
    - {column: churn_probability, op: ">", quantile: 0.75}
  action: {en: "Call first."}
"""


@pytest.mark.parametrize("policy", ["corporate4", "abc4_clv", "quantiles"])
def test_score_gives_every_customer_the_local_tier_flag_and_reason(spark, files, model, policy, tmp_path):
    from clvtier.pipelines.spark import score_spark

    if policy == "quantiles":
        (tmp_path / "q.yaml").write_text(QUANTILE_POLICY)
        policy = str(tmp_path / "q.yaml")
    local = score(model, files["csv"], as_of=AS_OF, output=tmp_path / "l.parquet", policy=policy,
                  log_to_mlflow=False)
    remote = score_spark(model, str(files["csv"]), as_of=AS_OF, output=str(tmp_path / "s.parquet"),
                         policy=policy, log_to_mlflow=False)
    assert remote.accounting.as_dict() == local.accounting.as_dict()
    assert remote.cutoffs == local.cutoffs
    a, b = pd.read_parquet(tmp_path / "l.parquet"), pd.read_parquet(tmp_path / "s.parquet")
    assert_same_table(a, b)
    for c in ("tier", "at_risk", "tier_reason", "action", "r_score", "f_score", "m_score", "rfm_segment"):
        assert a[c].tolist() == b[c].tolist(), c
    counts = ["tier", "customers", "at_risk"]
    assert remote.tiers[counts].equals(local.tiers[counts])


def test_exact_ranks_and_order_statistics_equal_a_full_sort(spark):
    from clvtier.segment.rfm import rfm_scores
    from clvtier.spark.features import with_rfm_scores
    from clvtier.spark.ranks import Ranks

    rng = np.random.default_rng(3)
    n = 5_000
    frame = pd.DataFrame({"customer_id": np.arange(n), "recency_days": rng.integers(0, 400, n),
                          "frequency_count": rng.geometric(0.4, n),
                          "monetary_total": np.round(rng.lognormal(3, 1, n), 2)})
    frame.loc[::7, "monetary_total"] = 25.0  # many ties
    remote = spark.createDataFrame(frame).repartition(7)
    ranks = Ranks(remote, "monetary_total", partitions=5)
    ordered = np.sort(frame["monetary_total"].to_numpy())
    for k in (0, 1, 713, n // 2, n - 2, n - 1):
        assert ranks.kth(k) == ordered[k]
    scored = with_rfm_scores(remote).toPandas().sort_values("customer_id").reset_index(drop=True)
    expected = rfm_scores(frame)
    for c in ("r_score", "f_score", "m_score"):
        assert scored[c].tolist() == expected[c].tolist(), c


def test_a_failed_job_leaves_the_earlier_output_and_no_staging_folder(spark, tmp_path):
    from clvtier.spark.output import map_pandas, write_dataset

    target = str(tmp_path / "out.parquet")
    write_dataset(spark.range(10), target)
    first = sorted(p.name for p in (tmp_path / "out.parquet").iterdir())

    def boom(frame):
        if len(frame) > 3:
            raise RuntimeError("worker failed")
        return frame

    with pytest.raises(Exception, match="worker failed"):
        write_dataset(map_pandas(spark.range(0, 100, numPartitions=2), boom, sample_rows=2), target)
    assert sorted(p.name for p in (tmp_path / "out.parquet").iterdir()) == first
    assert pd.read_parquet(target)["id"].tolist() == list(range(10))
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]


def test_unsupported_options_and_outputs_are_one_line_errors(spark, files, tmp_path):
    from clvtier.pipelines.spark import build_features_spark

    with pytest.raises(InputError, match="net-earlier"):
        build_features_spark(str(files["csv"]), as_of=AS_OF, output=str(tmp_path / "f.parquet"),
                             spec=LoadSpec(returns="net-earlier"))
    with pytest.raises(InputError, match="Parquet dataset"):
        build_features_spark(str(files["csv"]), as_of=AS_OF, output=str(tmp_path / "f.csv"))
    result = CliRunner().invoke(app, ["features", "-i", str(tmp_path / "none.csv"), "--as-of", AS_OF,
                                      "-o", str(tmp_path / "f.parquet"), "--engine", "spark"])
    assert result.exit_code != 0
    assert "file not found" in result.output and "Traceback" not in result.output


def test_missing_java_is_a_one_line_error_naming_the_install(tmp_path, files):
    _require_spark(java=False)
    env = {**os.environ, "JAVA_HOME": str(tmp_path / "no-java"), "PATH": os.path.dirname(sys.executable)}
    run = subprocess.run([sys.executable, "-m", "clvtier", "features", "-i", str(files["csv"]),
                          "--as-of", AS_OF, "-o", str(tmp_path / "f.parquet"), "--engine", "spark"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Java 17" in lines[0] and "openjdk-17" in lines[0], run.stderr
    # the local engine needs no Java
    ok = load_transactions(files["csv"]).accounting(AS_OF)
    assert ok.balanced()


@pytest.mark.slow
def test_a_two_worker_standalone_cluster_gives_the_local_answers(spark, files, model, tmp_path):
    """spark-submit on a real standalone cluster (a master and two one-core workers on loopback)."""
    from clvtier.spark.cluster import standalone, submit

    local = score(model, files["csv"], as_of=AS_OF, output=tmp_path / "l.parquet", log_to_mlflow=False)
    with standalone(workers=2, cores=1) as master:
        run = submit(master, ["score", "-m", model, "-i", str(files["csv"]), "--as-of", AS_OF,
                              "-o", str(tmp_path / "c.parquet"), "--no-tracking", "--engine", "spark"])
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"scored {local.customers:,} customers" in run.stdout
    assert_same_table(pd.read_parquet(tmp_path / "l.parquet"), pd.read_parquet(tmp_path / "c.parquet"))


@pytest.mark.slow
@pytest.mark.parametrize("data", ["cdnow", "synthetic-1m"])
def test_full_sets_give_the_same_features_and_tiers(spark, model, data, tmp_path):
    """The full CDNOW file and a million synthetic customers: features and scores equal the local
    engine's (the fast equivalent is the CDNOW sample above)."""
    from clvtier.data.datasets import write_synthetic
    from clvtier.pipelines.spark import build_features_spark, score_spark

    source, as_of = tmp_path / "tx.parquet", AS_OF
    if data == "cdnow":
        frame = load_cdnow()
        frame["date"] = frame["date"].astype("datetime64[us]")
        frame.to_parquet(source, index=False)
    else:
        write_synthetic(source, 1_000_000, seed=7)
        as_of = str(load_transactions(source).last_date)
    build_features(source, as_of=as_of, output=tmp_path / "fl.parquet")
    build_features_spark(str(source), as_of=as_of, output=str(tmp_path / "fs.parquet"))
    assert_same_table(pd.read_parquet(tmp_path / "fl.parquet"), pd.read_parquet(tmp_path / "fs.parquet"))
    score(model, source, as_of=as_of, output=tmp_path / "sl.parquet", log_to_mlflow=False)
    score_spark(model, str(source), as_of=as_of, output=str(tmp_path / "ss.parquet"), log_to_mlflow=False)
    a, b = pd.read_parquet(tmp_path / "sl.parquet"), pd.read_parquet(tmp_path / "ss.parquet")
    assert_same_table(a, b)
    for c in ("tier", "at_risk", "tier_reason"):
        assert a[c].tolist() == b[c].tolist(), c


def test_compare_with_spark_features_gives_the_local_summary(spark, new_store, tmp_path):
    """compare --engine spark: the data read and every feature table computed in Spark give the
    same comparison (the summary table, bootstrap intervals included) as the local engine."""
    from clvtier.pipelines.compare import compare

    config = parse_config({
        "experiment": "spark-compare", "seed": 0, "data": {"dataset": "cdnow_sample"},
        "split": {"train_cutoff": "1997-07-01", "test_cutoff": "1997-12-30", "horizon": 26},
        "models": {"bgnbd_gg": {}, "hybrid": {"n_estimators": 20, "learning_rate": 0.1}},
        "compare": {"draws": 50, "methods": {"rfm": {}, "abc4": {}, "value-matrix": {}}}})
    uri = new_store(tmp_path)
    local = compare(config, output=tmp_path / "l.html", tracking_uri=uri, log_to_mlflow=False)
    remote = compare(config, output=tmp_path / "s.html", tracking_uri=uri, log_to_mlflow=False,
                     engine="spark")
    pd.testing.assert_frame_equal(local.summary, remote.summary, check_exact=False, rtol=0, atol=1e-9)
    a, b = pd.read_csv(tmp_path / "l_summary.csv"), pd.read_csv(tmp_path / "s_summary.csv")
    pd.testing.assert_frame_equal(a, b)


def test_a_failed_mlflow_run_leaves_the_earlier_tiers_in_place(spark, files, model, tmp_path, monkeypatch):
    import clvtier.pipelines.spark as job
    from clvtier.errors import TrackingError

    output = tmp_path / "tiers.parquet"
    job.score_spark(model, str(files["parquet"]), as_of=AS_OF, output=str(output), log_to_mlflow=False)
    before = pd.read_parquet(output)

    def fail(*args, **kwargs):
        raise TrackingError("the tracking store went away")

    monkeypatch.setattr(job, "log_scoring", fail)
    monkeypatch.setattr(job, "use_tracking_uri", lambda uri: uri)
    with pytest.raises(TrackingError):
        job.score_spark(model, str(files["parquet"]), as_of="1997-06-30", output=str(output),
                        tracking_uri=f"sqlite:///{tmp_path}/unused.db")
    pd.testing.assert_frame_equal(pd.read_parquet(output), before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiers.parquet"]


def test_scoring_releases_its_cached_tables(spark, files, model, tmp_path):
    """A long-lived session scoring again and again keeps no cached data from a run (its
    checkpoints and rank tables), and what was cached before stays cached."""
    from clvtier.pipelines.spark import build_features_spark, score_spark

    mine = spark.range(10).persist()
    mine.count()
    before = set(spark.sparkContext._jsc.getPersistentRDDs().keySet())
    score_spark(model, str(files["csv"]), as_of=AS_OF, output=str(tmp_path / "s.parquet"),
                log_to_mlflow=False)
    assert set(spark.sparkContext._jsc.getPersistentRDDs().keySet()) == before
    build_features_spark(str(files["csv"]), as_of=AS_OF, output=str(tmp_path / "f.parquet"))
    assert set(spark.sparkContext._jsc.getPersistentRDDs().keySet()) == before
    mine.unpersist()
