"""End to end on a line-item export (the generator's, with its truth): features, train from the
experiment config and score all count every line exactly where the generator put it."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from clvtier.cli import app
from clvtier.config import parse_config
from clvtier.data.datasets import FEE_CODES, synthetic_line_items
from clvtier.pipelines.train import train

COLUMNS = {"customer_id": "CustomerID", "date": "InvoiceDate", "order_id": "InvoiceNo",
           "quantity": "Quantity", "unit_price": "UnitPrice"}
DATA = {"columns": COLUMNS, "date_format": "%m/%d/%Y %H:%M", "returns": "net-earlier",
        "return_prefix": "C", "drop_duplicates": True, "exclude": {"StockCode": list(FEE_CODES)}}
FLAGS = ["--columns", ",".join(f"{k}={v}" for k, v in COLUMNS.items()),
         "--date-format", "%m/%d/%Y %H:%M", "--returns", "net-earlier", "--return-prefix", "C",
         "--drop-duplicates", "--exclude", "StockCode=" + ",".join(FEE_CODES)]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    frame, customers, counts = synthetic_line_items(1500, seed=7, return_truth=True)
    path = tmp_path_factory.mktemp("lines") / "online_retail.csv"
    frame.to_csv(path, index=False)
    return path, customers, counts


def _check_accounting(acc, counts):
    assert acc.rows_read == counts["lines"] and acc.rows_after_as_of == 0 and acc.balanced()
    assert acc.quarantined == {k: counts[k] for k in ("duplicate", "excluded", "missing_customer_id",
                                                      "unmatched_return")}
    assert acc.duplicates_found == counts["duplicate"]
    assert acc.returns_netted == counts["returns_netted"]
    assert acc.amount_derived == "quantity x unit_price"


def test_generator_truth_is_consistent(export):
    path, customers, counts = export
    frame = pd.read_csv(path, dtype=str)
    assert len(frame) == counts["lines"]
    assert frame["CustomerID"].dropna().str.endswith(".0").all()
    assert frame["InvoiceNo"].str.startswith("C").sum() == counts["returns"]
    assert frame.duplicated().sum() == counts["duplicate"]
    # one order has several lines, several of them with equal quantity and price: not duplicates
    by_order = frame.groupby("InvoiceNo").size()
    assert (by_order > 1).mean() > 0.5


def test_features_command_matches_truth(export, tmp_path):
    path, customers, counts = export
    out = tmp_path / "features.parquet"
    result = CliRunner().invoke(app, ["features", "-i", str(path), "--as-of", "2011-12-31",
                                      "-o", str(out), *FLAGS])
    assert result.exit_code == 0, result.output
    assert "returns netted" in result.output and "ids like 17850.0" in result.output
    features = pd.read_parquet(out).merge(customers, on="customer_id", how="outer", validate="1:1")
    assert features["orders"].notna().all() and features["frequency_count"].notna().all()
    assert (features["frequency_count"] == features["orders"]).all()
    assert features["monetary_total"].to_numpy() == pytest.approx(features["revenue"].to_numpy(), abs=1e-6)
    rejects = pd.read_csv(tmp_path / "features.parquet.rejects.csv", dtype=str)
    assert rejects["reason"].value_counts().to_dict() == {
        k: counts[k] for k in ("missing_customer_id", "excluded", "duplicate", "unmatched_return")}
    left = rejects.loc[rejects["reason"] == "unmatched_return", "amount_left"].astype(float).sum()
    assert left == pytest.approx(counts["unmatched_amount"], abs=1e-6)


def test_train_and_score_from_the_config(export, new_store, tmp_path):
    path, customers, counts = export
    uri = new_store(tmp_path)
    config = parse_config({
        "experiment": "line-items", "data": {"path": str(path), **DATA},
        "split": {"train_cutoff": "2011-05-01", "test_cutoff": "2011-08-01", "horizon": 13},
        "models": {"bgnbd_gg": {}},
        "tiering": {"clv_model": "bgnbd_gg", "btyd_model": "bgnbd_gg"},
        "registry": {"name": "line-items", "export_dir": str(tmp_path / "models")},
    })
    trained = train(config, tracking_uri=uri)
    _check_accounting(trained.accounting, counts)

    out = tmp_path / "tiers.csv"
    result = CliRunner().invoke(app, ["score", "--model", str(tmp_path / "models" / "line-items"),
                                      "-i", str(path), "--as-of", "2011-12-31", "-o", str(out),
                                      "--tracking-uri", uri, *FLAGS])
    assert result.exit_code == 0, result.output
    tiers = pd.read_csv(out, dtype={"customer_id": str})
    assert sorted(tiers["customer_id"]) == sorted(customers["customer_id"])
    printed = {" ".join(line.split()[:-1]): line.split()[-1] for line in result.output.splitlines()
               if line.strip() and line.split()[-1].replace(",", "").isdigit()}
    assert printed["rows read"] == f"{counts['lines']:,}"
    for reason in ("duplicate", "excluded", "missing_customer_id", "unmatched_return"):
        assert printed[reason] == f"{counts[reason]:,}"
    assert f"returns netted {counts['returns_netted']:,}" in " ".join(result.output.split())
