"""The Spark engine (``--engine spark``): validation, features and scoring on Apache Spark with
the same SQL, reason codes and answers as the local DuckDB engine. Needs ``pip install
'clvtier[spark]'`` and Java 17."""

from clvtier.spark.session import ENGINES, spark_session

__all__ = ["ENGINES", "spark_session"]
