"""Per-customer features and population-wide RFM scores in Spark: the local engine's feature SQL
(:func:`clvtier.features.summary.features_sql`, rendered for Spark) finished batch by batch by
the same :func:`~clvtier.features.summary.finish_features`, and RFM scores from exact ranks."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StructField, StructType

from clvtier.data.dialect import SPARK
from clvtier.features.summary import features_sql, finish_features, unit_days
from clvtier.segment.rfm import RFM_COLUMNS
from clvtier.spark.ranks import Ranks, rank_min

_SCORES = ("r_score", "f_score", "m_score")


def features_frame(stx, as_of: dt.date, time_unit: str) -> DataFrame:
    """The feature table of :func:`clvtier.features.customer_features` as a Spark DataFrame (one
    row per customer with a purchase on or before ``as_of``, unordered)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    unit_days(time_unit)
    frame = stx.spark.sql(features_sql(stx, as_of, time_unit, SPARK, ordered=False))
    fields = [f for f in frame.schema.fields if f.name not in ("_recent", "_earlier")]
    at = [f.name for f in fields].index("count_180d") + 1
    fields.insert(at, StructField("spend_trend", DoubleType()))
    schema = StructType(fields)
    arrow = to_arrow_schema(schema)

    def finish(batches):
        import pyarrow as pa

        for batch in batches:
            out = finish_features(batch.to_pandas(), as_of, time_unit)
            yield from pa.Table.from_pandas(out, schema=arrow, preserve_index=False).to_batches()

    return frame.mapInArrow(finish, schema)


def with_rfm_scores(features: DataFrame, bins: int = 5) -> DataFrame:
    """``features`` with ``r_score, f_score, m_score`` as :func:`clvtier.segment.rfm.rfm_score_sql`
    gives them (equal values share a score: ``ceil(rank() * bins / n)``), from exact ranks."""
    recency, frequency, monetary = RFM_COLUMNS
    for name, column, descending in zip(_SCORES, (recency, frequency, monetary), (True, False, False),
                                        strict=True):
        ranks = Ranks(features, column)
        score = F.ceil(rank_min(ranks, descending) * bins / F.lit(ranks.n)).cast("bigint")
        features = ranks.join(features, **{name: score})
    return features


__all__ = ["features_frame", "with_rfm_scores"]
