"""Batch scoring: a registered tiering model and a tier policy applied to a transactions file.

The job never holds the transactions or the full customer table in pandas:

1. DuckDB validates the rows as it reads them (a Parquet file in place, other files copied into
   an in-memory scratch database that spills to disk past ``memory_limit``) and computes every
   customer's features; the rows and the customer-day table are then dropped. The RFM scores
   rank each customer against the population's sorted R, F and M values (three numpy arrays).
2. Customers stream out in ``chunk_size`` batches ordered by id; two threads finish and score
   batches (in id order, whichever thread ran them), which are appended to a scratch Arrow file.
3. The policy is fitted on the population's policy columns (a few numeric columns), then each
   batch of the scratch file gets its tier, reason and action (text built in numpy from the
   policy's templates, byte for byte ``str.format``; two threads) and is appended to the output, written
   under a temporary name and renamed only when complete. Parquet is encoded and written on a
   background thread.

The same inputs give the same file, byte for byte: rows are ordered by customer id, batches
have fixed boundaries and nothing time-dependent is written.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clvtier.data import Accounting, LoadSpec, load_transactions, to_date
from clvtier.data.io import atomic_output, check_no_overlap, output_format, spreadsheet_safe, sql_literal
from clvtier.data.privacy import id_salt, pseudonym_sql
from clvtier.data.schema import drop_rows
from clvtier.errors import InputError
from clvtier.features.summary import features_sql, finish_features
from clvtier.pipelines.steps import Steps
from clvtier.segment import RFM10
from clvtier.segment.base import RFM_COLUMNS
from clvtier.segment.rfm import RFMPopulation
from clvtier.tiering import OUTPUT_COLUMNS, TieringModel
from clvtier.tiering.monitor import Migration, check_previous, compare, pseudonym_mismatch
from clvtier.tiering.policy import TierPolicy, load_policy
from clvtier.tracking import resolve_tracking_uri, use_tracking_uri
from clvtier.tracking.models import LoadedModel, load_model
from clvtier.tracking.runs import SCORING_EXPERIMENT, log_scoring

log = logging.getLogger(__name__)

#: DuckDB's default memory limit here: beyond it, it spills to the scratch folder (10M customers /
#: 104M transactions then peak at about 7 GB in all).
MEMORY_LIMIT = "6GB"
#: Output columns after the model's: the policy's verdict and where it came from.
TIER_COLUMNS = ("tier", "at_risk", "tier_reason", "action", "model_name", "model_version", "policy")
_SEGMENT_AT = OUTPUT_COLUMNS.index("rfm_segment") + 1
#: The model's columns with the RFM segment's label (in the run's language) after its code, then
#: the policy's columns.
SCORE_COLUMNS = (
    *OUTPUT_COLUMNS[:_SEGMENT_AT],
    "rfm_segment_label",
    *OUTPUT_COLUMNS[_SEGMENT_AT:],
    *TIER_COLUMNS,
)
_RFM = ("r_score", "f_score", "m_score")


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
    migration: Migration | None = None
    notes: list[str] = field(default_factory=list)
    run_id: str | None = None
    tracking_uri: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        """Drift warnings of the migration, then the run's other warnings (policy, ids)."""
        return (self.migration.warnings if self.migration is not None else []) + self.notes

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
            what = "policy change: " if self.migration.policy_change else ""
            lines += [
                "",
                f"{what}migration (rows: previous tier, columns: tier now)",
                self.migration.matrix.to_string(),
            ]
        lines += [f"WARNING: {w}" for w in self.warnings]
        lines += [f"MODEL WARNING (from training): {w}" for w in self.model.model.info.get("warnings", [])]
        if self.run_id:
            lines.append(
                f"logged run {self.run_id} in experiment {SCORING_EXPERIMENT!r} ({self.tracking_uri})"
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class ScoreOptions:
    """The scoring job's settings, checked before any work (:func:`check_options`)."""

    as_of: object
    output: Path
    previous: Path | None = None
    drift_threshold: float = 0.2
    allow_policy_change: bool = False
    pseudonymize_ids: bool = False
    chunk_size: int = 250_000
    memory_limit: str = MEMORY_LIMIT
    lang: str = "en"
    escape_formulas: bool = True


def check_options(o: ScoreOptions, source=None) -> tuple:
    """Validate every option that does not need the data (paths included: no output may be the
    transactions or the previous tiers); returns (as_of date, output format, salt or None)."""
    check_no_overlap({"transactions": source, "previous tiers": o.previous}, {"output": o.output})
    if o.chunk_size < 1:
        raise InputError("chunk_size", f"must be a positive number of customers; got {o.chunk_size}")
    if not o.drift_threshold > 0:
        raise InputError("drift_threshold", f"must be a positive share, e.g. 0.2; got {o.drift_threshold}")
    try:
        duckdb.connect().execute(f"SET memory_limit = {sql_literal(o.memory_limit)}")
    except duckdb.Error:
        raise InputError(
            "memory_limit", f"expected a size like 4GB or 500MB; got {o.memory_limit!r}"
        ) from None
    return to_date(o.as_of, what="as_of"), output_format(o.output), id_salt() if o.pseudonymize_ids else None


def load(model, policy, uri: str) -> tuple[LoadedModel, TierPolicy]:
    """The model (folder or registry URI) and the policy: the given one, else the model's."""
    if str(model).startswith("models:/"):
        use_tracking_uri(uri)
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    return loaded, _policy(policy, loaded.model)


def read(source, spec: LoadSpec | None, day, con) -> Accounting:
    """Read and validate ``source`` as ``con``'s ``tx`` (a Parquet file in place); the accounting
    as of ``day``."""
    tx = load_transactions(source, spec or LoadSpec(), con=con, in_place=True)
    accounting = tx.accounting(day)
    if accounting.rows_used == 0:
        raise InputError(tx.source, f"no valid transactions on or before as_of {day}")
    return tx, accounting


def features(con, tx, day, time_unit: str, salt: str | None = None) -> RFMPopulation:
    """Every customer's features as table ``features`` (the one the scratch database keeps), and
    the population their RFM scores rank against; with ``salt`` its ids are pseudonyms, replaced
    in the engine, so no raw id is stored (scores do not depend on ids)."""
    table = features_sql(tx, day, time_unit, ordered=False)
    if salt is not None:
        table = f"SELECT * REPLACE ({pseudonym_sql('customer_id', salt)} AS customer_id) FROM ({table})"
    con.execute(f"CREATE TABLE features AS {table}")
    # Ranked in numpy on three columns: window functions over the table would sort all of it
    # three times (at 10M customers about half of this step).
    rfm = con.sql(f"SELECT {', '.join(RFM_COLUMNS)} FROM features").fetchnumpy()
    return RFMPopulation(*(rfm[c] for c in RFM_COLUMNS))


@contextlib.contextmanager
def _scratch(output: Path, memory_limit: str):
    """A scratch folder beside the output (``.<output name>.scratch-<pid>``, private to the user)
    with an in-memory DuckDB database that spills into it past ``memory_limit`` (faster than a
    database file, which writes every table out), removed on the way out. Scratch folders of this
    output left by killed runs (their process is gone) are removed first."""
    for stale in output.parent.glob(f".{output.name}.scratch-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    scratch = output.parent / f".{output.name}.scratch-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(mode=0o700, parents=True)
    try:
        with duckdb.connect() as con:  # in memory, spilling to the scratch folder past memory_limit
            con.execute(f"SET temp_directory = {sql_literal(scratch / 'spill')}")
            con.execute(f"SET memory_limit = {sql_literal(memory_limit)}")
            con.execute("SET preserve_insertion_order = false")
            yield scratch, con
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _BackgroundWriter:
    """Appends tables to a Parquet file (or, with ``arrow=True``, an uncompressed Arrow IPC file:
    the scratch predictions, written and read back at memory speed) on a background thread
    (Arrow's writers release the GIL), so that the next chunk is computed while this one is
    encoded and written; tables are written in the order given, at most ``pending`` waiting. An
    error in the writer is raised by the next :meth:`write` or by :meth:`close`."""

    def __init__(self, path, pending: int = 2, *, arrow: bool = False):
        from concurrent.futures import ThreadPoolExecutor

        self.path, self.pending, self.arrow = path, pending, arrow
        self.writer = None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clvtier-writer")
        self.futures: list = []

    def _write(self, table: pa.Table) -> None:
        if self.writer is None:
            self.writer = (pa.ipc.new_file(self.path, table.schema) if self.arrow
                           else pq.ParquetWriter(self.path, table.schema))
        self.writer.write_table(table)

    def write(self, table: pa.Table) -> None:
        while len(self.futures) >= self.pending:
            self.futures.pop(0).result()
        self.futures.append(self.pool.submit(self._write, table))

    def close(self) -> None:
        try:
            for f in self.futures:
                f.result()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
            if self.writer is not None:
                self.writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def score(
    model: str | LoadedModel,
    source,
    *,
    as_of,
    output,
    spec: LoadSpec | None = None,
    policy: str | Path | TierPolicy | None = None,
    previous=None,
    drift_threshold: float = 0.2,
    allow_policy_change: bool = False,
    pseudonymize_ids: bool = False,
    chunk_size: int = 250_000,
    memory_limit: str | None = None,
    lang: str = "en",
    escape_formulas: bool = True,
    log_to_mlflow: bool = True,
    tracking_uri: str | None = None,
    progress: Callable[[str, float | None], None] | None = None,
) -> ScoreResult:
    """Score every customer of ``source`` as of ``as_of`` and write one row each to ``output``.

    Parameters
    ----------
    model : str or LoadedModel
        Exported folder or ``models:/`` URI (see :func:`clvtier.tracking.models.load_model`).
    source : path or DataFrame
        Transactions (CSV, Parquet, Excel), read as ``spec`` says (:class:`~clvtier.data.LoadSpec`).
    as_of : date-like
        Last day of history, inclusive; later rows are counted as after ``as_of`` and not used.
    output : path
        ``.parquet`` or ``.csv``; columns :data:`SCORE_COLUMNS`.
    policy : name, path or TierPolicy, optional
        Default: the policy the model was trained with, else ``corporate4``.
    previous : path, optional
        An earlier output: the tier migration matrix is computed and tier size changes above
        ``drift_threshold`` (a share of the earlier size) are warned about. It must have been
        scored with the same policy unless ``allow_policy_change`` (then the migration is labelled
        a policy change and no drift warning fires).
    pseudonymize_ids : bool, default=False
        Replace customer ids by their salted hash (salt from ``CLVTIER_ID_SALT``).
    chunk_size : int, default=250_000
        Customers per batch: memory in Python grows with it, not with the data.
    memory_limit : str, optional
        DuckDB's memory limit (e.g. ``"8GB"``); default :data:`MEMORY_LIMIT`. Past it, DuckDB
        spills to the scratch folder beside the output.
    log_to_mlflow : bool, default=True
        Log a run in the ``scoring`` experiment: tier sizes and value shares, model version, row
        accounting, policy, migration. No customer rows or ids.
    """
    o = ScoreOptions(
        as_of,
        Path(output),
        None if previous is None else Path(previous),
        drift_threshold,
        allow_policy_change,
        pseudonymize_ids,
        chunk_size,
        memory_limit or MEMORY_LIMIT,
        lang,
        escape_formulas,
    )
    step = Steps(progress)
    day, fmt, salt = check_options(o, source)
    uri = resolve_tracking_uri(tracking_uri)
    if log_to_mlflow or str(model).startswith("models:/"):
        use_tracking_uri(uri)  # a store that cannot be used stops the job before any work
    with step("load model and policy"):
        loaded, policy = load(model, policy, uri)
        policy_change = (
            check_previous(o.previous, policy, allow_policy_change=o.allow_policy_change)
            if o.previous is not None
            else False
        )
    # The output is staged under a hidden name and moved into place only once every step that can
    # fail (the comparison with the previous tiers, MLflow) has succeeded.
    with atomic_output(o.output) as staged:
        with _scratch(o.output, o.memory_limit) as (scratch, con):
            with step("read and validate"):
                tx, accounting = read(source, spec, day, con)
            with step("features"):
                population = features(con, tx, day, loaded.model.time_unit, salt)
                # only the feature table is read from here on: free the rows and the day table
                drop_rows(con)
            with step("predict"):
                predictions = scratch / "predictions.arrow"
                customers = _predict(con, loaded.model, policy, day, predictions, o, population)
            with step("tier and write"):
                fitted = policy.fit(_read_columns(predictions, policy.columns))
                tiers = _write(predictions, staged, fmt, fitted, loaded, o)
        result = ScoreResult(
            output=o.output,
            model=loaded,
            policy=policy,
            cutoffs=fitted.summary(),
            accounting=accounting,
            customers=customers,
            tiers=tiers,
            seconds=step.seconds,
            notes=[*fitted.warnings, *filter(None, [tx.stale_as_of(day)])],
        )
        if o.previous is not None:
            with step("compare with previous"):
                compare_previous(result, staged, o, policy_change)
        if log_to_mlflow:
            with step("log to MLflow"):
                result.tracking_uri = uri
                result.run_id = log_scoring(result, uri=uri, params=_run_params(result, source, day, o))
    return result


def compare_previous(result: ScoreResult, staged: Path, o: ScoreOptions, policy_change: bool) -> None:
    """The migration from ``o.previous`` to the staged output, its drift warnings, and a warning
    when one side holds pseudonyms and the other raw ids."""
    mismatch = pseudonym_mismatch(o.previous, o.pseudonymize_ids)
    result.notes += [mismatch] if mismatch else []
    result.migration = compare(
        o.previous, staged, result.policy, o.drift_threshold, policy_change=policy_change
    )
    for w in result.migration.warnings:
        log.warning(w)


def _run_params(result: ScoreResult, source, day, o: ScoreOptions) -> dict:
    return {
        "model.name": result.model.name,
        "model.version": result.model.version,
        "model.uri": result.model.uri,
        "as_of": str(day),
        "input": source if isinstance(source, str | Path) else "<DataFrame>",
        "output_format": output_format(result.output),
        "policy": result.policy.label,
        "policy.digest": result.policy.digest(),
        "chunk_size": o.chunk_size,
        "pseudonymize_ids": o.pseudonymize_ids,
        "drift_threshold": o.drift_threshold,
        "previous": str(o.previous) if o.previous is not None else "",
        "policy_change": result.migration is not None and result.migration.policy_change,
    }


def _policy(policy, model: TieringModel) -> TierPolicy:
    if isinstance(policy, TierPolicy):
        return policy
    if policy is None and model.info.get("policy"):
        return TierPolicy.model_validate(model.info["policy"])
    return load_policy(policy)


def _predict(con, model: TieringModel, policy: TierPolicy, day, path: Path, o: ScoreOptions,
             population: RFMPopulation) -> int:
    """Stream the feature table through the model into an Arrow file, in id order; return the
    customer count. With pseudonymised ids the table already holds pseudonyms, so the file (and
    the output) is ordered by them and its row order says nothing about the raw ids."""
    chunk_size = o.chunk_size
    reader = con.sql("SELECT * FROM features ORDER BY customer_id").to_arrow_reader(chunk_size)
    customers = 0

    def scored(batch: pa.Table) -> pa.Table:
        features = _with_scores(finish_features(batch.to_pandas(), day, model.time_unit), population)
        return pa.Table.from_pandas(predict_chunk(features, model, policy), preserve_index=False)

    with _BackgroundWriter(path, arrow=True) as out:
        for table in _in_order(scored, _rebatch(reader, chunk_size)):
            out.write(table)
            customers += len(table)
    if customers == 0:
        raise InputError("as_of", "no customer has a purchase on or before as_of")
    return customers


def _with_scores(features: pd.DataFrame, population: RFMPopulation) -> pd.DataFrame:
    for name, values in population.scores(features).items():
        features[name] = values
    return features


def predict_chunk(features: pd.DataFrame, model: TieringModel, policy: TierPolicy) -> pd.DataFrame:
    """The model's columns for some customers' finished features (``attrs`` as_of and time_unit)
    with their population-wide RFM scores, plus the columns the policy reads beyond them. The one
    definition of a scored row, for every engine."""
    scores = features[list(_RFM)]
    features = features.drop(columns=list(_RFM))
    features["rfm_score"] = scores.sum(axis=1).to_numpy()
    extra = [c for c in policy.columns if c not in OUTPUT_COLUMNS]
    missing = [c for c in extra if c not in features.columns]
    if missing:
        raise InputError(f"policy {policy.name}", f"needs column {missing[0]!r}, which neither the model "
                                                  "output nor the customer features have")
    out = model.predict_features(features, scores)
    out["customer_id"] = out["customer_id"].astype(str)
    for c in extra:
        out[c] = features[c].to_numpy()
    return out


def tier_chunk(table: pa.Table, fitted, loaded: LoadedModel, lang: str,
               ranks: dict | None = None) -> pa.Table:
    """The output rows (:data:`SCORE_COLUMNS`) for some scored rows (an Arrow table of
    :func:`predict_chunk`'s columns) and a fitted policy: the one definition of tier, reason and
    action text, for every engine."""
    segments = RFM10.segments
    labels = pa.array([getattr(s.label, lang) or s.label.en for s in segments], pa.large_string())
    codes = pa.array([s.code for s in segments], pa.large_string())
    out = table.select(list(OUTPUT_COLUMNS))
    segment = pc.index_in(out["rfm_segment"].cast(pa.large_string()), value_set=codes)
    out = out.add_column(_SEGMENT_AT, "rfm_segment_label", labels.take(segment))
    verdict = fitted.assign(table, lang=lang, ranks=ranks, arrow=True)
    for c in verdict.column_names:
        out = out.append_column(c, verdict[c])
    for c, value in (("model_name", loaded.name), ("model_version", loaded.version),
                     ("policy", fitted.policy.label)):
        out = out.append_column(c, pa.repeat(pa.scalar(str(value), pa.large_string()), len(out)))
    return out


def _in_order(fn, items, workers: int = 2, ahead: int = 3):
    """``fn(item)`` for each item, computed on ``workers`` threads at most ``ahead`` items ahead of
    the consumer and yielded in the items' order (so the output never depends on the threads);
    an error is raised where its result would have been yielded. The chunk work is numpy, Arrow
    and compiled code that release the GIL for most of their time."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers, thread_name_prefix="clvtier-chunk") as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


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


def _batches(path: Path, columns: list[str] | None = None):
    """The record batches of an Arrow IPC file, read one at a time: the whole file not
    memory-mapped (so that its pages do not stay in the process's memory), a few columns
    memory-mapped (so that only their pages are read)."""
    with (pa.OSFile(str(path)) if columns is None else pa.memory_map(str(path))) as source:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            yield batch if columns is None else batch.select(columns)


def _read_columns(path: Path, columns: list[str]) -> pd.DataFrame:
    """Some columns of an Arrow IPC file as a DataFrame, holding only those columns in memory."""
    parts: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    for batch in _batches(path, list(columns)):
        for c in columns:  # copied while the file is mapped
            parts[c].append(batch.column(c).to_numpy(zero_copy_only=False).copy())
    return pd.DataFrame({c: np.concatenate(v) for c, v in parts.items()})


def _write(predictions: Path, output, fmt: str, fitted, loaded: LoadedModel, o: ScoreOptions) -> pd.DataFrame:
    """Tier every batch and append it to ``output`` (a staged path); return the tier table."""
    codes = [t.code for t in fitted.policy.tiers]
    code_set = pa.array(codes, pa.large_string())
    customers = np.zeros(len(codes), dtype=np.int64)
    at_risk = np.zeros(len(codes), dtype=np.int64)
    predicted: list[list[float]] = [[] for _ in codes]  # per tier, one exact sum per chunk
    past: list[list[float]] = [[] for _ in codes]
    lang = o.lang
    with contextlib.ExitStack() as stack:
        appender = stack.enter_context(_BackgroundWriter(output)) if fmt == "parquet" else None
        header = True
        def tiered(table: pa.Table) -> pa.Table:
            return tier_chunk(table, fitted, loaded, lang)

        for out in _in_order(tiered, _rebatch(_batches(predictions), o.chunk_size)):
            tier = pc.index_in(out["tier"], value_set=code_set).to_numpy()
            risky = out["at_risk"].to_numpy()
            clv, spend = out["predicted_clv"].to_numpy(), out["monetary_total"].to_numpy()
            customers += np.bincount(tier, minlength=len(codes))
            at_risk += np.bincount(tier, weights=risky, minlength=len(codes)).astype(np.int64)
            for i in range(len(codes)):
                rows = tier == i
                predicted[i].append(math.fsum(clv[rows]))
                past[i].append(math.fsum(spend[rows]))
            if appender is not None:
                appender.write(out)
                continue
            frame = out.to_pandas()
            (spreadsheet_safe(frame) if o.escape_formulas else frame).to_csv(
                output, index=False, header=header, mode="w" if header else "a")
            header = False
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


__all__ = [
    "MEMORY_LIMIT",
    "SCORE_COLUMNS",
    "ScoreOptions",
    "ScoreResult",
    "check_options",
    "features",
    "load",
    "read",
    "score",
]
