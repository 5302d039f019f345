"""Starting (or joining) the Spark session the engine runs in, with the settings its SQL needs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

from clvtier.errors import InputError

ENGINES = ("duckdb", "spark")
#: SQL settings the shared SQL text relies on (clvtier.data.dialect): "quoted" identifiers,
#: string literals without backslash escapes, dates in UTC.
SQL_SETTINGS = {
    "spark.sql.ansi.doubleQuotedIdentifiers": "true",
    "spark.sql.parser.escapedStringLiterals": "true",
    "spark.sql.session.timeZone": "UTC",
}


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise InputError("engine", f"valid options are {', '.join(map(repr, ENGINES))}; got {engine!r}")
    return engine


def java_version() -> int | None:
    """The major version of the ``java`` on JAVA_HOME or PATH, or None when there is none."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        return None
    try:
        text = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except OSError:
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not found:
        return None
    major = int(found.group(1))
    return int(found.group(2)) if major == 1 and found.group(2) else major


def spark_session(master: str | None = None):
    """The active Spark session (under ``spark-submit``), else a new one on ``master`` (default
    ``local[*]``), with :data:`SQL_SETTINGS`. A one-line InputError when pyspark or Java 17 is
    missing."""
    # clvtier hands Spark Arrow batches and converts them itself, so pandas 3 is safe here
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas",
                            category=FutureWarning)
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise InputError("--engine spark", "needs pyspark: pip install 'clvtier[spark]'") from None
    session = SparkSession.getActiveSession()
    if session is None:
        submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # launched by spark-submit: its JVM is up
        if not submitted:
            version = java_version()
            if version is None or version < 17:
                found = "no java on JAVA_HOME or PATH" if version is None else f"found Java {version}"
                raise InputError("--engine spark", f"needs Java 17 or later ({found}); install it, e.g. "
                                                   "apt-get install openjdk-17-jre-headless")
        # executors must run this interpreter (it has clvtier and its dependencies)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = SparkSession.builder.appName("clvtier")
        if master or not submitted:
            builder = builder.master(master or "local[*]")
        builder = builder.config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
        session = builder.getOrCreate()
        if session.sparkContext.master.startswith("local") and "spark.sql.shuffle.partitions" not in (
                os.environ.get("PYSPARK_SUBMIT_ARGS", "")):
            # one machine: a few shuffle partitions per core, not Spark's 200 meant for clusters
            session.conf.set("spark.sql.shuffle.partitions", str(4 * session.sparkContext.defaultParallelism))
    for key, value in SQL_SETTINGS.items():
        session.conf.set(key, value)
    session.sparkContext.setLogLevel("ERROR")
    return session


__all__ = ["ENGINES", "SQL_SETTINGS", "check_engine", "java_version", "spark_session"]


@contextmanager
def released_cache(spark):
    """Unpersist, on the way out, every RDD cached in the block: the job's checkpoints (a
    ``localCheckpoint`` is not released by its DataFrame's ``unpersist``) and rank tables, so a
    long-lived session scoring again and again does not fill its executors' memory. Cached data
    that existed before the block is kept."""
    context = spark.sparkContext._jsc
    before = set(context.getPersistentRDDs().keySet())
    try:
        yield
    finally:
        for key, rdd in context.getPersistentRDDs().items():
            if key not in before:
                rdd.unpersist(False)
