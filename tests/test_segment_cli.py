"""clvtier segment: CDNOW, an Excel workbook with Chinese headers, and its errors."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from clvtier.cli import app
from clvtier.data.datasets import synthetic_transactions

runner = CliRunner()
ZH = {
    "customer_id": "客户ID",
    "date": "交易日期",
    "amount": "交易金额",
    "profit": "利润",
    "satisfaction": "满意度",
}
ZH_COLUMNS = ",".join(f"{k}={v}" for k, v in ZH.items())


@pytest.fixture(scope="module")
def workbook(tmp_path_factory):
    tx = synthetic_transactions(400, with_profit=True, with_satisfaction=True, seed=3)
    path = tmp_path_factory.mktemp("xlsx") / "交易明细.xlsx"
    tx.rename(columns=ZH).to_excel(path, index=False, sheet_name="交易")
    return path, tx["customer_id"].nunique()


@pytest.fixture(scope="module")
def cdnow_file(cdnow, tmp_path_factory):
    path = tmp_path_factory.mktemp("cdnow") / "cdnow.parquet"
    cdnow.to_parquet(path)
    return path


def test_segment_cdnow_rfm10_in_chinese(cdnow_file, tmp_path):
    out, prof = tmp_path / "seg.csv", tmp_path / "profile.parquet"
    result = runner.invoke(
        app,
        [
            "segment",
            "-i",
            str(cdnow_file),
            "--as-of",
            "1997-12-31",
            "--method",
            "rfm10",
            "--lang",
            "zh",
            "-o",
            str(out),
            "--profile",
            str(prof),
        ],
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert len(table) == 23_570 and table["customer_id"].is_unique
    assert {"segment", "r_score", "f_score", "m_score", "rfm_cell", "strategy", "as_of"} <= set(table.columns)
    assert "冠军客户" in set(table["segment"])
    assert "客户数 23,570" in result.output and "rows read" in result.output
    profile = pd.read_parquet(prof)
    assert profile["customers"].sum() == 23_570 and len(profile) == 10


@pytest.mark.parametrize(
    "method, extra, expect_columns",
    [
        ("rfm8", ["--threshold", "mean"], {"r_high", "f_high", "m_high"}),
        ("abc", ["--by", "value", "--shares", "0.5,0.3,0.15,0.05"], {"profit_total", "value_rank"}),
        ("abc4", [], {"profit_total"}),
        ("pyramid", [], {"profit_total"}),
        ("value-matrix", ["--frequency-cut", "2"], {"frequency_count", "avg_order_value"}),
        ("weighted", ["--weights", "entropy", "--cutoffs", "0.6,0.3"], {"score", "monetary_total_norm"}),
        (
            "weighted",
            ["--weights", "recency_days=1,frequency_count=2,monetary_total=3", "--normalise", "rank"],
            {"score"},
        ),
        ("clv-cs", ["--horizon", "26"], {"predicted_clv", "satisfaction_mean"}),
        ("kmeans", ["--k-range", "2-4", "--seed", "1"], {"cluster"}),
        ("gmm", ["--k", "3"], {"cluster"}),
        ("rfm", ["--bins", "4"], {"rfm_cell", "rfm_score"}),
    ],
)
def test_segment_excel_with_chinese_headers(workbook, tmp_path, method, extra, expect_columns):
    path, customers = workbook
    out = tmp_path / "seg.parquet"
    result = runner.invoke(
        app,
        [
            "segment",
            "-i",
            str(path),
            "--columns",
            ZH_COLUMNS,
            "--sheet",
            "交易",
            "--method",
            method,
            "--lang",
            "zh",
            "-o",
            str(out),
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out)
    assert len(table) == customers and expect_columns <= set(table.columns)
    assert table["segment"].notna().all() and table["strategy"].notna().all()
    assert "结论" in result.output


def test_segment_weighted_ahp_file(workbook, tmp_path):
    path, _ = workbook
    ahp = tmp_path / "ahp.yaml"
    ahp.write_text("[[1, 1/3, 1/5], [3, 1, 1/2], [5, 2, 1]]\n", encoding="utf-8")
    result = runner.invoke(
        app,
        [
            "segment",
            "-i",
            str(path),
            "--columns",
            ZH_COLUMNS,
            "--method",
            "weighted",
            "--weights",
            "ahp",
            "--ahp",
            str(ahp),
            "-o",
            str(tmp_path / "w.csv"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "consistency_ratio=0.003" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "clv-cs"], "clv-cs needs customer satisfaction"),
        (["--method", "tiers"], "--method: valid options are rfm, rfm8"),
        (["--method", "kmeans", "--k-range", "2..8"], "--k-range: write it as 'smallest-largest'"),
        (["--method", "weighted", "--weights", "heavy"], "--weights: write name=value pairs"),
        (["--method", "abc", "--shares", "0.2,x"], "--shares: give numbers separated by commas"),
        (["--method", "abc", "--lang", "fr"], "lang: valid options are 'en', 'zh'; got 'fr'"),
        (["--method", "rfm-map", "--map", "nowhere.yaml"], "nowhere.yaml"),
    ],
)
def test_segment_errors_are_one_line_exit_2(workbook, tmp_path, args, message):
    path, _ = workbook
    cols = "customer_id=客户ID,date=交易日期,amount=交易金额"
    result = runner.invoke(
        app, ["segment", "-i", str(path), "--columns", cols, "-o", str(tmp_path / "s.csv"), *args]
    )
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "s.csv").exists()
