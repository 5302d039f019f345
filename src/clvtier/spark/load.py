"""Reading and validating transactions in Spark: the local engine's row checks, reason codes and
accounting (rows read = used + after as_of + quarantined), run as Spark SQL.

The row-by-row part (parsing, reason codes) is the very SQL text of
:func:`clvtier.data.schema.typed_rows_sql`, rendered for Spark; the customer-day table is
:func:`clvtier.data.schema.day_table_sql`. What needs a group of rows (duplicates, same-day
returns) is the same rule written with window functions, which Spark runs per key in parallel.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from clvtier.data.dialect import SPARK
from clvtier.data.io import LoadSpec, sql_ident
from clvtier.data.schema import (
    AMOUNT_PLACES,
    Accounting,
    Transactions,
    amounts_sql,
    check_return_options,
    day_table_sql,
    integral_ids_sql,
    line_amount_text,
    typed_rows_sql,
)
from clvtier.errors import EmptyInputError, InputError

#: Spark types as the DuckDB type names the shared SQL builders dispatch on.
_TYPES = {"LongType": "BIGINT", "IntegerType": "INTEGER", "ShortType": "SMALLINT", "ByteType": "TINYINT",
          "DoubleType": "DOUBLE", "FloatType": "FLOAT", "StringType": "VARCHAR", "DateType": "DATE",
          "TimestampType": "TIMESTAMP WITH TIME ZONE", "TimestampNTZType": "TIMESTAMP",
          "DecimalType": "DECIMAL", "BooleanType": "BOOLEAN"}
_CORRUPT = "_corrupt_record"
_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "FLOAT", "DOUBLE")


@dataclass
class SparkTransactions:
    """Validated transactions as Spark views ``tx`` (every row, with its status) and ``day`` (the
    customer-day table), with what :class:`clvtier.data.Transactions` reports."""

    spark: object
    source: str
    columns: tuple[str, ...]
    returns: str
    duplicates_found: int
    returns_netted: int
    malformed: int
    first_date: dt.date
    last_date: dt.date
    rows_read: int
    ids_normalized: int = 0
    amount_derived: str | None = None

    dialect = SPARK

    def query(self, sql: str) -> pd.DataFrame:
        """A (small) query result collected to the driver as a DataFrame, in the query's order."""
        return self.spark.sql(sql).toArrow().to_pandas()

    # what depends only on the columns and dates is the local engine's own
    optional_columns = Transactions.optional_columns
    resolve_as_of = Transactions.resolve_as_of
    stale_as_of = Transactions.stale_as_of

    def fingerprint(self) -> str:
        """SHA-256 over the used rows' values and positions (Spark's xxhash64: it differs from
        the local engine's fingerprint of the same data)."""
        cols = ", ".join(sql_ident(c) for c in ("source_line", *self.columns))
        row = self.spark.sql(f"SELECT count(*), sum(CAST(xxhash64({cols}) AS DECIMAL(38, 0))), "
                             f"bit_xor(xxhash64({cols})), min(source_line), max(source_line) "
                             "FROM tx WHERE status = 'ok'").collect()[0]
        digest = hashlib.sha256(("spark:" + ":".join(map(str, row))).encode())
        digest.update(",".join(self.columns).encode())
        return digest.hexdigest()

    def accounting(self, as_of=None) -> Accounting:
        as_of = self.resolve_as_of(as_of)
        rows = self.spark.sql(
            f"SELECT CASE WHEN status <> 'ok' THEN status WHEN date <= DATE '{as_of}' THEN 'used' "
            "ELSE 'after_as_of' END AS k, count(*) AS n FROM tx GROUP BY 1").collect()
        counts = {r["k"]: int(r["n"]) for r in rows}
        used, after = counts.pop("used", 0), counts.pop("after_as_of", 0)
        if self.malformed:
            counts["malformed_row"] = self.malformed
        amounts = self.spark.sql(amounts_sql(as_of, SPARK)).collect()[0]
        return Accounting(source=self.source, as_of=as_of, rows_read=self.rows_read, rows_used=used,
                          rows_after_as_of=after, quarantined=counts,
                          duplicates_found=self.duplicates_found, returns_netted=self.returns_netted,
                          ids_normalized=self.ids_normalized, amount_derived=self.amount_derived,
                          amounts=dict(zip(AMOUNT_PLACES, map(float, amounts), strict=True)))

    def rejects(self):
        """The quarantined rows as a DataFrame: source line, reason, the source values of the
        mapped columns, and the text of lines that did not parse."""
        originals = ", ".join(f"coalesce(raw_{c}, CAST({sql_ident(c)} AS STRING)) AS {sql_ident(c)}"
                              for c in self.columns)
        nulls = ", ".join(f"CAST(NULL AS STRING) AS {sql_ident(c)}" for c in self.columns)
        return self.spark.sql(f"""
            SELECT source_line, status AS reason, {originals}, CAST(NULL AS STRING) AS raw_line
            FROM tx WHERE status <> 'ok'
            UNION ALL
            SELECT source_line, 'malformed_row' AS reason, {nulls}, raw_line FROM malformed""")


def read_spark(spark, source, spec: LoadSpec):
    """The source as a Spark DataFrame of uninterpreted columns, its name, kind and the malformed
    CSV lines (a DataFrame of ``source_line, raw_line``)."""
    if isinstance(source, pd.DataFrame):  # a built-in dataset: small, handed to Spark as it is
        frame = spark.createDataFrame(pa.Table.from_pandas(_microseconds(source), preserve_index=False))
        return _number_rows(spark, frame, first=1), "<DataFrame>", "frame", _no_malformed(spark)
    text = str(source)
    if text.startswith("table:"):
        name, kind = text[len("table:"):], "table"
        try:
            frame = spark.table(name)
        except Exception as exc:  # noqa: BLE001 - AnalysisException and friends
            raise InputError(text, f"cannot read the table: {str(exc).splitlines()[0]}") from None
    else:
        name = text
        local = "://" not in text or text.startswith("file:")
        if local and not Path(text.removeprefix("file:")).exists():
            raise InputError(text, "file not found")
        suffix = Path(text.rstrip("/")).suffix.lower()
        if suffix in (".parquet", ".pq"):
            kind = "parquet"
            frame = _spark_read(spark.read, "parquet", text)
        elif suffix in (".csv", ".txt", ".tsv"):
            kind = "csv"
            frame = _read_csv(spark, text, spec)
        else:
            raise InputError(text, f"the Spark engine reads Parquet or CSV paths (or table:<name>); "
                                   f"got {suffix or 'no extension'}")
    frame = _number_rows(spark, frame, first=2 if kind == "csv" else 1)
    if _CORRUPT in frame.columns:
        # Spark reads the corrupt-record column only from parsed rows held in the cache
        frame = _persist(frame, "_parsed")
        malformed = frame.where(f"{_CORRUPT} IS NOT NULL").selectExpr("source_line",
                                                                     f"{_CORRUPT} AS raw_line")
        frame = frame.where(f"{_CORRUPT} IS NULL").drop(_CORRUPT)
    else:
        malformed = _no_malformed(spark)
    return frame, name, kind, malformed


def _no_malformed(spark):
    return spark.sql("SELECT CAST(NULL AS BIGINT) AS source_line, CAST(NULL AS STRING) AS raw_line "
                     "WHERE false")


def _microseconds(frame: pd.DataFrame) -> pd.DataFrame:
    """Spark reads timestamps in microseconds (pandas' nanoseconds fail)."""
    out = frame.copy()
    for c in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[c]):
            out[c] = out[c].astype(str(out[c].dtype).replace("ns", "us"))
    return out


def _spark_read(reader, method: str, path: str):
    try:
        return getattr(reader, method)(path)
    except Exception as exc:  # noqa: BLE001
        raise InputError(path, f"cannot read as {method}: {str(exc).splitlines()[0]}") from None


def _read_csv(spark, path: str, spec: LoadSpec):
    from pyspark.sql.types import StringType, StructField, StructType

    if spec.date_format is not None or spec.decimal == ",":
        raise InputError("--engine spark", "reads ISO dates and '.' decimals; date_format and decimal=',' "
                                           "are not supported by the Spark engine yet (use --engine duckdb)")
    sep = spec.delimiter or _sniff_delimiter(path)
    reader = (spark.read.option("header", True).option("sep", sep).option("quote", '"').option("escape", '"')
              .option("encoding", spec.encoding or "UTF-8"))
    header = _spark_read(reader, "csv", path).columns
    schema = StructType([StructField(c, StringType()) for c in [*header, _CORRUPT]])
    return _spark_read(reader.schema(schema).option("mode", "PERMISSIVE")
                       .option("columnNameOfCorruptRecord", _CORRUPT), "csv", path)


def _sniff_delimiter(path: str) -> str:
    """The header line's most frequent of , ; tab | (a comma when the file is not local)."""
    try:
        with open(path.removeprefix("file:"), encoding="utf-8", errors="replace") as fh:
            head = fh.readline()
    except OSError:
        return ","
    return max([",", ";", "\t", "|"], key=head.count)


def _number_rows(spark, frame, first: int):
    """Add ``source_line``: the row's position in the source (for one file, its line counting
    the header, or its row). Computed without a single-partition window: each partition's rows
    are numbered in order and shifted by the row count of the partitions before it."""
    from pyspark.sql import functions as F

    frame = frame.withColumn("_part", F.spark_partition_id()).withColumn("_id",
                                                                         F.monotonically_increasing_id())
    counts = frame.groupBy("_part").agg(F.count("*").alias("n")).collect()
    sizes = sorted((r["_part"], r["n"]) for r in counts)
    offsets, total = [], 0
    for part, n in sizes:
        offsets.append((part, total))
        total += n
    shift = spark.createDataFrame(offsets or [(0, 0)], "_part INT, _offset BIGINT")
    line = F.col("_id") - F.shiftleft(F.col("_part").cast("bigint"), 33) + F.col("_offset") + first
    return (frame.join(F.broadcast(shift), "_part").withColumn("source_line", line)
            .drop("_part", "_id", "_offset"))


def load_spark(spark, source, spec: LoadSpec | None = None) -> SparkTransactions:
    """Read and validate ``source`` in Spark into the views ``tx`` and ``day``."""
    spec = spec or LoadSpec()
    if spec.returns == "net-earlier":
        raise InputError("--engine spark", "the returns policy 'net-earlier' is not supported by the Spark "
                                           "engine yet; use --engine duckdb, or --returns net")
    frame, name, kind, malformed = read_spark(spark, source, spec)
    found = [c for c in frame.columns if c != "source_line"]
    resolved = spec.column_map.resolve(name, found)
    missing = [c for c in spec.exclude if c not in found]
    if missing:
        from clvtier.errors import MissingColumnError

        raise MissingColumnError(name, missing[0], found)
    excluded = {f"_exclude_{i}": column for i, column in enumerate(spec.exclude)}
    select = ["source_line", *(f"{sql_ident(src)} AS {sql_ident(dst)}" for dst, src in resolved.items()),
              *(f"{sql_ident(src)} AS {alias}" for alias, src in excluded.items()),
              f"xxhash64({', '.join(sql_ident(c) for c in found)}) AS _row_hash"]
    frame.selectExpr(*select).createOrReplaceTempView("raw")
    malformed.createOrReplaceTempView("malformed")
    types = {f.name: _TYPES.get(type(f.dataType).__name__, "VARCHAR")
             for f in spark.table("raw").schema.fields}
    names = list(resolved)
    derived = "amount" not in names
    if derived:
        names.insert(2, "amount")
    check_return_options(name, spec, names)
    if spec.decimal == ",":
        raise InputError("--engine spark", "decimal=',' is not supported by the Spark engine yet")
    ids = 0
    if spec.normalize_ids and types["customer_id"] not in _NUMERIC:
        given, integral = spark.sql(integral_ids_sql(SPARK)).collect()[0]
        ids = int(given) if given and given == integral else 0
    zone = _zone(source, resolved["date"], kind)
    sql = typed_rows_sql(types, names, spec, kind=kind, decimal=".", zone=zone, excluded=excluded,
                         ids_normalized=bool(ids), d=SPARK)
    tx = spark.sql(sql)
    tx = _duplicates(tx, names) if spec.drop_duplicates else tx
    tx = _net_same_day(tx) if spec.returns == "net" else tx
    tx = _persist(tx, "tx")
    if spec.drop_duplicates:
        duplicates = spark.sql("SELECT count(*) FROM tx WHERE status = 'duplicate'").collect()[0][0]
    else:
        key = ", ".join([*(sql_ident(c) for c in names), "_row_hash"])
        duplicates = spark.sql(f"SELECT coalesce(sum(n - 1), 0) AS d FROM (SELECT count(*) AS n FROM tx "
                               f"WHERE status = 'ok' GROUP BY {key} HAVING count(*) > 1)").collect()[0][0]
    spark.sql("SELECT CAST(NULL AS BIGINT) AS source_line, CAST(NULL AS DOUBLE) AS amount WHERE false") \
        .createOrReplaceTempView("netting")
    _persist(spark.sql(day_table_sql(names)), "day")
    first, last, ok, rows, netted = spark.sql(
        "SELECT min(date) FILTER (WHERE status = 'ok'), max(date) FILTER (WHERE status = 'ok'), "
        "count(*) FILTER (WHERE status = 'ok'), count(*), "
        "count(*) FILTER (WHERE status = 'ok' AND amount < 0) FROM tx").collect()[0]
    bad = spark.table("malformed").count()
    total = rows + bad
    if total == 0:
        raise EmptyInputError(name, "has a header but no data rows")
    if ok == 0:
        raise EmptyInputError(name, f"no valid rows: all {total:,} rows quarantined")
    return SparkTransactions(spark=spark, source=name, columns=tuple(names), returns=spec.returns,
                             duplicates_found=int(duplicates or 0),
                             returns_netted=int(netted) if spec.returns == "net" else 0,
                             malformed=int(bad), first_date=first, last_date=last, rows_read=int(total),
                             ids_normalized=ids, amount_derived=line_amount_text(types) if derived else None)


def _duplicates(tx, names: list[str]):
    """Every valid row equal to an earlier one in all source columns becomes 'duplicate' (the
    local engine's rule with ``drop_duplicates``)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ok = F.col("status") == "ok"
    copies = Window.partitionBy(ok, *names, "_row_hash").orderBy("source_line")
    return tx.withColumn("status", F.when(ok & (F.row_number().over(copies) > 1), F.lit("duplicate"))
                         .otherwise(F.col("status")))


def _net_same_day(tx):
    """Policy 'net': a valid return on a customer-day without purchases becomes
    'unmatched_return', and the returns of a day whose returns exceed its purchases
    'return_exceeds_purchases' (the local engine's rule, as window functions)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ok = F.col("status") == "ok"
    day = Window.partitionBy(ok, "customer_id", "date")
    has_purchase = F.max((F.col("amount") >= 0).cast("int")).over(day) == 1
    total = F.sum("amount").over(day)
    status = (F.when(ok & (F.col("amount") < 0) & ~has_purchase, F.lit("unmatched_return"))
              .when(ok & (F.col("amount") < 0) & (total < 0), F.lit("return_exceeds_purchases"))
              .otherwise(F.col("status")))
    return tx.withColumn("status", status)


def _persist(frame, view: str):
    """``frame`` computed once and kept (memory, then the executors' disks), its query plan cut
    off there: the validation SQL is long, and plans built on it would grow with every step."""
    frame = checkpoint(frame)
    frame.createOrReplaceTempView(view)
    return frame


def checkpoint(frame):
    """``frame`` materialised on the executors with a short plan (``localCheckpoint``)."""
    from pyspark import StorageLevel

    return frame.localCheckpoint(eager=True, storageLevel=StorageLevel.MEMORY_AND_DISK)


def _zone(source, column: str, kind: str) -> str | None:
    if kind != "parquet" or "://" in str(source):
        return None
    import pyarrow.parquet as pq

    path = Path(source)
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    if not files:
        return None
    field = pq.read_schema(files[0]).field(column)
    return getattr(field.type, "tz", None)


def unique_path(path: str, tag: str) -> str:
    """A hidden sibling of ``path`` for staging a dataset (``.<name>.<tag>-<random>``)."""
    head, _, name = str(path).rstrip("/").rpartition("/")
    return f"{head + '/' if head else ''}.{name}.{tag}-{uuid.uuid4().hex[:12]}"


__all__ = ["SparkTransactions", "load_spark", "read_spark", "unique_path"]
