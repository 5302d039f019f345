"""Batch scoring: a registered tiering model and a tier policy applied to a transactions file.

The job never holds the transactions or the full customer table in pandas:

1. DuckDB reads and validates the file into a scratch database on disk (it spills to disk
   when the data outgrow ``memory_limit``) and computes every customer's features and the RFM
   scores over the whole population (window functions).
2. Customers stream out in ``chunk_size`` batches ordered by id; each batch is scored by the
   model and appended to a scratch Parquet file.
3. The policy is fitted on the population's policy columns (a few numeric columns), then each
   batch of the scratch file gets its tier, reason and action and is appended to the output,
   written under a temporary name and renamed only when complete.

The same inputs give the same file, byte for byte: rows are ordered by customer id, batches
have fixed boundaries and nothing time-dependent is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import math
import os
import pickle
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clvtier.data import Accounting, ReadOptions, load_transactions, to_date
from clvtier.data.io import _lit, atomic_output, output_format
from clvtier.errors import InputError
from clvtier.features.summary import features_sql, finish_features
from clvtier.pipelines.steps import Steps
from clvtier.segment.rfm import rfm_score_sql
from clvtier.tiering import OUTPUT_COLUMNS, TieringModel
from clvtier.tiering.policy import TierPolicy, load_policy
from clvtier.tracking import environment_tags, experiment_id, resolve_tracking_uri, use_tracking_uri

log = logging.getLogger(__name__)

SALT_ENV = "CLVTIER_ID_SALT"
#: DuckDB's default memory limit here: beyond it, it spills to the scratch folder.
MEMORY_LIMIT = "4GB"
SCORING_EXPERIMENT = "scoring"
#: Output columns after the model's: the policy's verdict and where it came from.
TIER_COLUMNS = ("tier", "at_risk", "tier_reason", "action", "model_name", "model_version", "policy")
SCORE_COLUMNS = (*OUTPUT_COLUMNS, *TIER_COLUMNS)
_RFM = ("r_score", "f_score", "m_score")


@dataclass
class LoadedModel:
    model: TieringModel
    name: str
    version: str
    uri: str


@dataclass
class ScoreResult:
    """What a scoring run wrote and measured."""

    output: Path
    model: LoadedModel
    policy: TierPolicy
    cutoffs: dict
    accounting: Accounting
    customers: int
    tiers: pd.DataFrame
    migration: pd.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)
    run_id: str | None = None
    tracking_uri: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def format(self) -> str:
        """Plain-text summary for people: accounting, tier table, migration, warnings."""
        t = self.tiers.copy()
        for c in ("share_customers", "share_predicted_value", "share_past_value"):
            t[c] = t[c].map("{:.1%}".format)
        lines = [
            self.accounting.format(),
            "",
            f"scored {self.customers:,} customers with {self.model.name} v{self.model.version}, "
            f"policy {self.policy.label} -> {self.output}",
            "",
            t.to_string(index=False),
        ]
        if self.migration is not None:
            lines += ["", "migration (rows: previous tier, columns: tier now)", self.migration.to_string()]
        lines += [f"WARNING: {w}" for w in self.warnings]
        if self.run_id:
            lines.append(
                f"logged run {self.run_id} in experiment {SCORING_EXPERIMENT!r} ({self.tracking_uri})"
            )
        return "\n".join(lines)


def load_model(ref: str) -> LoadedModel:
    """A tiering model from an exported folder (``models/<name>``, with ``registered.json``) or a
    registry URI (``models:/<name>@champion``, ``models:/<name>/3``)."""
    import mlflow

    from clvtier.tracking.pyfunc import ARTIFACT

    if str(ref).startswith("models:/"):
        name, _, which = str(ref).removeprefix("models:/").partition("@")
        client = mlflow.MlflowClient()
        try:
            if which:
                version = client.get_model_version_by_alias(name, which).version
            else:
                name, _, version = name.partition("/")
            path = mlflow.artifacts.download_artifacts(str(ref))
        except mlflow.exceptions.MlflowException as exc:
            raise InputError(str(ref), f"cannot load from the registry: {str(exc).splitlines()[0]}") from None
        folder = Path(path)
    else:
        folder = Path(ref)
        info = folder / "registered.json"
        if not (folder / "MLmodel").is_file() or not info.is_file():
            raise InputError(
                str(ref),
                "not an exported tiering model (expected MLmodel and registered.json; "
                "train one with `clvtier train`)",
            )
        meta = json.loads(info.read_text())
        name, version = meta["registered_model"], str(meta["version"])
    pickled = folder / "artifacts" / f"{ARTIFACT}.pkl"
    if not pickled.is_file():
        raise InputError(str(ref), f"the model has no {pickled.name}: not a clvtier tiering model")
    with open(pickled, "rb") as handle:
        model = pickle.load(handle)
    return LoadedModel(model=model, name=name, version=str(version), uri=str(ref))


def pseudonymize(ids: pd.Series, salt: str) -> pd.Series:
    """HMAC-SHA256 of each id under ``salt``, first 20 hex digits: stable for one salt, not
    reversible without it."""
    key = salt.encode()
    return ids.astype(str).map(lambda v: hmac.new(key, v.encode(), hashlib.sha256).hexdigest()[:20])


def id_salt() -> str:
    salt = os.environ.get(SALT_ENV, "")
    if len(salt) < 16:
        raise InputError(
            SALT_ENV,
            "--pseudonymize-ids needs a secret salt of at least 16 characters in "
            f"the environment variable {SALT_ENV}",
        )
    return salt


def score(
    model: str | LoadedModel,
    source,
    *,
    as_of,
    output,
    policy: str | Path | TierPolicy | None = None,
    previous=None,
    drift_threshold: float = 0.2,
    pseudonymize_ids: bool = False,
    columns=None,
    options: ReadOptions | None = None,
    returns: str = "net",
    drop_duplicates: bool = False,
    max_amount: float | None = None,
    chunk_size: int = 250_000,
    memory_limit: str | None = None,
    lang: str = "en",
    log_to_mlflow: bool = True,
    tracking_uri: str | None = None,
    progress: Callable[[str, float | None], None] | None = None,
) -> ScoreResult:
    """Score every customer of ``source`` as of ``as_of`` and write one row each to ``output``.

    Parameters
    ----------
    model : str or LoadedModel
        Exported folder or ``models:/`` URI (see :func:`load_model`).
    source : path or DataFrame
        Transactions (CSV, Parquet, Excel), mapped with ``columns`` and read with ``options``;
        ``returns``, ``drop_duplicates`` and ``max_amount`` as in :func:`~clvtier.data.load_transactions`.
    as_of : date-like
        Last day of history, inclusive; later rows are counted as after ``as_of`` and not used.
    output : path
        ``.parquet`` or ``.csv``; columns :data:`SCORE_COLUMNS`.
    policy : name, path or TierPolicy, optional
        Default: the policy the model was trained with, else ``corporate4``.
    previous : path, optional
        An earlier output: the tier migration matrix is computed and tier size changes above
        ``drift_threshold`` (a share of the earlier size) are warned about.
    pseudonymize_ids : bool, default=False
        Replace customer ids by their salted hash (salt from ``CLVTIER_ID_SALT``).
    chunk_size : int, default=250_000
        Customers per batch: memory in Python grows with it, not with the data.
    memory_limit : str, optional
        DuckDB's memory limit (e.g. ``"8GB"``); default :data:`MEMORY_LIMIT`. Past it, DuckDB
        spills to the scratch folder (in ``TMPDIR``).
    log_to_mlflow : bool, default=True
        Log a run in the ``scoring`` experiment: tier sizes and value shares, model version, row
        accounting, policy, migration. No customer rows or ids.
    """
    step = Steps(progress)
    if chunk_size < 1:
        raise InputError("chunk_size", f"must be a positive number of customers; got {chunk_size}")
    fmt = output_format(output)
    day = to_date(as_of, what="as_of")
    salt = id_salt() if pseudonymize_ids else None
    if not drift_threshold > 0:
        raise InputError("drift_threshold", f"must be a positive share, e.g. 0.2; got {drift_threshold}")
    if previous is not None:
        _tiers_relation(previous)  # fail before the work, not after it
    limit = memory_limit or MEMORY_LIMIT
    try:
        duckdb.connect().execute(f"SET memory_limit = {_lit(limit)}")
    except duckdb.Error:
        raise InputError("--memory-limit", f"expected a size like 4GB or 500MB; got {limit!r}") from None
    uri = resolve_tracking_uri(tracking_uri)
    with step("load model and policy"):
        if str(model).startswith("models:/"):
            use_tracking_uri(uri)
        loaded = model if isinstance(model, LoadedModel) else load_model(model)
        policy = _policy(policy, loaded.model)
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="clvtier-score-")))
        con = stack.enter_context(duckdb.connect(str(scratch / "scratch.duckdb")))
        con.execute(f"SET temp_directory = {_lit(scratch / 'spill')}")
        con.execute(f"SET memory_limit = {_lit(limit)}")
        con.execute("SET preserve_insertion_order = false")
        with step("read and validate"):
            tx = load_transactions(
                source,
                columns=columns,
                options=options,
                returns=returns,
                drop_duplicates=drop_duplicates,
                max_amount=max_amount,
                con=con,
            )
            accounting = tx.accounting(day)
            if accounting.rows_used == 0:
                raise InputError(tx.source, f"no valid transactions on or before as_of {day}")
        with step("features"):
            con.execute(
                f"CREATE TABLE features AS SELECT *, {rfm_score_sql()} "
                f"FROM ({features_sql(tx, day, loaded.model.time_unit)})"
            )
        with step("predict"):
            predictions = scratch / "predictions.parquet"
            customers = _predict(con, loaded.model, policy, day, predictions, chunk_size)
        with step("tier and write"):
            population = pq.read_table(predictions, columns=policy.columns).to_pandas()
            fitted = policy.fit(population)
            del population
            tiers = _write(predictions, output, fmt, fitted, loaded, chunk_size, salt, lang)
    result = ScoreResult(
        output=Path(output),
        model=loaded,
        policy=policy,
        cutoffs=fitted.summary(),
        accounting=accounting,
        customers=customers,
        tiers=tiers,
        seconds=step.seconds,
    )
    if previous is not None:
        with step("compare with previous"):
            result.migration, result.warnings = compare(previous, output, policy, drift_threshold)
            for w in result.warnings:
                log.warning(w)
    if log_to_mlflow:
        with step("log to MLflow"):
            result.tracking_uri = uri
            result.run_id = _log_run(
                result, uri, source, day, chunk_size, pseudonymize_ids, drift_threshold, previous
            )
    return result


def _policy(policy, model: TieringModel) -> TierPolicy:
    if isinstance(policy, TierPolicy):
        return policy
    if policy is None and model.info.get("policy"):
        return TierPolicy.model_validate(model.info["policy"])
    return load_policy(policy)


def _predict(con, model: TieringModel, policy: TierPolicy, day, path: Path, chunk_size: int) -> int:
    """Stream the feature table through the model into a Parquet file; return the customer count."""
    extra = [c for c in policy.columns if c not in OUTPUT_COLUMNS]
    reader = con.sql("SELECT * FROM features ORDER BY customer_id").to_arrow_reader(chunk_size)
    writer = None
    customers = 0
    try:
        for batch in _rebatch(reader, chunk_size):
            frame = batch.to_pandas()
            scores = frame[list(_RFM)]
            features = finish_features(frame.drop(columns=list(_RFM)), day, model.time_unit)
            features["rfm_score"] = scores.sum(axis=1).to_numpy()
            missing = [c for c in extra if c not in features.columns]
            if missing:
                raise InputError(
                    f"policy {policy.name}",
                    f"needs column {missing[0]!r}, which neither the model "
                    "output nor the customer features have",
                )
            out = model.predict_features(features, scores)
            out["customer_id"] = out["customer_id"].astype(str)
            for c in extra:
                out[c] = features[c].to_numpy()
            table = pa.Table.from_pandas(out, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
            customers += len(out)
    finally:
        if writer is not None:
            writer.close()
    if customers == 0:
        raise InputError("as_of", "no customer has a purchase on or before as_of")
    return customers


def _rebatch(reader, size: int):
    """Tables of exactly ``size`` rows (the last one shorter) from a stream of record batches,
    so chunk boundaries, and hence the output file, never depend on how the stream was cut."""
    pending, rows = [], 0
    for batch in reader:
        pending.append(batch)
        rows += batch.num_rows
        while rows >= size:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, size)
            rest = table.slice(size)
            pending, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield pa.Table.from_batches(pending)


def _write(
    predictions: Path,
    output,
    fmt: str,
    fitted,
    loaded: LoadedModel,
    chunk_size: int,
    salt: str | None,
    lang: str,
) -> pd.DataFrame:
    """Tier every batch and append it to ``output`` (atomically); return the tier table."""
    codes = [t.code for t in fitted.policy.tiers]
    customers = np.zeros(len(codes), dtype=np.int64)
    at_risk = np.zeros(len(codes), dtype=np.int64)
    predicted: list[list[float]] = [[] for _ in codes]  # per tier, one exact sum per chunk
    past: list[list[float]] = [[] for _ in codes]
    with atomic_output(output) as tmp:
        writer = None
        for batch in pq.ParquetFile(predictions).iter_batches(batch_size=chunk_size):
            frame = batch.to_pandas()
            verdict = fitted.assign(frame, lang=lang)
            out = frame[list(OUTPUT_COLUMNS)].copy()
            for c in verdict.columns:
                out[c] = verdict[c].to_numpy()
            out["model_name"] = loaded.name
            out["model_version"] = loaded.version
            out["policy"] = fitted.policy.label
            for i, code in enumerate(codes):
                rows = (out["tier"] == code).to_numpy()
                customers[i] += rows.sum()
                at_risk[i] += out["at_risk"].to_numpy()[rows].sum()
                predicted[i].append(math.fsum(out["predicted_clv"].to_numpy()[rows]))
                past[i].append(math.fsum(out["monetary_total"].to_numpy()[rows]))
            if salt is not None:
                out["customer_id"] = pseudonymize(out["customer_id"], salt)
            if fmt == "csv":
                out.to_csv(tmp, index=False, header=writer is None, mode="w" if writer is None else "a")
                writer = True
            else:
                table = pa.Table.from_pandas(out, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
        if fmt == "parquet" and writer is not None:
            writer.close()
    predicted_sum = np.array([math.fsum(s) for s in predicted])
    past_sum = np.array([math.fsum(s) for s in past])
    return pd.DataFrame(
        {
            "tier": codes,
            "label": [t.label.get(lang) for t in fitted.policy.tiers],
            "customers": customers,
            "share_customers": customers / customers.sum(),
            "share_predicted_value": predicted_sum / (math.fsum(predicted_sum) or 1.0),
            "share_past_value": past_sum / (math.fsum(past_sum) or 1.0),
            "at_risk": at_risk,
        }
    )


def _tiers_relation(source) -> str:
    """SQL of ``customer_id, tier`` (text) from a scoring output file."""
    path = Path(source)
    fmt = output_format(path)
    if not path.is_file():
        raise InputError(str(path), "file not found")
    reader = (
        f"read_parquet({_lit(path)})" if fmt == "parquet" else f"read_csv({_lit(path)}, all_varchar=true)"
    )
    return f"SELECT CAST(customer_id AS VARCHAR) AS customer_id, CAST(tier AS VARCHAR) AS tier FROM {reader}"


def migration_matrix(previous, current, order: list[str]) -> pd.DataFrame:
    """Customers by previous tier (rows, plus ``new``) and current tier (columns, plus ``gone``).

    ``previous`` and ``current`` are scoring outputs (paths) or frames with ``customer_id`` and
    ``tier``; the join runs in DuckDB, so only the matrix reaches pandas."""
    con = duckdb.connect()
    sides = []
    for name, side in (("_before", previous), ("_now", current)):
        if isinstance(side, pd.DataFrame):
            con.register(name, side[["customer_id", "tier"]].astype(str))
            sides.append(f"SELECT * FROM {name}")
        else:
            sides.append(_tiers_relation(side))
    try:
        counts = con.sql(f"""
            SELECT coalesce(b.tier, 'new') AS before, coalesce(n.tier, 'gone') AS now, count(*) AS customers
            FROM ({sides[0]}) b FULL OUTER JOIN ({sides[1]}) n USING (customer_id)
            GROUP BY ALL""").df()
    except duckdb.Error as exc:
        where = previous if not isinstance(previous, pd.DataFrame) else "<previous>"
        raise InputError(
            str(where), f"not a scoring output (needs customer_id and tier): {str(exc).splitlines()[0]}"
        ) from None
    rows = [*order, *sorted(set(counts["before"]) - set(order) - {"new"}), "new"]
    cols = [*order, *sorted(set(counts["now"]) - set(order) - {"gone"}), "gone"]
    matrix = counts.pivot_table(
        index="before", columns="now", values="customers", aggfunc="sum", fill_value=0
    )
    matrix = matrix.reindex(index=rows, columns=cols, fill_value=0).astype(np.int64)
    matrix.index.name, matrix.columns.name = "before", "now"
    return matrix


def drift_warnings(matrix: pd.DataFrame, order: list[str], threshold: float) -> list[str]:
    """A warning for each tier whose size changed by more than ``threshold`` of its earlier size."""
    out = []
    for tier in order:
        before = int(matrix.loc[tier].sum()) if tier in matrix.index else 0
        now = int(matrix[tier].sum()) if tier in matrix.columns else 0
        if before == 0 and now == 0:
            continue
        change = (now - before) / before if before else math.inf
        if abs(change) > threshold:
            out.append(
                f"tier {tier!r} changed size by {change:+.1%} ({before:,} -> {now:,} customers), "
                f"more than the {threshold:.0%} allowed"
            )
    return out


def compare(previous, output, policy: TierPolicy, threshold: float) -> tuple[pd.DataFrame, list[str]]:
    order = [t.code for t in policy.tiers]
    matrix = migration_matrix(previous, output, order)
    return matrix, drift_warnings(matrix, order, threshold)


def _log_run(result: ScoreResult, uri: str, source, day, chunk_size, pseudonymized, threshold, previous):
    """One run in the ``scoring`` experiment: aggregates only, never customer rows or ids."""
    import mlflow

    use_tracking_uri(uri)
    exp = experiment_id(SCORING_EXPERIMENT)
    with mlflow.start_run(
        experiment_id=exp, run_name=f"score {result.model.name} v{result.model.version} as of {day}"
    ) as run:
        mlflow.set_tags({**environment_tags(), "clvtier.command": "score"})
        mlflow.log_params(
            {
                "model.name": result.model.name,
                "model.version": result.model.version,
                "model.uri": result.model.uri,
                "as_of": str(day),
                "input": source if isinstance(source, str | Path) else "<DataFrame>",
                "output_format": output_format(result.output),
                "policy": result.policy.label,
                "policy.digest": result.policy.digest(),
                "chunk_size": chunk_size,
                "pseudonymize_ids": pseudonymized,
                "drift_threshold": threshold,
                "previous": str(previous) if previous is not None else "",
            }
        )
        acc = {
            f"rows.{k}": v
            for k, v in result.accounting.as_dict().items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        mlflow.log_metrics({**acc, "customers": result.customers, "drift_warnings": len(result.warnings)})
        for row in result.tiers.itertuples():
            mlflow.log_metrics(
                {
                    f"tier.{row.tier}.customers": row.customers,
                    f"tier.{row.tier}.share_customers": row.share_customers,
                    f"tier.{row.tier}.share_predicted_value": row.share_predicted_value,
                    f"tier.{row.tier}.share_past_value": row.share_past_value,
                    f"tier.{row.tier}.at_risk": row.at_risk,
                }
            )
        mlflow.log_text(result.tiers.to_csv(index=False), "tier_table.csv")
        mlflow.log_dict(result.policy.model_dump(mode="json"), "policy.yaml")
        mlflow.log_dict(result.cutoffs, "policy_cutoffs.json")
        mlflow.log_dict(result.accounting.as_dict(), "row_accounting.json")
        if result.migration is not None:
            mlflow.log_text(result.migration.to_csv(), "migration.csv")
            if result.warnings:
                mlflow.log_text("\n".join(result.warnings) + "\n", "drift_warnings.txt")
    return run.info.run_id


__all__ = [
    "SCORE_COLUMNS",
    "ScoreResult",
    "compare",
    "drift_warnings",
    "load_model",
    "migration_matrix",
    "pseudonymize",
    "score",
]
