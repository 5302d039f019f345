"""Every supported source and text convention reads to the same transactions."""

import datetime as dt

import pandas as pd
import pytest

from clvtier.data import LoadSpec, load_transactions
from clvtier.errors import InputError
from clvtier.features import customer_features

EXPECTED = pd.DataFrame({
    "customer_id": ["C01", "C01", "C02"],
    "date": pd.to_datetime(["2021-03-01", "2021-03-15", "2021-03-02"]),
    "amount": [1234.5, 20.25, 7.0],
})
CN = {"customer_id": "客户ID", "date": "交易日期", "amount": "交易金额"}


def _check(tx):
    got = tx.to_pandas()[["customer_id", "date", "amount"]]
    pd.testing.assert_frame_equal(got.reset_index(drop=True), EXPECTED, check_dtype=False)
    assert tx.accounting().balanced() and tx.accounting().rows_quarantined == 0


@pytest.mark.parametrize("text, encoding, options", [
    ("customer_id,date,amount\nC01,2021-03-01,1234.5\nC01,2021-03-15,20.25\nC02,2021-03-02,7\n",
     "utf-8", LoadSpec()),
    ("customer_id;date;amount\nC01;2021-03-01;1234,5\nC01;2021-03-15;20,25\nC02;2021-03-02;7\n",
     "utf-8", LoadSpec()),  # ';' and decimal comma, both detected
    ("customer_id;date;amount\nC01;01.03.2021;1.234,5\nC01;15.03.2021;20,25\n"
     "C02;02.03.2021;7\n", "utf-8", LoadSpec(delimiter=";", decimal=",",
                                                date_format="%d.%m.%Y")),
    ("customer_id\tdate\tamount\nC01\t2021-03-01 10:15:00\t1234.5\nC01\t2021-03-15T23:59:59\t"
     "20.25\nC02\t2021-03-02\t7\n", "utf-8", LoadSpec()),
    ('customer_id,date,amount\nC01,2021-03-01,"1,234.50"\nC01,2021-03-15,$20.25\n'
     "C02,2021-03-02,7\n", "utf-8", LoadSpec()),  # thousands separator, currency sign
    ("customer_id,date,amount\nC01,44256,1234.5\nC01,44270,20.25\nC02,44257,7\n",
     "utf-8", LoadSpec(date_format="excel")),  # Excel serial dates, asked for
    ("customer_id,date,amount\nC01,20210301,1234.5\nC01,20210315,20.25\nC02,20210302,7\n",
     "utf-8", LoadSpec(date_format="%Y%m%d")),
    ("customer_id,date,amount\nC01,03/01/2021,1234.5\nC01,03/15/2021,20.25\nC02,03/02/2021,7\n",
     "utf-8-sig", LoadSpec(date_format="%m/%d/%Y")),  # BOM
    ("customer_id,date,amount\nC01,2021-03-01,1234.5\nC01,2021-03-15,20.25\nC02,2021-03-02,7\n",
     "utf-16", LoadSpec()),
])
def test_csv_variants(tmp_path, text, encoding, options):
    path = tmp_path / "tx.csv"
    path.write_bytes(text.encode(encoding))
    _check(load_transactions(path, options))


@pytest.mark.parametrize("encoding", ["gb18030", "latin-1"])
def test_named_encodings(tmp_path, encoding):
    header = "客户ID,交易日期,交易金额" if encoding == "gb18030" else "customer_id,date,amount"
    names = ["客户C01", "客户C02"] if encoding == "gb18030" else ["Müller", "Ñandú"]
    text = f"{header}\n{names[0]},2021-03-01,1\n{names[1]},2021-03-02,2\n"
    path = tmp_path / "tx.csv"
    path.write_bytes(text.encode(encoding))
    columns = CN if encoding == "gb18030" else None
    tx = load_transactions(path, columns=columns, spec=LoadSpec(encoding=encoding))
    assert tx.to_pandas()["customer_id"].tolist() == names


def test_excel_with_chinese_headers_and_sheet(tmp_path):
    path = tmp_path / "交易.xlsx"
    frame = pd.DataFrame({"客户ID": ["C01", "C01", "C02"],
                          "交易日期": [dt.datetime(2021, 3, 1), dt.datetime(2021, 3, 15, 9, 30),
                                   dt.datetime(2021, 3, 2)],
                          "交易金额": [1234.5, 20.25, 7],
                          "信用评级": [3, 3, 5]})
    with pd.ExcelWriter(path) as writer:
        pd.DataFrame({"x": [1]}).to_excel(writer, sheet_name="说明", index=False)
        frame.to_excel(writer, sheet_name="交易", index=False)
    tx = load_transactions(path, columns={**CN, "credit": "信用评级"},
                           spec=LoadSpec(sheet="交易"))
    _check(tx)
    assert tx.columns == ("customer_id", "date", "amount", "credit")
    assert load_transactions(path, columns=CN, spec=LoadSpec(sheet=1)).source == str(path)


def test_excel_serial_numbers_and_rejects_rows(tmp_path):
    path = tmp_path / "serial.xlsx"
    pd.DataFrame({"customer_id": ["C01", "C01", "C02", "C03"],
                  "date": [44256, 44270, 44257, "n/a"],
                  "amount": [1234.5, 20.25, 7, 1]}).to_excel(path, index=False)
    tx = load_transactions(path)
    assert tx.rejects()[["source_line", "reason"]].values.tolist() == [[5, "bad_date"]]


def test_parquet_and_dataframe(tmp_path):
    frame = EXPECTED.copy()
    path = tmp_path / "tx.parquet"
    frame.to_parquet(path)
    _check(load_transactions(path))
    _check(load_transactions(frame))


def test_integer_ids_keep_their_type(tmp_path):
    frame = pd.DataFrame({"customer_id": [1, 2], "date": ["2021-01-01", "2021-01-02"],
                          "amount": [1.0, 2.0]})
    assert load_transactions(frame).to_pandas()["customer_id"].dtype == "int64"


def test_csv_line_order_is_source_order(tmp_path):
    # DuckDB reads CSV in parallel; line numbers must still follow the file.
    n = 300_000
    frame = pd.DataFrame({"customer_id": range(n), "date": "2021-01-01", "amount": 1.0})
    frame.loc[::7919, "amount"] = None
    path = tmp_path / "big.csv"
    frame.to_csv(path, index=False)
    rejects = load_transactions(path).rejects()
    assert rejects["source_line"].tolist() == [i + 2 for i in range(0, n, 7919)]
    assert rejects["customer_id"].astype(int).tolist() == list(range(0, n, 7919))


def test_ids_exported_as_floats_are_read_as_integers_and_reported(tmp_path):
    """Spreadsheets export integer ids as 17850.0; leading zeros and mixed ids stay as written."""
    path = tmp_path / "tx.csv"
    pd.DataFrame(
        {
            "customer_id": ["17850.0", "13047.0", "00123.0", "17850.0"],
            "date": ["2011-01-01"] * 4,
            "amount": [1.0, 2.0, 3.0, 4.0],
        }
    ).to_csv(path, index=False)
    tx = load_transactions(path)
    assert sorted(set(tx.to_pandas()["customer_id"])) == ["00123", "13047", "17850"]
    assert tx.accounting().ids_normalized == 4 and "ids like 17850.0" in tx.accounting().format()
    kept = load_transactions(path, normalize_ids=False)
    assert "17850.0" in set(kept.to_pandas()["customer_id"]) and kept.accounting().ids_normalized == 0
    mixed = tmp_path / "mixed.csv"
    pd.DataFrame(
        {"customer_id": ["17850.0", "A-1"], "date": ["2011-01-01"] * 2, "amount": [1.0, 2.0]}
    ).to_csv(mixed, index=False)
    assert sorted(load_transactions(mixed).to_pandas()["customer_id"]) == ["17850.0", "A-1"]


def test_duplicate_summary_follows_the_option_in_force(tmp_path):
    path = tmp_path / "tx.csv"
    pd.DataFrame({"customer_id": ["a", "a"], "date": ["2011-01-01"] * 2, "amount": [1.0, 1.0]}).to_csv(
        path, index=False
    )
    assert "(kept; drop_duplicates quarantines them)" in load_transactions(path).accounting().format()
    dropped = load_transactions(path, drop_duplicates=True).accounting().format()
    assert "(quarantined as duplicate)" in dropped and "kept" not in dropped


def test_line_items_derive_the_amount_and_orders_are_counted_once(tmp_path):
    """One row per product line (quantity, unit price, optional discount): amount is derived,
    and purchases count orders, so the average order value is per order."""
    path = tmp_path / "lines.csv"
    pd.DataFrame({
        "InvoiceNo": ["536365", "536365", "536366", "536367"],
        "CustomerID": ["17850.0"] * 4,
        "InvoiceDate": ["2010-12-01 08:26", "2010-12-01 08:26", "2010-12-02 09:00", "2010-12-03 10:00"],
        "Quantity": [6, 2, 3, 1],
        "UnitPrice": ["2.55", "3.39", "1.50", "10"],
        "Discount": ["", "0.78", "", "2.5"],
    }).to_csv(path, index=False)
    columns = "customer_id=CustomerID,date=InvoiceDate,order_id=InvoiceNo,quantity=Quantity," \
              "unit_price=UnitPrice,discount=Discount"
    tx = load_transactions(path, columns=columns)
    assert tx.to_pandas()["amount"].round(2).tolist() == [15.30, 6.00, 4.50, 7.50]
    assert "amount derived as   quantity x unit_price - discount" in tx.accounting().format()
    f = customer_features(tx, as_of="2010-12-31")
    assert f["frequency_count"].tolist() == [3] and f["monetary_total"].round(2).tolist() == [33.30]
    assert f["avg_order_value"].round(2).tolist() == [11.10]
    assert "unit_price_mean" not in f.columns  # prices make the amount, they are no covariate
    with pytest.raises(InputError, match="amount is derived as quantity x unit_price, but there is no"):
        load_transactions(path, columns="customer_id=CustomerID,date=InvoiceDate,unit_price=UnitPrice")


def test_lines_excluded_by_code_are_quarantined_as_excluded(tmp_path):
    from typer.testing import CliRunner

    from clvtier.cli import app
    from clvtier.config import parse_config

    path = tmp_path / "lines.csv"
    pd.DataFrame({
        "customer_id": ["a", "", "b", "c", "c"],
        "date": ["2011-01-01"] * 5,
        "amount": [10.0, 5.0, 3.0, 4.0, 2.0],
        "StockCode": ["85123A", "POST", "M", "22423", "BANK CHARGES"],
    }).to_csv(path, index=False)
    tx = load_transactions(path, exclude={"StockCode": ["POST", "M", "BANK CHARGES"]})
    acc = tx.accounting()
    assert acc.quarantined == {"excluded": 3} and acc.rows_used == 2 and acc.balanced()
    assert set(tx.rejects()["reason"]) == {"excluded"}
    spec = parse_config({"experiment": "x", "data": {"path": str(path), "exclude": {"StockCode": ["POST"]}},
                         "split": {"holdout_last": 1}, "models": {"bgnbd_gg": {}},
                         "tiering": {"clv_model": "bgnbd_gg"}}).data.spec
    assert load_transactions(path, spec).accounting().quarantined == {"excluded": 1}
    result = CliRunner().invoke(app, ["features", "-i", str(path), "--as-of", "2011-01-31", "-o",
                                      str(tmp_path / "f.csv"), "--exclude", "StockCode=POST,M",
                                      "--exclude", "StockCode=BANK CHARGES"])
    assert result.exit_code == 0, result.output
    assert "excluded" in result.output and "3" in result.output.split("excluded")[1].split("\n")[0]
    with pytest.raises(InputError, match="Stock"):
        load_transactions(path, exclude={"Stock": ["POST"]})


def test_exact_duplicates_are_judged_on_every_source_column(tmp_path):
    """Two products with the same quantity and price on one invoice are two lines, not a copy."""
    path = tmp_path / "lines.csv"
    lines = pd.DataFrame({
        "InvoiceNo": ["536365"] * 3 + ["536366"],
        "StockCode": ["85123A", "71053", "84406B", "22633"],
        "Description": ["WHITE HANGING HEART", "WHITE METAL LANTERN", "CREAM CUPID HEARTS", "HAND WARMER"],
        "Quantity": [6, 6, 6, 6],
        "UnitPrice": [2.55, 2.55, 2.55, 1.85],
        "CustomerID": ["17850.0"] * 4,
        "InvoiceDate": ["2010-12-01 08:26"] * 3 + ["2010-12-01 08:28"],
    })
    lines.to_csv(path, index=False)
    columns = ("customer_id=CustomerID,date=InvoiceDate,order_id=InvoiceNo,quantity=Quantity,"
               "unit_price=UnitPrice")
    assert load_transactions(path, columns=columns).accounting().duplicates_found == 0
    pd.concat([lines, lines.iloc[[1, 3]]]).to_csv(path, index=False)  # two true copies
    assert load_transactions(path, columns=columns).accounting().duplicates_found == 2
    dropped = load_transactions(path, columns=columns, drop_duplicates=True).accounting()
    assert dropped.quarantined == {"duplicate": 2} and dropped.rows_used == 4
