"""``--engine spark``: ``clvtier features`` and ``clvtier score`` on Apache Spark.

The same steps as the local engine, each on Spark: validation (:mod:`clvtier.spark.load`, the
local SQL rendered for Spark), features (the local feature SQL, finished by the same pandas
function batch by batch), RFM scores and the policy's population statistics from exact
distributed ranks (:mod:`clvtier.spark.ranks`), the model and the policy's verdict applied per
Arrow batch on the executors by the local engine's own :func:`predict_chunk` and
:func:`tier_chunk`. Outputs are Parquet datasets, ordered by customer id, committed by a rename.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa

from clvtier.data import LoadSpec, to_date
from clvtier.errors import InputError
from clvtier.pipelines.features import FeaturesResult
from clvtier.pipelines.score import ScoreResult, load, predict_chunk, tier_chunk
from clvtier.pipelines.steps import Steps
from clvtier.tiering.policy import SCORE, FittedPolicy, TierPolicy
from clvtier.tracking import resolve_tracking_uri, use_tracking_uri
from clvtier.tracking.runs import log_scoring


def _check_output(path, what: str = "output") -> str:
    text = str(path)
    if Path(text.rstrip("/")).suffix.lower() != ".parquet":
        raise InputError(what, f"the Spark engine writes a Parquet dataset: name it <name>.parquet; "
                               f"got {text}")
    return text


def build_features_spark(source, *, as_of, output, time_unit: str = "days", spec: LoadSpec | None = None,
                         rejects=None, master: str | None = None) -> FeaturesResult:
    """:func:`clvtier.pipelines.features.build_features` on Spark: the feature table as a Parquet
    dataset ordered by customer id, rejects (when any) as a Parquet dataset
    (default ``<output>.rejects.parquet``)."""
    from clvtier.spark import spark_session
    from clvtier.spark.features import features_frame
    from clvtier.spark.load import checkpoint, load_spark
    from clvtier.spark.output import write_dataset
    from clvtier.spark.session import released_cache

    output = _check_output(output)
    target = _check_output(rejects if rejects is not None else output.rstrip("/") + ".rejects.parquet",
                           "rejects")
    day = to_date(as_of, what="as_of")
    spark = spark_session(master)
    with released_cache(spark):
        stx = load_spark(spark, source, spec or LoadSpec())
        accounting = stx.accounting(day)
        table = checkpoint(features_frame(stx, day, time_unit))
        customers = table.count()
        write_dataset(table.orderBy("customer_id"), output)
        if accounting.rows_quarantined:
            write_dataset(stx.rejects().orderBy("source_line"), target)
    notes = [n for n in (stx.stale_as_of(day),) if n]
    return FeaturesResult(Path(output), customers, accounting, None,
                          Path(target) if accounting.rows_quarantined else None, notes)


def score_spark(model, source, *, as_of, output, spec: LoadSpec | None = None, policy=None, lang: str = "en",
                log_to_mlflow: bool = True, tracking_uri: str | None = None, master: str | None = None,
                progress: Callable[[str, float | None], None] | None = None) -> ScoreResult:
    """:func:`clvtier.pipelines.score.score` on Spark: the same columns and values, written as a
    Parquet dataset ordered by customer id, moved into place only once every step (the MLflow run
    included) has succeeded."""
    from clvtier.spark import spark_session
    from clvtier.spark.features import features_frame, with_rfm_scores
    from clvtier.spark.load import checkpoint, load_spark
    from clvtier.spark.output import staged_dataset
    from clvtier.spark.session import released_cache

    output = _check_output(output)
    day = to_date(as_of, what="as_of")
    step = Steps(progress)
    uri = resolve_tracking_uri(tracking_uri)
    if log_to_mlflow or str(model).startswith("models:/"):
        use_tracking_uri(uri)
    with step("load model and policy"):
        loaded, policy = load(model, policy, uri)
        spark = spark_session(master)
    with released_cache(spark):
        with step("read and validate"):
            stx = load_spark(spark, source, spec or LoadSpec())
            accounting = stx.accounting(day)
            if accounting.rows_used == 0:
                raise InputError(stx.source, f"no valid transactions on or before as_of {day}")
        with step("features"):
            base = checkpoint(features_frame(stx, day, loaded.model.time_unit))
            features = checkpoint(with_rfm_scores(base))
        with step("predict"):
            predictions = checkpoint(predict(features, loaded.model, policy, day))
            customers = predictions.count()
        with staged_dataset(spark, output) as staged:
            with step("tier and write"):
                fitted, ranked, ranks = fit_policy(predictions, policy, customers)
                assign(ranked, fitted, loaded, lang, ranks).orderBy("_key").drop("_key").write.parquet(staged)
                tiers = tier_table(spark.read.parquet(staged), fitted, lang)
            result = ScoreResult(output=Path(output), model=loaded, policy=policy,
                                 cutoffs=fitted.summary(), accounting=accounting, customers=customers,
                                 tiers=tiers, seconds=step.seconds,
                                 notes=[*fitted.warnings, *filter(None, [stx.stale_as_of(day)])])
            if log_to_mlflow:
                with step("log to MLflow"):
                    result.tracking_uri = uri
                    result.run_id = log_scoring(result, uri=uri, params=_params(result, source, day))
    return result


def predict(features, model, policy: TierPolicy, day):
    """The model's columns for every customer, applied per batch on the executors (the model is
    shipped with the task), with ``_key``: the customer id in its own type, for ordering."""

    def run(frame: pd.DataFrame) -> pd.DataFrame:
        key = frame["customer_id"].to_numpy()
        frame.attrs.update(as_of=day.isoformat(), time_unit=model.time_unit)
        out = predict_chunk(frame, model, policy)
        out["_key"] = key
        return out

    from clvtier.spark.output import map_pandas

    return map_pandas(features, run)


def fit_policy(predictions, policy: TierPolicy, n: int):
    """The policy fitted on the whole population from distributed order statistics, the rows with
    ``_rank_<column>`` (each rank input's share of the population at or below the row's value,
    as the local engine's lookup gives it), and the names of those columns by input."""
    from pyspark.sql import functions as F

    from clvtier.spark.load import checkpoint
    from clvtier.spark.output import map_pandas
    from clvtier.spark.ranks import SparkPopulation

    inputs = list(policy.score.inputs) if policy.kind != "when" and policy.score.scale == "rank" else []
    fitted = FittedPolicy(policy, {c: None for c in inputs}, [], {}, n)
    population = SparkPopulation(predictions, n)
    ranked = predictions
    for c in inputs:
        share = (F.col("_below") + F.col("_n")) / F.lit(n)
        ranked = population.ranks(c).join(ranked, **{f"_rank_{c}": share})
    ranks = {c: f"_rank_{c}" for c in inputs}
    if policy.kind == "shares":

        def score(frame: pd.DataFrame) -> pd.DataFrame:
            values = {c: frame[c].to_numpy(dtype=float) for c in policy.columns}
            frame[SCORE] = fitted.score(values, {c: frame[r].to_numpy() for c, r in ranks.items()})
            return frame

        ranked = checkpoint(map_pandas(checkpoint(ranked), score))
        population.frame = ranked
    fitted.resolve(population)
    return fitted, ranked, ranks


def assign(ranked, fitted: FittedPolicy, loaded, lang: str, ranks: dict[str, str]):
    """The output rows, by the local engine's :func:`tier_chunk`, per batch on the executors."""
    from clvtier.spark.output import map_arrow

    def run(table: pa.Table) -> pa.Table:
        given = {c: table[r].to_numpy() for c, r in ranks.items()} or None
        out = tier_chunk(table, fitted, loaded, lang, ranks=given)
        return out.append_column("_key", table["_key"])

    return map_arrow(ranked, run)


def tier_table(output, fitted: FittedPolicy, lang: str) -> pd.DataFrame:
    """Customers, value shares and at-risk counts per tier (the local engine's tier table)."""
    from pyspark.sql import functions as F

    rows = {r["tier"]: r for r in output.groupBy("tier").agg(
        F.count("*").alias("customers"), F.sum(F.col("at_risk").cast("long")).alias("at_risk"),
        F.sum("predicted_clv").alias("predicted"), F.sum("monetary_total").alias("past")).collect()}
    tiers = fitted.policy.tiers
    table = pd.DataFrame({
        "tier": [t.code for t in tiers], "label": [t.label.get(lang) for t in tiers],
        "customers": [int(rows[t.code]["customers"]) if t.code in rows else 0 for t in tiers],
        "predicted": [float(rows[t.code]["predicted"]) if t.code in rows else 0.0 for t in tiers],
        "past": [float(rows[t.code]["past"]) if t.code in rows else 0.0 for t in tiers],
        "at_risk": [int(rows[t.code]["at_risk"]) if t.code in rows else 0 for t in tiers]})
    table["share_customers"] = table["customers"] / table["customers"].sum()
    table["share_predicted_value"] = table["predicted"] / (table["predicted"].sum() or 1.0)
    table["share_past_value"] = table["past"] / (table["past"].sum() or 1.0)
    return table[["tier", "label", "customers", "share_customers", "share_predicted_value",
                  "share_past_value", "at_risk"]]


def _params(result: ScoreResult, source, day) -> dict:
    return {"model.name": result.model.name, "model.version": result.model.version,
            "model.uri": result.model.uri, "as_of": str(day), "engine": "spark",
            "input": str(source), "output_format": "parquet-dataset", "policy": result.policy.label,
            "policy.digest": result.policy.digest()}


__all__ = ["build_features_spark", "score_spark"]
