"""Readers: CSV, Parquet, Excel and pandas DataFrames into a DuckDB table of raw mapped columns.

Nothing here interprets values: every source column keeps its native type (or VARCHAR for CSV),
renamed to clvtier's vocabulary, with the row's position in the source in ``source_line``.
Validation and quarantine live in :mod:`clvtier.data.schema`.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import duckdb
import pandas as pd
from pydantic import Field, ValidationError, field_validator

from clvtier.errors import EmptyInputError, InputError, MissingColumnError
from clvtier.settings import Settings

REQUIRED = ("customer_id", "date", "amount")
OPTIONAL = ("order_id", "quantity", "profit", "satisfaction", "unit_price", "discount",
            "original_order_id")
#: Line-item columns: with no amount, amount = quantity x unit_price - discount.
LINE_ITEM = ("unit_price", "discount")
#: Optional columns read as text (identifiers), never as numbers or features.
ORDER_COLUMNS = ("order_id", "original_order_id")
_SNIFF_BYTES = 1 << 20
_CSV_SUFFIXES = {".csv", ".txt", ".tsv", ".dat"}
_EXCEL_SUFFIXES = {".xlsx", ".xlsm"}
_PARQUET_SUFFIXES = {".parquet", ".pq"}


@dataclass(frozen=True)
class ColumnMap:
    """Map clvtier's column names to the user's.

    Parameters
    ----------
    mapping : dict
        ``{clvtier_name: source_name}``. Keys ``customer_id``, ``date``, ``amount`` are required
        (each defaults to a source column of the same name); ``order_id``, ``quantity``,
        ``profit``, ``satisfaction``, ``unit_price``, ``discount`` and ``original_order_id`` (the
        order a return line takes back) are optional and used when mapped or present under their
        own name. Any other key names a numeric covariate, e.g. ``{"credit": "信用评级"}``.
    """

    mapping: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> ColumnMap:
        """Parse ``"customer_id=客户ID,date=交易日期"`` (the CLI's ``--columns``)."""
        mapping: dict[str, str] = {}
        for part in (text or "").split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise InputError("columns", f"expected name=source_column, got {part.strip()!r}")
            mapping[key.strip()] = value.strip()
        return cls(mapping)

    def resolve(self, source: str, found: list[str]) -> dict[str, str]:
        """Return ``{clvtier_name: source_name}`` for every column that will be used."""
        resolved: dict[str, str] = {}
        line_items = "amount" not in self.mapping and "amount" not in found and (
            self.mapping.get("unit_price", "unit_price") in found)
        for name in REQUIRED:
            if name == "amount" and line_items:
                continue  # derived from quantity x unit_price (- discount)
            src = self.mapping.get(name, name)
            if src not in found:
                raise MissingColumnError(source, name, found,
                                         mapped_from=None if src == name else src)
            resolved[name] = src
        for name in OPTIONAL:
            src = self.mapping.get(name)
            if src is None and name in found:
                src = name
            if src is not None:
                if src not in found:
                    raise MissingColumnError(source, src, found)
                resolved[name] = src
        for name, src in self.mapping.items():
            if name in resolved:
                continue
            if not name.isidentifier():
                raise InputError(source, f"covariate name {name!r} must be a plain identifier")
            if src not in found:
                raise MissingColumnError(source, src, found)
            resolved[name] = src
        if line_items and "quantity" not in resolved:
            raise InputError(source, "amount is derived as quantity x unit_price, but there is no quantity "
                                     "column; map one (quantity=<column>) or map amount")
        return resolved


RETURNS_POLICIES = ("net", "net-earlier", "keep", "quarantine")


class LoadSpec(Settings):
    """How to read, map and clean a transactions source: the one declaration of every reader
    option, used by the experiment config's ``data:``, every command and
    :func:`~clvtier.data.load_transactions`.

    Parameters
    ----------
    columns : dict or str, optional
        ``{clvtier_name: source_column}`` (see :class:`ColumnMap`), or the CLI's
        ``"customer_id=客户ID,date=交易日期"``.
    delimiter : str or None, default=None
        CSV field separator; ``None`` lets DuckDB's sniffer detect it.
    decimal : {"auto", ".", ","}, default="auto"
        Decimal mark of numeric text. ``"auto"`` picks ``","`` only when the delimiter is not a
        comma and no amount contains a dot but some contain a comma.
    encoding : str or None, default=None
        Text encoding. ``None`` detects UTF-8 (with or without BOM); anything else must be named
        (``"gb18030"``, ``"latin-1"``, ...), because guessing between them is not safe.
    sheet : str or int or None, default=None
        Excel sheet name or 0-based index; ``None`` reads the first sheet.
    date_format : str or None, default=None
        strftime format for dates (e.g. ``"%d/%m/%Y"``, ``"%Y%m%d"``), or ``"excel"`` for Excel
        serial numbers outside a workbook. ``None`` accepts ISO dates and times, and serial
        numbers only in the cells of an .xlsx file (a bare ``1997`` is not a date).
    returns : {"net", "net-earlier", "keep", "quarantine"}, default="net"
        Negative amounts are returns. ``"net"`` subtracts them from the same customer's
        purchases that day (a return on a day without purchases, or exceeding them, is
        quarantined). ``"net-earlier"`` subtracts each return from the order it takes back (see
        ``return_prefix`` and the ``original_order_id`` column), then from the customer's
        purchases of the ``return_window`` days up to the return, most recent first; a return
        takes effect on its own date (features as of an earlier date do not see it), and what
        cannot be matched is quarantined as ``unmatched_return`` with the amount left over.
        ``"keep"`` keeps them as they are; ``"quarantine"`` quarantines them.
    return_window : int, default=90
        Days before a return (``"net-earlier"``) in which it looks for purchases to reduce.
    return_prefix : str, optional
        With ``order_id`` mapped: a return whose order id is this prefix plus another order's
        id (``C536379`` with ``"C"``) takes back that order first (``"net-earlier"``).
    drop_duplicates : bool, default=False
        Exact duplicate rows (equal in every column of the source, mapped or not) are always
        counted; with True every copy after the first is quarantined as ``duplicate``.
    max_amount : float, optional
        Rows whose absolute amount exceeds it (a positive number) are quarantined as
        ``amount_out_of_range``.
    exclude : dict of str to list of str, optional
        ``{source_column: [value, ...]}``: rows whose column holds one of the values (as text,
        trimmed) are not purchases (postage, fees, manual adjustments) and are quarantined with
        reason ``excluded``. The column need not be mapped.
    normalize_ids : bool, default=True
        When every customer id is an integral number written with a trailing ``.0`` (``17850.0``,
        as spreadsheets export integer ids), use the integer text (``17850``); ids are otherwise
        kept as written (leading zeros stay).
    """

    columns: dict[str, str] = Field(default_factory=dict)
    delimiter: str | None = None
    decimal: Literal["auto", ".", ","] = "auto"
    encoding: str | None = None
    sheet: str | int | None = None
    date_format: str | None = None
    returns: Literal[RETURNS_POLICIES] = "net"
    return_window: int = Field(90, ge=0, le=36_500)
    return_prefix: str | None = Field(None, min_length=1)
    drop_duplicates: bool = False
    max_amount: float | None = Field(None, gt=0, allow_inf_nan=False)
    exclude: dict[str, list[str]] = Field(default_factory=dict)
    normalize_ids: bool = True

    @field_validator("columns", mode="before")
    @classmethod
    def _parse_columns(cls, value):
        if value is None:
            return {}
        if isinstance(value, ColumnMap):
            return dict(value.mapping)
        return ColumnMap.parse(value).mapping if isinstance(value, str) else value

    @field_validator("exclude", mode="before")
    @classmethod
    def _parse_exclude(cls, value):
        """Also ``["StockCode=POST,M", ...]`` (the CLI's repeatable ``--exclude``)."""
        if value is None:
            return {}
        if isinstance(value, list | tuple):
            out: dict[str, list[str]] = {}
            for item in value:
                column, sep, values = str(item).partition("=")
                if not sep or not column.strip() or not values.strip():
                    raise ValueError(f"write COLUMN=VALUE[,VALUE...], e.g. StockCode=POST,M; got {item!r}")
                out.setdefault(column.strip(), []).extend(v.strip() for v in values.split(","))
            return out
        return value

    @field_validator("sheet", mode="before")
    @classmethod
    def _sheet_index(cls, value):
        return int(value) if isinstance(value, str) and value.isdigit() else value

    @classmethod
    def of(cls, spec: LoadSpec | None = None, **fields) -> LoadSpec:
        """``spec`` with ``fields`` replaced (validated); errors name the field, without CLI flags."""
        tree = {**(spec.model_dump(include=set(cls.model_fields)) if spec else {}), **fields}
        try:
            return cls.model_validate(tree)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(map(str, err["loc"])) or "load spec"
            if err["type"] == "literal_error":
                msg = f"valid options are {err['ctx']['expected']}"
            else:
                msg = "unknown option" if err["type"] == "extra_forbidden" else err["msg"]
            problem = f"{msg.removeprefix('Value error, ')}; got {err.get('input')!r}"
            raise InputError(where, problem) from None

    @property
    def column_map(self) -> ColumnMap:
        return ColumnMap(dict(self.columns))


@dataclass
class RawTable:
    """A source loaded into DuckDB as a view ``raw`` of mapped, uninterpreted columns.

    ``source_line`` is the 1-based line (CSV, counting the header as line 1), the sheet row
    (Excel), or the 1-based row number (Parquet, DataFrame). ``malformed`` holds CSV lines that
    could not be split into the header's columns: (line, text, error).
    """

    con: duckdb.DuckDBPyConnection
    source: str
    columns: dict[str, str]
    decimal: str
    malformed: pd.DataFrame
    _tmpdir: tempfile.TemporaryDirectory | None = None
    #: "csv", "excel", "parquet" or "frame": Excel serial dates are read only from Excel cells
    kind: str = "csv"
    #: The time zone the date column's timestamps carry in the source (Parquet, DataFrame), if any
    date_zone: str | None = None
    #: Raw-view alias -> source column of each column that ``exclude`` looks at
    excluded: dict[str, str] = field(default_factory=dict)

    def close_temp(self) -> None:
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None


def read_raw(source, spec: LoadSpec | None = None, *,
             con: duckdb.DuckDBPyConnection | None = None) -> RawTable:
    """Load ``source`` (path or DataFrame) into a DuckDB view named ``raw``.

    Raises
    ------
    InputError
        Unreadable or non-tabular file, unknown format, missing column, empty input.
    """
    options = spec or LoadSpec()
    columns = options.column_map
    con = con or duckdb.connect()
    tmpdir = None
    malformed = pd.DataFrame({"line": pd.Series([], dtype="int64"), "text": [], "error": []})

    kind = "csv"
    if isinstance(source, pd.DataFrame):
        name, kind = "<DataFrame>", "frame"
        try:
            con.register("_source_df", source)
        except duckdb.Error:  # e.g. a reversed view (negative strides), which DuckDB cannot scan
            con.register("_source_df", source.copy())
        scan = "SELECT row_number() OVER () AS source_line, * FROM _source_df"
        found = [str(c) for c in source.columns]
    else:
        path = Path(source)
        name = str(path)
        if not path.exists():
            raise InputError(name, "file not found")
        if path.is_dir():
            raise InputError(name, "is a directory, not a file")
        if path.stat().st_size == 0:
            raise EmptyInputError(name, "file is empty")
        suffix = path.suffix.lower()
        if suffix in _PARQUET_SUFFIXES:
            kind = "parquet"
            scan = (f"SELECT file_row_number + 1 AS source_line, * EXCLUDE (file_row_number) "
                    f"FROM read_parquet({sql_literal(path)}, file_row_number=true)")
        elif suffix in _EXCEL_SUFFIXES:
            kind = "excel"
            frame = _read_excel(path, options.sheet)
            con.register("_source_df", frame)
            # Row 1 of the sheet is the header.
            scan = "SELECT row_number() OVER () + 1 AS source_line, * FROM _source_df"
        elif suffix in _CSV_SUFFIXES:
            csv_path, tmpdir = _utf8_path(path, options.encoding)
            scan, malformed = _csv_scan(con, name, csv_path, options.delimiter)
        elif suffix == ".xls":
            raise InputError(name, "legacy .xls is not supported; save the sheet as .xlsx or CSV")
        else:
            raise InputError(name, f"unknown file type {suffix or '(no extension)'}; "
                                   "expected .csv, .txt, .tsv, .parquet or .xlsx")
        try:
            found = con.sql(f"SELECT * FROM ({scan}) LIMIT 0").columns[1:]
        except duckdb.Error as exc:
            raise InputError(name, f"cannot read as a table: {_first_line(exc)}") from None

    resolved = columns.resolve(name, found)
    zone = _date_zone(source, resolved["date"], kind)
    select = ", ".join(f"{sql_ident(src)} AS {sql_ident(dst)}" for dst, src in resolved.items())
    missing = [c for c in options.exclude if c not in found]
    if missing:
        raise MissingColumnError(name, missing[0], found)
    excluded = {f"_exclude_{i}": column for i, column in enumerate(options.exclude)}
    select += "".join(f", {sql_ident(src)} AS {alias}" for alias, src in excluded.items())
    # a row is an exact duplicate only when it equals another in every column of the source
    select += f", hash({', '.join(sql_ident(c) for c in found)}) AS _row_hash"
    con.execute(f"CREATE OR REPLACE TEMP VIEW raw AS SELECT source_line, {select} FROM ({scan})")
    decimal = options.decimal
    if decimal == "auto":
        decimal = _detect_decimal(con, options.delimiter, "amount" if "amount" in resolved else "unit_price")
    return RawTable(con=con, source=name, columns=resolved, decimal=decimal, kind=kind, date_zone=zone,
                    malformed=malformed, _tmpdir=tmpdir, excluded=excluded)


def _date_zone(source, column: str, kind: str) -> str | None:
    """The time zone of a source's timestamp column, as the source itself records it."""
    if kind == "frame":
        return str(getattr(source[column].dtype, "tz", None) or "") or None
    if kind == "parquet":
        import pyarrow.parquet as pq

        field = pq.read_schema(source).field(column)
        return getattr(field.type, "tz", None)
    return None


def _csv_scan(con, name: str, path: Path, delimiter: str | None):
    # RFC 4180 quoting, always: the sniffer only samples the first rows, so a quoted field further
    # down ("a,b", doubled quotes, a line break inside quotes) would otherwise be misread
    args = ["all_varchar=true", "header=true", "store_rejects=true", "quote='\"'", "escape='\"'"]
    if delimiter is not None:
        args.append(f"delim={sql_literal(delimiter)}")
    reader = f"read_csv({sql_literal(path)}, {', '.join(args)})"
    try:
        # Materialise once: the reject tables are filled by the scan, and every later
        # query reads the table instead of re-parsing the file.
        con.execute(f"CREATE OR REPLACE TEMP TABLE _csv AS "
                    f"SELECT row_number() OVER () AS _good_row, * FROM {reader}")
    except duckdb.Error as exc:
        raise InputError(name, f"cannot read as CSV: {_first_line(exc)}") from None
    rejects = con.sql("SELECT line, csv_line AS text, error_message AS error FROM reject_errors "
                      "WHERE scan_id = (SELECT max(scan_id) FROM reject_scans) ORDER BY line").df()
    rejects = rejects.drop_duplicates("line").reset_index(drop=True)
    if rejects.empty:
        line = "_good_row + 1"
    else:
        # A good row's line is shifted by every rejected line before it: reject j (1-based,
        # in line order) has line_j - j - 1 good rows before it.
        shifts = pd.DataFrame({"good_before": rejects["line"] - rejects.index - 2})
        con.register("_shifts", shifts)
        line = ("_good_row + 1 + (SELECT count(*) FROM _shifts "
                "WHERE _shifts.good_before < _csv._good_row)")
    rejects["line"] = rejects["line"].astype("int64")
    scan = f"SELECT {line} AS source_line, * EXCLUDE (_good_row) FROM _csv"
    return scan, rejects


def _read_excel(path: Path, sheet) -> pd.DataFrame:
    try:
        frame = pd.read_excel(path, sheet_name=0 if sheet is None else sheet, dtype=object,
                              engine="openpyxl")
    except ValueError as exc:  # unknown sheet
        raise InputError(str(path), _first_line(exc)) from None
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many types for non-workbooks
        raise InputError(str(path), f"cannot read as an Excel workbook: {_first_line(exc)}") from None
    if frame.columns.empty:
        raise EmptyInputError(str(path), f"sheet {sheet if sheet is not None else 0!r} is empty")
    frame.columns = [str(c) for c in frame.columns]
    # Mixed Python objects (datetime, int, str) become text, interpreted later like CSV text.
    for col in frame.columns:
        frame[col] = frame[col].map(_cell_text).astype("string")
    return frame


def _cell_text(value):
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp) or hasattr(value, "isoformat"):
        return value.isoformat(sep=" ") if hasattr(value, "hour") else value.isoformat()
    return str(value)


def _utf8_path(path: Path, encoding: str | None):
    """Return a path DuckDB can read as UTF-8, transcoding to a temp file when needed."""
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    if b"\x00" in head[:4096] and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InputError(str(path), "is binary, not a text table")
    if encoding is None:
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            encoding = "utf-16"
        else:
            try:
                head.decode("utf-8")
            except UnicodeDecodeError as exc:
                if exc.start < len(head) - 4:  # not just a character cut at the sniff boundary
                    raise InputError(str(path), "is not UTF-8; name its encoding, e.g. gb18030 "
                                     "or latin-1") from None
            return path, None
    try:
        codec = codecs.lookup(encoding)
    except LookupError:
        raise InputError(str(path), f"unknown encoding {encoding!r}") from None
    if codec.name in ("utf-8", "utf-8-sig"):
        return path, None  # DuckDB reads UTF-8 and skips a BOM itself
    tmpdir = tempfile.TemporaryDirectory(prefix="clvtier-")
    out = Path(tmpdir.name) / "utf8.csv"
    try:
        with open(path, encoding=codec.name, errors="strict", newline="") as src, \
                open(out, "w", encoding="utf-8", newline="") as dst:
            while chunk := src.read(1 << 22):
                dst.write(chunk)
    except UnicodeDecodeError as exc:
        tmpdir.cleanup()
        raise InputError(str(path), f"cannot be decoded as {encoding}: byte {exc.start} "
                                    f"of a chunk is invalid") from None
    except UnicodeError as exc:  # e.g. "UTF-16 stream does not start with BOM"
        tmpdir.cleanup()
        raise InputError(str(path), f"cannot be decoded as {encoding} ({exc})") from None
    return out, tmpdir


def _detect_decimal(con, delimiter: str | None, column: str = "amount") -> str:
    kind = con.sql(f"SELECT typeof({sql_ident(column)}) FROM raw LIMIT 1").fetchall()
    if not kind or kind[0][0] != "VARCHAR":
        return "."
    if delimiter == ",":
        return "."
    dots, commas = con.execute(
        f"SELECT count(*) FILTER (WHERE contains({sql_ident(column)}, '.')), "
        f"count(*) FILTER (WHERE contains({sql_ident(column)}, ',')) FROM raw").fetchall()[0]
    return "," if commas and not dots else "."


def sql_ident(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


#: Money is summed in decimals with this many places: exact, so no sum depends on row order.
SUM_DECIMALS = 6


def exact_sum(expr: str, where: str | None = None) -> str:
    """SQL for the sum of ``expr`` (optionally ``FILTER (WHERE where)``) computed exactly in
    ``DECIMAL(38, 6)`` and returned as DOUBLE: floating-point sums change in the last bits with
    the order rows arrive in (threads, shuffled files); this one never does."""
    filtered = f" FILTER (WHERE {where})" if where else ""
    return f"CAST(sum(CAST({expr} AS DECIMAL(38, {SUM_DECIMALS}))){filtered} AS DOUBLE)"


def sql_literal(value) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_no_overlap(reads: dict, writes: dict) -> None:
    """Refuse, before any work, an output that is also an input or another output (compared as
    resolved paths, so ``./t.csv`` and ``t.csv`` are the same file). ``reads`` and ``writes`` map
    what a path is (e.g. "transactions", "output") to the path, or None."""
    seen: dict[Path, str] = {}
    for role, path in reads.items():
        if path is not None and not isinstance(path, pd.DataFrame):
            seen.setdefault(Path(path).resolve(), role)
    for role, path in writes.items():
        if path is None:
            continue
        resolved = Path(path).resolve()
        if resolved in seen:
            problem = f"is both the {seen[resolved]} and the {role}: refusing to overwrite it"
            raise InputError(str(path), problem)
        seen[resolved] = role


def output_format(path) -> str:
    """``"csv"`` or ``"parquet"`` from a path's extension, else an InputError."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in _PARQUET_SUFFIXES:
        return "parquet"
    raise InputError(str(path), f"output must end in .csv or .parquet, got {suffix or 'none'}")


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temp path beside ``path``; rename it onto ``path`` only if the block succeeds,
    so a crash or kill never leaves a partial file under the real name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # hidden, and ending like the real name so readers that go by the extension can read it
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs follow the user's umask
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: A text cell starting with one of these is run as a formula by spreadsheet programs.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a leading ``'`` on every text cell that a spreadsheet would read as a
    formula (starting with ``= + - @``, tab or carriage return); numbers are untouched."""
    out = None
    for column in frame.columns:
        values = frame[column]
        if values.dtype.kind in "biufcmMb":
            continue
        text = values.astype("string")
        risky = text.str.startswith(FORMULA_STARTS).fillna(False).to_numpy(dtype=bool)
        if risky.any():
            out = frame.copy() if out is None else out
            out[column] = values.where(~risky, "'" + text)
    return frame if out is None else out


def write_frame(frame: pd.DataFrame, path, *, escape_formulas: bool = True) -> Path:
    """Write ``frame`` as CSV or Parquet (by extension) atomically. In CSV, text cells that a
    spreadsheet would run as formulas get a leading ``'`` unless ``escape_formulas=False``;
    Parquet keeps every value as it is."""
    fmt = output_format(path)
    with atomic_output(path) as tmp:
        if fmt == "csv":
            (spreadsheet_safe(frame) if escape_formulas else frame).to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
    return Path(path)
