"""Validation and quarantine of transactions, and the row accounting.

Every row read ends in exactly one place: used (dated on or before ``as_of``), after ``as_of``
(future data for that analysis), or quarantined with a reason code. The typed rows live in one
DuckDB table with a ``status`` column ("ok" or a reason code), so the accounting is a count by
status and cannot disagree with what the features read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from clvtier.data.dialect import DUCKDB, Dialect
from clvtier.data.io import (
    LINE_ITEM,
    ORDER_COLUMNS,
    RETURNS_POLICIES,
    SUM_DECIMALS,
    LoadSpec,
    RawTable,
    exact_sum,
    read_raw,
    sql_ident,
    sql_literal,
    write_frame,
)
from clvtier.errors import EmptyInputError, InputError

#: Reason codes of quarantined rows, with what they mean.
REASONS: dict[str, str] = {
    "malformed_row": "the line does not split into the header's columns",
    "excluded": "a line that is no purchase by its code (exclude, e.g. postage or fees)",
    "missing_customer_id": "customer id is empty",
    "bad_customer_id": "numeric customer id is not a whole number",
    "bad_date": "date is empty or cannot be parsed",
    "date_out_of_range": "date is before 1900-01-01 or after 2199-12-31",
    "bad_amount": "amount is empty, not a number, NaN or infinite",
    "amount_out_of_range": "absolute amount is above max_amount, or above 1e15 in any case",
    "negative_amount": "a return, and the returns policy is 'quarantine'",
    "unmatched_return": "a return with no purchase to take back: none that day (policy 'net'), or "
                        "not enough in the return_window days before it ('net-earlier', which "
                        "nets what it can and reports the amount left over)",
    "return_exceeds_purchases": "the day's returns exceed its purchases (policy 'net')",
    "duplicate": "exact copy of an earlier row (drop_duplicates=True)",
    "bad_<column>": "an optional numeric column holds text that is not a number",
}
_NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                  "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE")
#: Largest absolute amount clvtier accepts: beyond it sums lose cent precision or overflow.
AMOUNT_LIMIT = 1e15
_CURRENCY = "¥$€£￥"


@dataclass(frozen=True)
class Accounting:
    """Where the rows went, for one ``as_of``. ``rows_read`` is counted where the source is read
    (rows loaded plus malformed lines), the rest by status afterwards; :meth:`balanced` checks
    that they agree."""

    source: str
    as_of: dt.date | None
    rows_read: int
    rows_used: int
    rows_after_as_of: int
    quarantined: dict[str, int] = field(default_factory=dict)
    duplicates_found: int = 0
    returns_netted: int = 0
    ids_normalized: int = 0
    amount_derived: str | None = None
    #: Sums of valid amounts (finite, within the amount limit) by where they went: ``read`` =
    #: ``used`` (purchases on or before as_of) + ``netted`` (returns subtracted from purchases
    #: by as_of) + ``after_as_of`` + ``quarantined`` (for a return netted in part, the amount
    #: left over).
    amounts: dict[str, float] = field(default_factory=dict)

    @property
    def rows_quarantined(self) -> int:
        return sum(self.quarantined.values())

    def balanced(self) -> bool:
        return self.rows_read == self.rows_used + self.rows_after_as_of + self.rows_quarantined

    def as_dict(self) -> dict:
        out = {"source": self.source, "as_of": str(self.as_of), "rows_read": self.rows_read,
               "rows_used": self.rows_used, "rows_after_as_of": self.rows_after_as_of,
               "rows_quarantined": self.rows_quarantined}
        out.update({f"quarantined_{k}": v for k, v in sorted(self.quarantined.items())})
        out["duplicates_found"] = self.duplicates_found
        out["returns_netted"] = self.returns_netted
        out.update({f"amount_{k}": v for k, v in self.amounts.items()})
        return out

    def format(self) -> str:
        """A short plain-text summary for people."""
        lines = [f"rows read           {self.rows_read:>12,}",
                 f"  used              {self.rows_used:>12,}",
                 f"  after as_of       {self.rows_after_as_of:>12,}   (as_of {self.as_of})",
                 f"  quarantined       {self.rows_quarantined:>12,}"]
        lines += [f"    {k:<22}{v:>10,}" for k, v in sorted(self.quarantined.items())]
        if self.duplicates_found:
            what = ("quarantined as duplicate" if "duplicate" in self.quarantined
                    else "kept; drop_duplicates quarantines them")
            lines.append(f"exact duplicate rows {self.duplicates_found:>11,}   ({what})")
        if self.amount_derived:
            lines.append(f"amount derived as   {self.amount_derived}")
        if self.ids_normalized:
            lines.append(f"ids like 17850.0    {self.ids_normalized:>12,}   (read as 17850; "
                         "normalize_ids=False keeps them as written)")
        if self.returns_netted:
            lines.append(f"returns netted      {self.returns_netted:>12,}   (rows; "
                         f"{-self.amounts.get('netted', 0.0):,.2f} of revenue taken back by as_of)")
        if self.amounts.get("quarantined"):
            lines.append(f"amount quarantined  {self.amounts['quarantined']:>15,.2f}")
        return "\n".join(lines)


#: Where valid amounts go (:attr:`Accounting.amounts`), in the order :func:`amounts_sql` sums them.
AMOUNT_PLACES = ("read", "used", "netted", "after_as_of", "quarantined")


def amounts_sql(as_of: dt.date, d: Dialect = DUCKDB) -> str:
    """One row: the valid amounts of ``tx`` summed exactly by destination (:data:`AMOUNT_PLACES`)."""
    day = f"DATE {sql_literal(as_of)}"
    dec = f"DECIMAL(38, {SUM_DECIMALS})"
    part = (f"CASE WHEN tx.status = 'ok' AND tx.amount < 0 THEN CAST(tx.amount AS {dec}) "
            f"ELSE CAST(coalesce(n.netted, 0) AS {dec}) END")
    rest = f"CAST(tx.amount AS {dec}) - {part}"
    cols = {"read": (f"CAST(tx.amount AS {dec})", "TRUE"),
            "used": (rest, f"tx.status = 'ok' AND tx.date <= {day}"),
            "netted": (part, f"tx.date <= {day}"),
            "after_as_of": (f"CASE WHEN tx.status = 'ok' THEN CAST(tx.amount AS {dec}) ELSE {part} END",
                            f"tx.date > {day}"),
            "quarantined": (rest, "tx.status <> 'ok'")}
    assert tuple(cols) == AMOUNT_PLACES
    sums = ", ".join(f"CAST(coalesce(sum({expr}) FILTER (WHERE {where}), 0) AS DOUBLE)"
                     for expr, where in cols.values())
    return f"""
        SELECT {sums} FROM tx
        LEFT JOIN (SELECT source_line, sum(amount) AS netted FROM netting GROUP BY source_line) n
            ON n.source_line = tx.source_line
        WHERE tx.amount IS NOT NULL AND {d.isfinite("tx.amount")} AND abs(tx.amount) <= {AMOUNT_LIMIT!r}"""


@dataclass
class Transactions:
    """Validated transactions held in DuckDB (table ``tx``), with the rejects and accounting.

    Build it with :func:`load_transactions`. Columns of ``tx``: ``source_line``, ``status``
    ("ok" or a reason code), ``customer_id``, ``date`` (DATE), ``amount`` (DOUBLE) and the
    optional ``order_id``, ``quantity``, ``profit``, ``satisfaction`` and covariates present.
    """

    con: duckdb.DuckDBPyConnection
    source: str
    columns: tuple[str, ...]
    returns: str
    duplicates_found: int
    returns_netted: int
    malformed: pd.DataFrame
    first_date: dt.date
    last_date: dt.date
    rows_read: int
    ids_normalized: int = 0
    amount_derived: str | None = None

    #: The SQL spelling of this engine (the feature queries are written once for both)
    dialect = DUCKDB

    def query(self, sql: str) -> pd.DataFrame:
        """The result of a query over ``tx``, ``day`` and ``netting`` as a DataFrame."""
        return self.con.sql(sql).df()

    @property
    def optional_columns(self) -> tuple[str, ...]:
        """Mapped columns beyond the required ones that become features (line-item prices only
        make the amount)."""
        return feature_columns(self.columns)

    def accounting(self, as_of=None) -> Accounting:
        """Row accounting for an analysis as of ``as_of`` (default: the last valid date)."""
        as_of = self.resolve_as_of(as_of)
        rows = self.con.execute(
            "SELECT CASE WHEN status <> 'ok' THEN status WHEN date <= ? THEN 'used' "
            "ELSE 'after_as_of' END AS k, count(*) FROM tx GROUP BY k", [as_of]).fetchall()
        counts = dict(rows)
        used = counts.pop("used", 0)
        after = counts.pop("after_as_of", 0)
        if len(self.malformed):
            counts["malformed_row"] = len(self.malformed)
        return Accounting(source=self.source, as_of=as_of, rows_read=self.rows_read, rows_used=used,
                          rows_after_as_of=after, quarantined=counts,
                          duplicates_found=self.duplicates_found,
                          returns_netted=self.returns_netted, ids_normalized=self.ids_normalized,
                          amount_derived=self.amount_derived, amounts=self._amounts(as_of))

    def _amounts(self, as_of: dt.date) -> dict[str, float]:
        """Valid amounts by destination (see :attr:`Accounting.amounts`), summed exactly. A row's
        netted part is its whole amount for a used return, the matched part for a return
        quarantined as unmatched (policy 'net-earlier'), else 0; the rest of it is used,
        after as_of or quarantined like the row."""
        row = self.con.execute(amounts_sql(as_of)).fetchall()[0]
        return dict(zip(AMOUNT_PLACES, map(float, row), strict=True))

    def stale_as_of(self, as_of, days: int = 365) -> str | None:
        """A warning when ``as_of`` lies more than ``days`` after the last transaction: every
        customer then looks long gone (or, under BG/NBD without repeat purchases, alive forever)."""
        gap = (self.resolve_as_of(as_of) - self.last_date).days
        if gap <= days:
            return None
        return (f"as_of {self.resolve_as_of(as_of)} is {gap:,} days after the last transaction "
                f"({self.last_date}): recency, churn and tiers at such a date say little")

    def resolve_as_of(self, as_of) -> dt.date:
        if as_of is None:
            return self.last_date
        return to_date(as_of, what="as_of")

    def to_pandas(self, as_of=None) -> pd.DataFrame:
        """The used rows (on or before ``as_of``), in source order, as a DataFrame."""
        cols = ", ".join(sql_ident(c) for c in self.columns)
        as_of = self.resolve_as_of(as_of)
        frame = self.con.execute(f"SELECT {cols} FROM tx WHERE status = 'ok' AND date <= ? "
                                 "ORDER BY source_line", [as_of]).df()
        frame["date"] = pd.to_datetime(frame["date"])
        return frame

    def total_amount(self, after, until) -> float:
        """Sum of the used amounts dated in ``(after, until]``."""
        (total,) = self.con.execute(
            "SELECT coalesce(sum(amount), 0) FROM tx WHERE status = 'ok' AND date > ? AND date <= ?",
            [to_date(after), to_date(until)]).fetchall()[0]
        return float(total)

    def fingerprint(self) -> str:
        """SHA-256 over the used rows' values and source positions, computed in DuckDB (nothing is
        copied into Python): equal data in the same order, equal fingerprint. It depends on
        DuckDB's ``hash``, so a DuckDB upgrade may change it."""
        cols = ", ".join(sql_ident(c) for c in ("source_line", *self.columns))
        row = self.con.execute(
            f"SELECT count(*), sum(hash({cols})::HUGEINT), bit_xor(hash({cols})), "
            f"min(source_line), max(source_line) FROM tx WHERE status = 'ok'").fetchall()[0]
        digest = hashlib.sha256(":".join(map(str, row)).encode())
        digest.update(",".join(self.columns).encode())
        return digest.hexdigest()

    def write_used(self, path, as_of=None) -> Path:
        """Write the used rows (on or before ``as_of``), in source order, to a Parquet file by
        DuckDB's COPY: out of core."""
        cols = ", ".join(sql_ident(c) for c in self.columns)
        as_of = self.resolve_as_of(as_of)
        day = sql_literal(str(as_of))
        self.con.execute(f"COPY (SELECT {cols} FROM tx WHERE status = 'ok' AND date <= {day}::DATE "
                         f"ORDER BY source_line) TO {sql_literal(str(path))} (FORMAT parquet)")
        return Path(path)

    def rejects(self) -> pd.DataFrame:
        """Quarantined rows: source line, reason, and the original values of the mapped columns."""
        originals = ", ".join(
            f"coalesce(raw_{c}, CAST({sql_ident(c)} AS VARCHAR)) AS {sql_ident(c)}"
            for c in self.columns)
        left = ""
        if self.returns == "net-earlier":  # what an unmatched return could not take back
            left = (", CASE WHEN status = 'unmatched_return' THEN amount - coalesce((SELECT sum(n.amount) "
                    "FROM netting n WHERE n.source_line = tx.source_line), 0) END AS amount_left")
        frame = self.con.sql(f"SELECT source_line, status AS reason, {originals}{left}, "
                             "NULL::VARCHAR AS raw_line FROM tx WHERE status <> 'ok'").df()
        if len(self.malformed):
            bad = pd.DataFrame({"source_line": self.malformed["line"],
                                "reason": "malformed_row", "raw_line": self.malformed["text"]})
            frame = pd.concat([frame, bad], ignore_index=True)
        if frame["raw_line"].isna().all():
            frame = frame.drop(columns="raw_line")
        return frame.sort_values("source_line", kind="stable").reset_index(drop=True)

    def write_rejects(self, path, *, escape_formulas: bool = True) -> Path:
        """Write :meth:`rejects` to CSV or Parquet (by extension), atomically (CSV text cells that a
        spreadsheet would run as formulas get a leading ``'`` unless ``escape_formulas=False``)."""
        return write_frame(self.rejects(), path, escape_formulas=escape_formulas)


def feature_columns(columns) -> tuple[str, ...]:
    """Mapped columns beyond the required ones that become features."""
    required = ("customer_id", "date", "amount", "original_order_id", *LINE_ITEM)
    return tuple(c for c in columns if c not in required)


def to_date(value, *, what: str = "date") -> dt.date:
    """Parse an ISO date (str, date, datetime, Timestamp) into a ``datetime.date``."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        stamp = pd.NaT
    if pd.isna(stamp):
        raise InputError(what, f"expected a date like 1997-12-31, got {value!r}")
    return stamp.date()


def load_transactions(source, spec: LoadSpec | None = None, *,
                      con: duckdb.DuckDBPyConnection | None = None, in_place: bool = False,
                      **fields) -> Transactions:
    """Read, map and validate transactions into a :class:`Transactions`.

    Parameters
    ----------
    source : str, Path or DataFrame
        CSV (.csv/.txt/.tsv), Parquet or Excel (.xlsx) file, or a DataFrame.
    spec : LoadSpec, optional
        Column mapping, reader options, returns policy, duplicates and amount limit.
    in_place : bool, default=False
        For a Parquet file: ``tx`` is a view that reads and validates the file at each query
        instead of a table holding every typed row (about 60 bytes a row in memory, which
        spills to disk past the memory limit), until a returns or duplicates policy has to
        change rows' statuses. For one-pass jobs over large files (the batch scorer); the file
        must not change while the result is used. Other sources are always copied.
    **fields
        Any :class:`LoadSpec` field, replacing the one in ``spec`` (``columns=..., returns=...``).

    Raises
    ------
    InputError
        The file cannot be read, a required column is missing, or no row is valid.
    """
    spec = LoadSpec.of(spec, **fields) if fields or spec is None else spec
    raw = read_raw(source, spec, con=con)
    try:
        return _validate(raw, spec, in_place=in_place and raw.kind == "parquet")
    finally:
        raw.close_temp()


def _validate(raw: RawTable, options: LoadSpec, *, in_place: bool = False) -> Transactions:
    returns, drop_duplicates = options.returns, options.drop_duplicates
    con = raw.con
    shape = con.sql("SELECT * FROM raw LIMIT 0")
    types = {name: str(kind) for name, kind in zip(shape.columns, shape.types, strict=True)}
    names = list(raw.columns)
    derived = "amount" not in names  # line items: quantity x unit_price - discount
    if derived:
        names.insert(2, "amount")
    check_return_options(raw.source, options, names)

    ids_normalized = _integral_text_ids(con, types["customer_id"]) if options.normalize_ids else 0
    select = typed_rows_sql(types, names, options, kind=raw.kind, decimal=raw.decimal, zone=raw.date_zone,
                            excluded=raw.excluded, ids_normalized=bool(ids_normalized))
    if (kind := _temp_kind(con, "tx")) is not None:  # an earlier load on this connection's
        con.execute(f"DROP {kind} tx")
    try:
        if in_place and not drop_duplicates:
            con.execute(f"CREATE TEMP VIEW tx AS {select}")
            loaded = con.execute("SELECT count(*) FROM tx").fetchall()[0][0]
        else:
            loaded = con.execute(f"CREATE TEMP TABLE tx AS {select}").fetchall()[0][0]
    except duckdb.Error as exc:
        raise InputError(raw.source, f"cannot read rows: {str(exc).splitlines()[0]}") from None

    key = ", ".join([*(sql_ident(c) for c in names), "_row_hash"])  # every source column, mapped or not
    duplicates = 0
    if drop_duplicates:
        con.execute(f"""
            UPDATE tx SET status = 'duplicate' WHERE source_line IN (
                SELECT source_line FROM (
                    SELECT source_line, row_number() OVER (PARTITION BY {key}
                                                         ORDER BY source_line) AS copy
                    FROM tx WHERE status = 'ok') WHERE copy > 1)""")
        duplicates = con.execute("SELECT count(*) FROM tx WHERE status = 'duplicate'").fetchall()[0][0]

    con.execute("CREATE OR REPLACE TEMP TABLE netting AS SELECT source_line, customer_id, date, "
                "date AS returned, amount FROM tx WHERE false")
    if returns == "net":
        netted = _net_returns(con)
    elif returns == "net-earlier":
        netted = _net_earlier(con, options.return_window, options.return_prefix, names)
    else:
        netted = 0
    _build_days(con, names, purchases_only=returns == "net-earlier")
    if not drop_duplicates:
        # Exact copies share a customer and a day, so only days with several rows can hold
        # them: the exact check runs on those rows alone (and on returns, which 'net-earlier'
        # keeps out of the day table).
        duplicates = con.execute(f"""
            SELECT coalesce(sum(n - 1), 0) FROM (
                SELECT count(*) AS n FROM tx
                SEMI JOIN (SELECT customer_id, date FROM day WHERE n_rows > 1
                           UNION SELECT customer_id, date FROM tx WHERE status = 'ok' AND amount < 0) AS m
                    USING (customer_id, date)
                WHERE status = 'ok' GROUP BY {key} HAVING count(*) > 1)""").fetchall()[0][0]

    first, last, ok, rows = con.execute(
        "SELECT min(date) FILTER (WHERE status = 'ok'), max(date) FILTER (WHERE status = 'ok'), "
        "count(*) FILTER (WHERE status = 'ok'), count(*) FROM tx").fetchall()[0]
    total = rows + len(raw.malformed)
    if total == 0:
        raise EmptyInputError(raw.source, "has a header but no data rows")
    if ok == 0:
        counts = dict(con.execute("SELECT status, count(*) FROM tx GROUP BY status").fetchall())
        counts["malformed_row"] = len(raw.malformed)
        reason = max(counts, key=counts.get)
        raise EmptyInputError(raw.source, f"no valid rows: all {total:,} rows quarantined "
                                          f"(most often {reason}: {REASONS.get(reason, reason)})")
    return Transactions(con=con, source=raw.source, columns=tuple(names), returns=returns,
                        duplicates_found=int(duplicates), returns_netted=netted,
                        malformed=raw.malformed, first_date=first, last_date=last,
                        rows_read=int(loaded) + len(raw.malformed), ids_normalized=ids_normalized,
                        amount_derived=line_amount_text(types) if derived else None)


def typed_rows_sql(types: dict, names: list[str], options: LoadSpec, *, kind: str, decimal: str,
                   zone: str | None, excluded: dict[str, str], ids_normalized: bool,
                   d: Dialect = DUCKDB) -> str:
    """The query over the view ``raw`` (:func:`~clvtier.data.io.read_raw`) giving each row's
    ``source_line``, ``status`` ("ok" or the first reason code that applies), typed mapped columns,
    ``raw_<column>`` (the source text of quarantined rows) and ``_row_hash``. Row by row, so it
    runs the same on any number of partitions; written once for DuckDB and Spark (``d``)."""
    derived = "amount" not in types
    numeric = [c for c in names if c not in ("customer_id", "date", "amount", *ORDER_COLUMNS)]
    parsed = {
        "customer_id": _customer_id_expr(types["customer_id"], d),  # replaced below when normalised
        "date": _date_expr(types["date"], options.date_format, excel=kind == "excel", zone=zone, d=d),
        "amount": (_line_amount(types, decimal, d) if derived
                   else _number_expr("amount", types["amount"], decimal, d)),
    }
    if ids_normalized:
        parsed["customer_id"] = d.remove(parsed['customer_id'], '\\.0+$')
    for c in ORDER_COLUMNS:
        if c in names:
            parsed[c] = f"nullif(trim(CAST({c} AS {d.text})), '')"
    for c in numeric:
        parsed[c] = _number_expr(c, types[c], decimal, d)

    def text(c):  # the source value as trimmed text, NULL when empty
        return f"nullif(trim(CAST({sql_ident('_src_' + c)} AS {d.text})), '')"

    # A CASE evaluates a branch only for the rows that reach it, so the text conversions
    # below cost nothing for valid rows.
    # Excluded first: a postage line without a customer is excluded, not a missing id
    checks = [
        (f"trim(CAST({alias} AS {d.text})) IN ({', '.join(map(sql_literal, map(str, values)))})", "excluded")
        for alias, src in excluded.items()
        if (values := options.exclude[src])
    ]
    checks += [(f"customer_id IS NULL AND {text('customer_id')} IS NULL", "missing_customer_id"),
              ("customer_id IS NULL", "bad_customer_id"),
              ("date IS NULL", "bad_date"),
              ("date < DATE '1900-01-01' OR date > DATE '2199-12-31'", "date_out_of_range"),
              (f"amount IS NULL OR NOT {d.isfinite('amount')}", "bad_amount")]
    # Above 1e15 a double no longer holds cents, and a few 1e308 rows overflow a customer's total
    max_amount = options.max_amount
    limit = min(float(max_amount), AMOUNT_LIMIT) if max_amount is not None else AMOUNT_LIMIT
    checks.append((f"abs(amount) > {limit!r}", "amount_out_of_range"))
    for c in numeric:
        checks.append((f"({sql_ident(c)} IS NULL OR NOT {d.isfinite(sql_ident(c))}) "
                       f"AND {text(c)} IS NOT NULL", f"bad_{c}"))
    if options.returns == "quarantine":
        checks.append(("amount < 0", "negative_amount"))
    status = "CASE " + " ".join(f"WHEN {cond} THEN '{code}'" for cond, code in checks) \
        + " ELSE 'ok' END"

    inner = ", ".join(f"{expr} AS {sql_ident(c)}" for c, expr in parsed.items())
    sources = ", ".join(f"{'NULL' if c == 'amount' and derived else 'raw.' + sql_ident(c)} AS "
                        f"{sql_ident('_src_' + c)}" for c in names)
    typed_cols = ", ".join(sql_ident(c) for c in names)
    raw_cols = ", ".join(f"CASE WHEN status <> 'ok' THEN {text(c)} END AS raw_{c}" for c in names)
    return f"""
        SELECT source_line, status, {typed_cols}, {raw_cols}, _row_hash FROM (
            SELECT *, {status} AS status FROM (
                SELECT source_line, {inner}, {sources}{''.join(', ' + a for a in excluded)},
                       _row_hash
                FROM raw))"""


def _temp_kind(con, name: str) -> str | None:
    """"VIEW" or "TABLE" when ``name`` is a temporary view or table of ``con``, else None."""
    row = con.execute("SELECT 'VIEW' FROM duckdb_views() WHERE temporary AND view_name = ? UNION ALL "
                      "SELECT 'TABLE' FROM duckdb_tables() WHERE temporary AND table_name = ?",
                      [name, name]).fetchall()
    return row[0][0] if row else None


def _writable(con) -> None:
    """Make ``tx`` a table (a copy of the rows its view reads) before rows' statuses change."""
    if _temp_kind(con, "tx") == "VIEW":
        con.execute("CREATE TEMP TABLE _tx_rows AS SELECT * FROM tx; DROP VIEW tx; "
                    "ALTER TABLE _tx_rows RENAME TO tx")


def drop_rows(con) -> None:
    """Free the rows (``tx``, a table or a view) and the customer-day table of ``con``."""
    kind = _temp_kind(con, "tx")
    if kind is not None:
        con.execute(f"DROP {kind} tx")
    con.execute("DROP TABLE IF EXISTS day")


def _build_days(con, names: list[str], *, purchases_only: bool = False) -> None:
    con.execute(f"CREATE OR REPLACE TEMP TABLE day AS {day_table_sql(names, purchases_only=purchases_only)}")


def day_table_sql(names, *, purchases_only: bool = False) -> str:
    """Customer-day table ``day`` of the valid rows of ``tx``, which every feature query starts
    from: net spend, purchases (distinct orders when ``order_id`` is mapped, else rows with a
    non-negative amount), rows, and the sum and count of each optional numeric column.
    ``purchases_only`` leaves returns out (policy 'net-earlier' nets them through ``netting``).
    The same text in DuckDB and Spark."""
    purchases = ("count(DISTINCT order_id) FILTER (WHERE amount >= 0)" if "order_id" in names
                 else "count(*) FILTER (WHERE amount >= 0)")
    extra = "".join(f", {exact_sum(sql_ident(c))} AS {sql_ident('sum_' + c)}, count({sql_ident(c)}) AS "
                    f"{sql_ident('n_' + c)}"
                    for c in names if c not in ("customer_id", "date", "amount", *ORDER_COLUMNS, *LINE_ITEM))
    return f"""
        SELECT customer_id, date, {exact_sum('amount')} AS amount, {purchases} AS purchases,
               count(*) AS n_rows{extra}
        FROM tx WHERE status = 'ok'{' AND amount >= 0' if purchases_only else ''}
        GROUP BY customer_id, date"""


def _net_returns(con) -> int:
    """Quarantine returns that cannot be netted; return how many were netted."""
    negatives = con.execute("SELECT count(*) FROM tx WHERE status = 'ok' AND amount < 0").fetchall()[0][0]
    if not negatives:
        return 0
    _writable(con)
    con.execute("""
        UPDATE tx SET status = CASE WHEN d.has_purchase THEN 'return_exceeds_purchases'
                                    ELSE 'unmatched_return' END
        FROM (SELECT customer_id, date, bool_or(amount >= 0) AS has_purchase
              FROM tx WHERE status = 'ok'
              GROUP BY customer_id, date
              HAVING min(amount) < 0 AND (NOT bool_or(amount >= 0) OR sum(amount) < 0)) AS d
        WHERE tx.customer_id = d.customer_id AND tx.date = d.date
          AND tx.status = 'ok' AND tx.amount < 0""")
    return con.execute("SELECT count(*) FROM tx WHERE status = 'ok' AND amount < 0").fetchall()[0][0]


def check_return_options(source: str, options: LoadSpec, names: list[str]) -> None:
    linked = options.return_prefix is not None or "original_order_id" in names
    if linked and options.returns != "net-earlier":
        raise InputError("returns", "return_prefix and original_order_id link returns to orders only "
                                    f"with returns='net-earlier'; got {options.returns!r}")
    if options.return_prefix is not None and "order_id" not in names:
        raise InputError(source, f"return_prefix {options.return_prefix!r} reads return order ids, "
                                 "but no order_id column is mapped (order_id=<column>)")


def _net_earlier(con, window: int, prefix: str | None, names: list[str]) -> int:
    """Policy 'net-earlier': net each valid return against what it takes back, filling the
    ``netting`` table (return line, customer, purchase day, return day, amount < 0); a return
    not matched in full becomes ``unmatched_return`` (its matched part stays in ``netting``).
    Returns the number of returns netted in full.

    A customer's returns are taken in date (then line) order. Each first reduces the order it
    names (by ``original_order_id``, or its own order id less ``prefix``) on or before its date,
    then the customer's other purchases from ``window`` days before it up to its date, most
    recent first (a day's orders from the last line back). Amounts are matched in millionths,
    exactly. Only customers with returns are read into Python."""
    orders = "order_id" in names
    if prefix is not None:
        ref = (f"CASE WHEN starts_with(order_id, {sql_literal(prefix)}) THEN "
               f"substr(order_id, {len(prefix) + 1}) END")
    else:
        ref = "original_order_id" if "original_order_id" in names else "NULL"
    micro = f"CAST(CAST(amount AS DECIMAL(38, {SUM_DECIMALS})) * 1000000 AS HUGEINT)"
    returns = con.execute(f"""
        SELECT source_line, customer_id, date, -{micro}, {ref} FROM tx
        WHERE status = 'ok' AND amount < 0 ORDER BY customer_id, date, source_line""").fetchall()
    if not returns:
        return 0
    order = "order_id" if orders else "NULL"
    units = con.execute(f"""
        SELECT customer_id, date, {order} AS o, sum({micro}), max(source_line) AS last FROM tx
        SEMI JOIN (SELECT customer_id FROM tx WHERE status = 'ok' AND amount < 0) USING (customer_id)
        WHERE status = 'ok' AND amount >= 0
        GROUP BY customer_id, date, o ORDER BY customer_id, date DESC, last DESC""").fetchall()
    by_customer: dict = {}
    for customer, day, order_id, amount, _ in units:
        by_customer.setdefault(customer, []).append([day, order_id, amount])
    netting, unmatched = [], []
    span = dt.timedelta(days=window)
    for line, customer, day, left, reference in returns:
        candidates = [u for u in by_customer.get(customer, ()) if u[0] <= day and u[2] > 0]
        named = [u for u in candidates if reference is not None and u[1] == reference]
        others = [u for u in candidates if u[0] >= day - span and not (named and u[1] == reference)]
        for unit in named + others:
            if left == 0:
                break
            take = min(left, unit[2])
            unit[2] -= take
            left -= take
            netting.append((line, customer, unit[0], day, -take / 1e6))
        if left:
            unmatched.append(line)
    frame = pd.DataFrame(netting, columns=["source_line", "customer_id", "date", "returned", "amount"])
    con.register("_netting", frame)
    con.execute("INSERT INTO netting SELECT * FROM _netting")
    con.unregister("_netting")
    if unmatched:
        _writable(con)
        con.register("_unmatched", pd.DataFrame({"source_line": unmatched}))
        con.execute("UPDATE tx SET status = 'unmatched_return' WHERE source_line IN "
                    "(SELECT source_line FROM _unmatched)")
        con.unregister("_unmatched")
    return len(returns) - len(unmatched)


def line_amount_text(types: dict) -> str:
    return "quantity x unit_price" + (" - discount" if "discount" in types else "")



def _line_amount(types: dict, decimal: str, d: Dialect = DUCKDB) -> str:
    """A line's amount from its quantity, unit price and discount (0 when absent or empty)."""
    qty, price = (_number_expr(c, types[c], decimal, d) for c in ("quantity", "unit_price"))
    discount = f" - coalesce({_number_expr('discount', types['discount'], decimal, d)}, 0)" \
        if "discount" in types else ""
    return f"({qty}) * ({price}){discount}"


def _integral_text_ids(con, kind: str) -> int:
    """How many text ids there are when every one is an integral number written with a trailing
    ``.0`` (``17850.0``), else 0."""
    if kind in _NUMERIC_TYPES:
        return 0
    given, integral = con.execute(integral_ids_sql()).fetchall()[0]
    return int(given) if given and given == integral else 0


def integral_ids_sql(d: Dialect = DUCKDB) -> str:
    """Counts of the given text ids, and of those like ``17850.0``, in the view ``raw``."""
    integral = d.full_match("v", r"[+-]?[0-9]+\.0+")
    return (f"SELECT count(v), count(v) FILTER (WHERE {integral}) "
            f"FROM (SELECT nullif(trim(CAST(customer_id AS {d.text})), '') AS v FROM raw)")


def _customer_id_expr(kind: str, d: Dialect = DUCKDB) -> str:
    if kind in _NUMERIC_TYPES[:9]:
        return "CAST(raw.customer_id AS BIGINT)"
    if kind in ("FLOAT", "DOUBLE"):  # e.g. a pandas int column that holds NaN
        return (f"CASE WHEN {d.isfinite('raw.customer_id')} AND raw.customer_id = round(raw.customer_id)"
                " THEN CAST(raw.customer_id AS BIGINT) END")
    return f"nullif(trim(CAST(raw.customer_id AS {d.text})), '')"


def _date_expr(kind: str, date_format: str | None, *, excel: bool = False, zone: str | None = None,
               d: Dialect = DUCKDB) -> str:
    """SQL turning the raw date column into a DATE. Time-zone-aware timestamps take their date in
    the zone the source records (else UTC), never the host's. Excel serial numbers are dates only
    in Excel cells or with ``date_format="excel"``: a bare ``1997`` elsewhere is not 1905-06-19."""
    if kind == "TIMESTAMP WITH TIME ZONE":
        if d is not DUCKDB:  # the Spark session's time zone is UTC
            return f"CAST(from_utc_timestamp(raw.date, {sql_literal(zone or 'UTC')}) AS DATE)"
        return f"CAST(timezone({sql_literal(zone or 'UTC')}, raw.date) AS DATE)"
    if kind in ("DATE", "TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S"):
        return "CAST(raw.date AS DATE)"
    text = f"nullif(trim(CAST(raw.date AS {d.text})), '')"
    serials = excel or date_format == "excel"
    if date_format and date_format != "excel":
        if kind in ("FLOAT", "DOUBLE"):
            text = f"CAST(CAST(raw.date AS BIGINT) AS {d.text})"
        return f"CAST(try_strptime({text}, {sql_literal(date_format)}) AS DATE)"
    if kind in _NUMERIC_TYPES:
        return _excel_serial("CAST(raw.date AS DOUBLE)") if serials else "CAST(NULL AS DATE)"
    iso = f"CAST(TRY_CAST({text} AS TIMESTAMP) AS DATE)"
    if not serials:
        # DuckDB reads a bare year as a timestamp (1997 -> 1997-01-01): a date needs a day
        return f"CASE WHEN {d.full_match(text, _BARE_NUMBER)} THEN NULL ELSE {iso} END"
    serial = _excel_serial(f"TRY_CAST({text} AS DOUBLE)")
    return (f"coalesce({iso}, "
            f"CASE WHEN {d.full_match(text, _BARE_NUMBER)} THEN {serial} END)")


_BARE_NUMBER = r"[0-9]{1,7}(\.[0-9]*)?"


def _excel_serial(number: str) -> str:
    # Excel's day 1 is 1900-01-01 and it counts a 29 Feb 1900 that never was, so from
    # 1900-03-01 (serial 61) on, date = 1899-12-30 + serial; the time fraction is dropped.
    return (f"CASE WHEN {number} >= 1 AND {number} < 2958466 THEN "
            f"CAST(DATE '1899-12-30' + CAST(floor({number}) AS INTEGER) AS DATE) END")


def _number_expr(col: str, kind: str, decimal: str, d: Dialect = DUCKDB) -> str:
    ref = f"raw.{sql_ident(col)}"
    if kind in _NUMERIC_TYPES:
        return f"CAST({ref} AS DOUBLE)"
    text = f"nullif(trim(CAST({ref} AS {d.text})), '')"
    if decimal == ",":
        direct = f"TRY_CAST(replace({text}, ',', '.') AS DOUBLE)"
        grouped = r"([0-9]{1,3}(\.[0-9]{3})+|[0-9]+)(,[0-9]+)?"
        clean = f"replace({d.remove(text, '[^0-9,+-]')}, ',', '.')"
    else:
        direct = f"TRY_CAST({text} AS DOUBLE)"
        grouped = r"([0-9]{1,3}(,[0-9]{3})+|[0-9]+)(\.[0-9]+)?"
        clean = d.remove(text, '[^0-9.+-]')
    # Thousands separators and a currency sign are accepted only in an unambiguous shape.
    pattern = rf"[-+]?[{_CURRENCY}]?\s*{grouped}"
    return (f"coalesce({direct}, CASE WHEN {d.full_match(text, pattern)} "
            f"THEN TRY_CAST({clean} AS DOUBLE) END)")


__all__ = ["Accounting", "Transactions", "load_transactions", "REASONS", "RETURNS_POLICIES",
           "to_date"]
