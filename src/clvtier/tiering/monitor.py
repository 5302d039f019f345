"""Tier monitoring between two scoring runs: migration matrix, drift warnings, policy changes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from clvtier.data.io import output_format, sql_literal
from clvtier.errors import InputError
from clvtier.tiering.policy import TierPolicy


def _reader(source) -> str:
    """DuckDB table function reading a scoring output file."""
    path = Path(source)
    fmt = output_format(path)
    if not path.is_file():
        raise InputError(str(path), "file not found")
    return (
        f"read_parquet({sql_literal(path)})"
        if fmt == "parquet"
        else f"read_csv({sql_literal(path)}, all_varchar=true)"
    )


def tiers_relation(source) -> str:
    """SQL of ``customer_id, tier`` (text) from a scoring output file."""
    return (
        "SELECT CAST(customer_id AS VARCHAR) AS customer_id, CAST(tier AS VARCHAR) AS tier "
        f"FROM {_reader(source)}"
    )


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
            sides.append(tiers_relation(side))
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


def previous_policy(source) -> str | None:
    """The policy label a scoring output was made with (None when it has no ``policy`` column)."""
    reader = _reader(source)
    con = duckdb.connect()
    try:
        if "policy" not in con.sql(f"SELECT * FROM {reader} LIMIT 0").columns:
            return None
        labels = [
            row[0] for row in con.sql(f"SELECT DISTINCT CAST(policy AS VARCHAR) FROM {reader}").fetchall()
        ]
    except duckdb.Error as exc:
        raise InputError(str(source), f"not a scoring output: {str(exc).splitlines()[0]}") from None
    return ", ".join(sorted(str(label) for label in labels))


def check_previous(previous, policy: TierPolicy, *, allow_policy_change: bool = False) -> bool:
    """Check ``previous`` before any work: a scoring output with tiers of ``policy``. Returns
    whether the policy changed (allowed only with ``allow_policy_change``): tiers of two
    policies are not the same tiers, so their size changes say nothing about drift."""
    tiers_relation(previous)
    before = previous_policy(previous)
    changed = before is not None and before != policy.label
    if changed and not allow_policy_change:
        raise InputError(
            str(previous),
            f"was scored with policy {before!r}, not {policy.label!r}: its tiers are not comparable "
            "(allow a policy change to compare them anyway)",
        )
    return changed


def pseudonym_mismatch(previous, pseudonymized: bool) -> str | None:
    """A warning when ``previous`` holds pseudonyms (20 hex digits) and this run writes raw ids,
    or the other way round: no customer would match, and every one would look new."""
    con = duckdb.connect()
    try:
        (hashed,) = con.sql(
            f"SELECT bool_and(regexp_full_match(CAST(customer_id AS VARCHAR), '[0-9a-f]{{20}}')) "
            f"FROM {_reader(previous)}"
        ).fetchall()[0]
    except duckdb.Error:
        return None
    if bool(hashed) == pseudonymized:
        return None
    kinds = ("pseudonymised", "raw") if hashed else ("raw", "pseudonymised")
    return (
        f"{previous} holds {kinds[0]} customer ids and this run writes {kinds[1]} ones: no customer can be "
        "matched between the two, so the migration shows everyone as new and gone"
    )


@dataclass
class Migration:
    """Previous x current tiers and the drift warnings; ``policy_change`` when the two runs used
    different policies (then no drift warning is raised)."""

    matrix: pd.DataFrame
    warnings: list[str]
    policy_change: bool = False


def compare(
    previous, output, policy: TierPolicy, threshold: float, *, policy_change: bool = False
) -> Migration:
    """Migration matrix of ``previous`` -> ``output`` and the tiers whose size drifted."""
    order = [t.code for t in policy.tiers]
    matrix = migration_matrix(previous, output, order)
    if policy_change:
        return Migration(matrix, [], policy_change=True)
    return Migration(matrix, drift_warnings(matrix, order, threshold))


__all__ = [
    "Migration",
    "check_previous",
    "compare",
    "pseudonym_mismatch",
    "drift_warnings",
    "migration_matrix",
    "previous_policy",
    "tiers_relation",
]
