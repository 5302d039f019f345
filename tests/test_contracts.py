"""Contracts at the boundaries: each of these failed silently before (issue 13, item 4)."""

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from typer.testing import CliRunner

from clvtier.cli import app
from clvtier.data import Accounting, LoadSpec, load_transactions
from clvtier.data.datasets import load_cdnow, synthetic_transactions
from clvtier.errors import InputError, TrackingError
from clvtier.features import customer_features
from clvtier.pipelines.segment import SegmentOptions, segment_features
from clvtier.segment import ValueClusters
from clvtier.tracking import registry


def test_accounting_balance_is_a_real_check():
    ok = Accounting("f", None, rows_read=10, rows_used=6, rows_after_as_of=2, quarantined={"bad_date": 2})
    wrong = Accounting("f", None, rows_read=11, rows_used=6, rows_after_as_of=2, quarantined={"bad_date": 2})
    assert ok.balanced() and not wrong.balanced()


def test_rows_read_are_counted_at_the_source():
    tx = load_transactions(load_cdnow(sample=True))
    assert tx.accounting().rows_read == 6919 and tx.accounting().balanced()
    tx.con.execute("DELETE FROM tx WHERE source_line = 7")  # a row lost after reading
    assert tx.accounting().rows_read == 6919 and not tx.accounting().balanced()


def test_fingerprint_is_computed_in_the_engine_and_sees_order_and_values():
    frame = load_cdnow(sample=True)
    one = load_transactions(frame).fingerprint()
    assert one == load_transactions(frame.copy()).fingerprint() and len(one) == 64
    changed = frame.copy()
    changed.loc[3, "amount"] += 0.01
    assert load_transactions(changed).fingerprint() != one
    assert load_transactions(frame.iloc[::-1].reset_index(drop=True)).fingerprint() != one


@pytest.mark.parametrize(
    "kwargs, source, flag",
    [
        ({"returns": "ignore"}, "returns", "--returns"),
        ({"max_amount": -1}, "max_amount", "--max-amount"),
        ({"max_amount": float("nan")}, "max_amount", "--max-amount"),
        ({"columns": "customer_id"}, "columns", "--columns"),
    ],
)
def test_library_errors_name_options_and_the_cli_adds_flags(tmp_path, kwargs, source, flag):
    path = tmp_path / "t.csv"
    load_cdnow(sample=True).head(20).to_csv(path, index=False)
    with pytest.raises(InputError) as err:
        load_transactions(path, **kwargs)
    assert err.value.source == source and "--" not in str(err.value)
    option = [flag, str(kwargs[next(iter(kwargs))])]
    result = CliRunner().invoke(
        app, ["features", "-i", str(path), "--as-of", "1997-06-30", "-o", str(tmp_path / "f.csv"), *option]
    )
    assert result.exit_code == 2 and result.output.startswith(f"clvtier: error: {flag}: ")


def test_clusters_do_not_depend_on_row_order():
    features = customer_features(load_transactions(load_cdnow(sample=True)), as_of="1998-06-30")
    rng = np.random.default_rng(0)
    labels = []
    for _ in range(3):
        shuffled = features.iloc[rng.permutation(len(features))].reset_index(drop=True)
        model = ValueClusters(method="kmeans", k_range=(2, 5), random_state=0).fit(shuffled)
        labels.append(pd.Series(model.predict(features), index=features["customer_id"]))
    pd.testing.assert_series_equal(labels[0], labels[1])
    pd.testing.assert_series_equal(labels[0], labels[2])


def test_clusters_are_ordered_by_profit_when_profit_is_mapped():
    frame = synthetic_transactions(3000, seed=5, with_profit=True)
    frame["profit"] = -0.1 * frame["amount"]  # every sale loses money: the biggest spenders lose most
    features = customer_features(load_transactions(frame))
    seg = segment_features(features, "kmeans", SegmentOptions(n_clusters=4, random_state=0))
    assert seg.params["value"] == "profit_total"
    profit = seg.table.assign(p=features["profit_total"].to_numpy()).groupby("segment_code")["p"].mean()
    by_rank = profit.reindex([f"cluster_{i}" for i in range(1, 5)]).to_numpy()
    assert np.all(np.diff(by_rank) <= 0), by_rank
    spend = seg.table.assign(s=features["monetary_total"].to_numpy()).groupby("segment_code")["s"].mean()
    assert spend.idxmin() == "cluster_1"  # ordered by spend, the biggest loss-makers would come first


def test_registry_treats_only_not_found_as_no_champion(tmp_path, monkeypatch, migrated_store):
    import shutil

    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    assert registry.current_champion("nobody") is None  # no such model: no champion yet
    mlflow.MlflowClient().create_registered_model("somebody")
    assert registry.current_champion("somebody") is None  # no champion alias yet

    def locked(self, name, alias):
        raise MlflowException("(sqlite3.OperationalError) database is locked")

    monkeypatch.setattr(mlflow.MlflowClient, "get_model_version_by_alias", locked)
    export_dir = tmp_path / "models"
    (export_dir / "tiers").mkdir(parents=True)
    (export_dir / "tiers" / "keep.txt").write_text("the current champion")
    with pytest.raises(TrackingError, match="cannot read the champion of 'tiers': .*database is locked"):
        registry.register_and_export(
            "models:/m-0",
            name="tiers",
            metric="gini",
            test_metrics={"gini": 0.9},
            model_info={"protocol": {"digest": "x"}},
            run_id="r",
            export_dir=export_dir,
            tracking_uri=uri,
            experiment="e",
        )
    assert [p.name for p in (export_dir / "tiers").iterdir()] == ["keep.txt"]


def test_load_spec_is_one_object_for_config_and_library():
    from clvtier.config import DataConfig

    config = DataConfig(dataset="cdnow", columns={"amount": "x"}, max_amount=100, returns="keep")
    assert config.spec == LoadSpec(columns={"amount": "x"}, max_amount=100, returns="keep")
    assert set(LoadSpec.model_fields) < set(DataConfig.model_fields)
