"""Exact population ranks and order statistics in Spark, without a single-partition window.

A column's distinct values are counted, range-partitioned and sorted within partitions; each
partition numbers its values cumulatively, and adds the row count of the partitions before it
(collected to the driver: one number per partition). Every value then knows how many rows lie
below it, which gives ``rank()`` (ties share the lowest rank), the share of the population at or
below it, and any k-th smallest value, exactly as a sort of the whole column would.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clvtier.spark.load import checkpoint


def _cumulate(batches):
    """Within one sorted partition: ``_below_here`` = rows of the partition before each value."""
    import pyarrow as pa
    from pyspark import TaskContext

    part = TaskContext.get().partitionId()
    seen = 0
    for batch in batches:
        counts = batch.column("_n").to_numpy()
        before = counts.cumsum() - counts + seen
        seen += int(counts.sum())
        yield pa.RecordBatch.from_arrays(
            [batch.column(0), batch.column("_n"), pa.array(before, pa.int64()),
             pa.array([part] * batch.num_rows, pa.int32())],
            names=["_value", "_n", "_below_here", "_part"])


class Ranks:
    """For one numeric column of ``frame``: every distinct value with ``_n`` (rows equal to it)
    and ``_below`` (rows strictly below it), and the population size ``n``."""

    def __init__(self, frame: DataFrame, column: str, partitions: int | None = None):
        spark = frame.sparkSession
        # the distinct values are far fewer than the rows: one range per core is enough
        partitions = partitions or max(2, spark.sparkContext.defaultParallelism)
        counts = frame.groupBy(F.col(column).alias("_value")).agg(F.count("*").alias("_n"))
        kind = counts.schema["_value"].dataType.simpleString()
        local = (counts.repartitionByRange(partitions, "_value").sortWithinPartitions("_value")
                 .mapInArrow(_cumulate, f"_value {kind}, _n BIGINT, _below_here BIGINT, _part INT"))
        local = checkpoint(local)  # computed once: a recomputed range partitioning could differ
        totals = sorted((r["_part"], r["rows"]) for r in
                        local.groupBy("_part").agg(F.sum("_n").alias("rows")).collect())
        offsets, n = [], 0
        for part, rows in totals:
            offsets.append((part, n))
            n += int(rows)
        shift = spark.createDataFrame(offsets or [(0, 0)], "_part INT, _offset BIGINT")
        self.n = n
        self.column = column
        below = (F.col("_below_here") + F.col("_offset")).alias("_below")
        self.table = checkpoint(local.join(F.broadcast(shift), "_part").select("_value", "_n", below))
        self._local = local

    def kth(self, k: int) -> float:
        """The k-th smallest value (0-based)."""
        row = self.table.where((F.col("_below") <= k) & (F.col("_below") + F.col("_n") > k)) \
            .select("_value").collect()
        return float(row[0][0])

    def join(self, frame: DataFrame, **columns) -> DataFrame:
        """``frame`` with new columns computed from ``_n``, ``_below`` and ``n`` per value of the
        column (``name=Column expression``)."""
        looked = self.table.select(F.col("_value").alias(self.column),
                                   *(expr.alias(name) for name, expr in columns.items()))
        return frame.join(looked, self.column, "left")

    def release(self) -> None:
        self.table.unpersist()
        self._local.unpersist()


def rank_min(ranks: Ranks, descending: bool = False):
    """SQL ``rank()`` over the column (ascending or descending): 1 + rows strictly before."""
    if descending:
        return F.lit(ranks.n) - F.col("_below") - F.col("_n") + 1
    return F.col("_below") + 1


class SparkPopulation:
    """Order statistics of a Spark DataFrame's columns, answering what
    :class:`clvtier.tiering.policy.SortedColumns` answers for the local engine."""

    def __init__(self, frame: DataFrame, n: int):
        self.frame, self.n, self._ranks = frame, n, {}

    def ranks(self, column: str) -> Ranks:
        if column not in self._ranks:
            self._ranks[column] = Ranks(self.frame, column)
        return self._ranks[column]

    def kth(self, column: str, k: int) -> float:
        return self.ranks(column).kth(k)

    def size(self) -> int:
        return self.n

    def release(self) -> None:
        for r in self._ranks.values():
            r.release()


__all__ = ["Ranks", "SparkPopulation", "rank_min"]
