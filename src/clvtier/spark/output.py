"""Per-batch Python over Spark DataFrames, and Parquet datasets written atomically."""

from __future__ import annotations

from contextlib import contextmanager

import pyarrow as pa

from clvtier.errors import InputError
from clvtier.spark.load import unique_path


def _arrow(frame, schema: pa.Schema | None = None) -> pa.Table:
    """A pandas DataFrame or Arrow table in Spark's Arrow types (or in ``schema``)."""
    table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    if schema is not None:
        return table.cast(schema)
    fields = []
    for f in table.schema:  # Spark holds timestamps in microseconds and strings as plain strings
        kind = f.type
        if pa.types.is_timestamp(kind):
            kind = pa.timestamp("us", tz=kind.tz)
        elif pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
            kind = pa.string()
        fields.append(pa.field(f.name, kind))
    return table.cast(pa.schema(fields))


def map_pandas(frame, fn, sample_rows: int = 8):
    """``frame`` with ``fn`` (pandas DataFrame -> pandas DataFrame, row by row) applied to every
    Arrow batch on the executors (see :func:`map_arrow`)."""
    return map_arrow(frame, lambda table: fn(table.to_pandas()), sample_rows)


def map_arrow(frame, fn, sample_rows: int = 8):
    """``frame`` with ``fn`` (Arrow table -> Arrow table or pandas DataFrame, row by row) applied
    to every Arrow batch on the executors. The output schema is ``fn``'s on the first rows, so
    ``frame`` should be cheap to sample (persisted)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    schema = _arrow(fn(frame.limit(sample_rows).toArrow())).schema

    def run(batches):
        for batch in batches:
            if batch.num_rows:
                yield from _arrow(fn(pa.Table.from_batches([batch])), schema).to_batches()

    return frame.mapInArrow(run, from_arrow_schema(schema))


@contextmanager
def staged_dataset(spark, path: str):
    """Yield a hidden staging path beside ``path`` to write a dataset to; once the block succeeds,
    rename it onto ``path`` (replacing an earlier dataset), else delete it: a failed job leaves
    any earlier output in place and never a partial one. Works on any Hadoop file system (local,
    HDFS, S3A...)."""
    jvm, conf = spark._jvm, spark._jsc.hadoopConfiguration()
    hpath = jvm.org.apache.hadoop.fs.Path
    target = hpath(str(path))
    fs = target.getFileSystem(conf)
    staged = hpath(unique_path(str(path), "staging"))
    try:
        yield staged.toString()
        replaced = None
        if fs.exists(target):
            replaced = hpath(unique_path(str(path), "replaced"))
            fs.rename(target, replaced)
        if not fs.rename(staged, target):
            if replaced is not None:
                fs.rename(replaced, target)
            raise InputError(str(path), "cannot move the written dataset into place")
        if replaced is not None:
            fs.delete(replaced, True)
    finally:
        if fs.exists(staged):
            fs.delete(staged, True)


def write_dataset(frame, path: str) -> str:
    """Write ``frame`` as a Parquet dataset (a folder of part files) at ``path``, atomically
    (:func:`staged_dataset`)."""
    with staged_dataset(frame.sparkSession, path) as staged:
        frame.write.mode("error").parquet(staged)
    return str(path)


__all__ = ["map_pandas", "staged_dataset", "write_dataset"]
