"""Bad inputs: each gives its exact error (library) or one stderr line and exit 2 (CLI)."""

import pandas as pd
import pytest

from clvtier.data import ColumnMap, LoadSpec, load_transactions
from clvtier.errors import EmptyInputError, InputError, MissingColumnError

GOOD = "customer_id,date,amount\n1,2020-01-01,10\n"


def _file(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "name, content, kwargs, error, message",
    [
        ("empty.csv", "", {}, EmptyInputError, r"empty\.csv: file is empty"),
        ("header.csv", "customer_id,date,amount\n", {}, EmptyInputError,
         r"header\.csv: has a header but no data rows"),
        ("missing.csv", "customer_id,day,amount\n1,2020-01-01,3\n", {}, MissingColumnError,
         r"missing\.csv: required column 'date' is missing; columns found: 'customer_id', "
         r"'day', 'amount'"),
        ("mapped.csv", "客户ID,交易日期,金额\n1,2020-01-01,3\n",
         {"columns": {"customer_id": "客户ID", "date": "交易日期", "amount": "交易金额"}},
         MissingColumnError,
         r"required column '交易金额' \(mapped to amount\) is missing; columns found: "
         r"'客户ID', '交易日期', '金额'"),
        ("opt.csv", GOOD, {"columns": {"profit": "margin"}}, MissingColumnError,
         r"opt\.csv: required column 'margin' is missing"),
        ("data.bin", b"\x00\x01\x02binary", {}, InputError,
         r"data\.bin: unknown file type \.bin"),
        ("binary.csv", b"PK\x03\x04\x00\x00\x00\x08binary\x00\x00", {}, InputError,
         r"binary\.csv: is binary, not a text table"),
        ("gbk.csv", "客户ID,日期,金额\n1,2020-01-01,3\n".encode("gb18030"), {}, InputError,
         r"gbk\.csv: is not UTF-8; name its encoding, e.g. gb18030"),
        ("latin.csv", b"customer_id,date,amount\nM\xfcller,2020-01-01,3\n",
         {"spec": LoadSpec(encoding="ascii")}, InputError,
         r"latin\.csv: cannot be decoded as ascii"),
        ("enc.csv", GOOD, {"spec": LoadSpec(encoding="klingon")}, InputError,
         r"enc\.csv: unknown encoding 'klingon'"),
        ("all_bad.csv", "customer_id,date,amount\n1,soon,3\n2,later,4\n", {}, EmptyInputError,
         r"all_bad\.csv: no valid rows: all 2 rows quarantined \(most often bad_date"),
        ("old.xls", b"\xd0\xcf\x11\xe0 old excel", {}, InputError,
         r"old\.xls: legacy \.xls is not supported"),
        ("fake.xlsx", b"not a zip at all", {}, InputError,
         r"fake\.xlsx: cannot read as an Excel workbook"),
        ("fake.parquet", b"not parquet", {}, InputError,
         r"fake\.parquet: cannot read as a table"),
    ],
)
def test_bad_input_raises_exact_error(tmp_path, name, content, kwargs, error, message):
    path = _file(tmp_path, name, content)
    with pytest.raises(error, match=message):
        load_transactions(path, **kwargs)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match=r"nope\.csv: file not found"):
        load_transactions(tmp_path / "nope.csv")
    with pytest.raises(InputError, match=r"is a directory, not a file"):
        load_transactions(tmp_path)


def test_unknown_sheet(tmp_path):
    path = tmp_path / "book.xlsx"
    pd.DataFrame({"customer_id": [1], "date": ["2020-01-01"], "amount": [1.0]}).to_excel(
        path, index=False, sheet_name="tx")
    with pytest.raises(InputError, match=r"book\.xlsx: Worksheet named 'other' not found"):
        load_transactions(path, spec=LoadSpec(sheet="other"))


@pytest.mark.parametrize("text, message", [
    ("customer_id", r"expected name=source_column, got 'customer_id'"),
    ("customer_id=", r"expected name=source_column, got 'customer_id='"),
])
def test_bad_column_mapping(text, message):
    with pytest.raises(InputError, match=message):
        ColumnMap.parse(text)


@pytest.mark.parametrize("kwargs, message", [
    ({"returns": "ignore"},
     r"returns: valid options are 'net', 'net-earlier', 'keep' or 'quarantine'; got 'ignore'"),
    ({"columns": {"2x": "amount"}}, r"covariate name '2x' must be a plain identifier"),
])
def test_bad_options(tmp_path, kwargs, message):
    path = _file(tmp_path, "ok.csv", GOOD)
    with pytest.raises(InputError, match=message):
        load_transactions(path, **kwargs)


def test_bad_decimal_option():
    with pytest.raises(InputError, match=r"decimal: valid options are 'auto', '\.' or ','; got ';'"):
        LoadSpec.of(decimal=";")
