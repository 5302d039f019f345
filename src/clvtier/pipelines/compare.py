"""``compare(config)``: rule-based, learned and model-based segmentations judged on what happened
next (README, "Comparing segmentations").

prepare -> features -> fit (the training protocol's evaluation fits, never a refit) -> for every
origin: segment as of the test cutoff and one horizon earlier -> judge on the holdout window ->
summarise over origins with paired bootstrap intervals -> write the report -> log to MLflow.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clvtier.config import ExperimentConfig
from clvtier.errors import InputError
from clvtier.evaluate.compare import (
    agreement,
    bootstrap_differences,
    future_top,
    implied_order,
    monotonicity,
    order_gini,
    precision_recall,
    segment_table,
    stability,
    top_capture,
    top_count,
    top_overlap,
)
from clvtier.features import customer_features, window_length
from clvtier.pipelines import train as training
from clvtier.pipelines.segment import SegmentOptions, check_method, segment_features
from clvtier.pipelines.steps import Steps
from clvtier.segment import Segmentation, rfm_scores
from clvtier.segment.base import RFM_COLUMNS
from clvtier.segment.check import check_labels
from clvtier.tiering import TieringModel
from clvtier.tiering.policy import load_policy
from clvtier.tracking import resolve_tracking_uri, use_tracking_uri

STEPS = (
    "load and validate data",
    "features",
    "fit models",
    "segment and judge",
    "bootstrap",
    "write report",
    "log to MLflow",
)
SUMMARY_COLUMNS = [
    "segmentation",
    "kind",
    "n_segments",
    "top_share",
    "top_capture",
    "top_capture_equal_size",
    "diff_vs_reference",
    "diff_ci_low",
    "diff_ci_high",
    "precision_top20",
    "recall_top20",
    "gini",
    "monotone",
    "kendall_tau",
    "stability_share",
    "stability_ari",
]


@dataclass
class Built:
    """One segmentation of one feature table: per customer (in the table's order) the segment
    code, name and rank, and the within-segment score that fills equal-size groups."""

    name: str
    kind: str
    table: pd.DataFrame
    within: np.ndarray
    label_warnings: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)


@dataclass
class Origin:
    """What every segmentation did at one cutoff."""

    cutoff: str
    customers: int
    summary: pd.DataFrame
    segments: pd.DataFrame
    positions: dict[str, np.ndarray]
    revenue: np.ndarray
    labels: dict[str, np.ndarray]
    migrations: dict[str, pd.DataFrame]


@dataclass
class CompareResult:
    config: ExperimentConfig
    origins: list[Origin]
    summary: pd.DataFrame
    ranges: pd.DataFrame
    bootstrap: pd.DataFrame
    agreement: pd.DataFrame
    nmi: pd.DataFrame
    #: Share of each segmentation's equal-size top group also in another's (latest cutoff)
    overlap: pd.DataFrame
    label_warnings: list[str]
    output: Path | None = None
    run_id: str | None = None
    step_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def latest(self) -> Origin:
        return self.origins[-1]


def _options(config: ExperimentConfig, method: str, extra: dict | None = None) -> SegmentOptions:
    try:
        check_method(method)
        return SegmentOptions(
            **{"random_state": config.seed, **config.compare.methods[method], **(extra or {})}
        )
    except InputError as exc:
        raise InputError(f"compare.methods.{method}", exc.problem) from None
    except TypeError as exc:
        raise InputError(f"compare.methods.{method}", str(exc).split("__init__() ")[-1]) from None


def check_methods(config: ExperimentConfig) -> None:
    """Every configured method exists and takes its options (before any work)."""
    for method in config.compare.methods:
        _options(config, method)
    for name in config.compare.policies:
        load_policy(name)


def segmentations(
    features: pd.DataFrame,
    tiering: TieringModel,
    config: ExperimentConfig,
    lang: str = "en",
    fixed: dict[str, dict] | None = None,
) -> dict[str, Built]:
    """Every configured segmentation of ``features`` (history only): rule-based and learned
    methods, then each policy on the tiering model's predictions, then CLV deciles. ``fixed``
    adds options per method (the stability check gives clusters the k chosen at the later cutoff)."""
    out: dict[str, Built] = {}
    c = config.compare
    scores = rfm_scores(features)  # once: the RFM maps' inner order and the model's inputs
    for method in c.methods:
        settings = _options(config, method, (fixed or {}).get(method))
        seg = segment_features(features, method, settings, lang=lang)
        kind = "learned" if method in ("kmeans", "gmm") else "rule"
        out[method] = Built(
            method,
            kind,
            seg.table,
            _within(method, seg, features, scores),
            check_labels(seg, features),
            seg.params,
        )
    predictions = tiering.predict_features(features, scores)
    clv = predictions["predicted_clv"].to_numpy(dtype=float)
    for name in c.policies:
        policy = load_policy(name)
        tiers = policy.fit(predictions).assign(predictions, lang=lang)["tier"].to_numpy()
        order = [t.code for t in policy.tiers]
        rank = pd.Categorical(tiers, categories=order).codes + 1
        table = pd.DataFrame(
            {
                "customer_id": features["customer_id"].to_numpy(),
                "segment_code": tiers,
                "segment": [policy.tiers[r - 1].label.get(lang) for r in rank],
                "segment_rank": rank,
            }
        )
        out[f"policy:{policy.name}"] = Built(f"policy:{policy.name}", "model", table, clv)
    if c.clv_deciles:
        rank = 10 - np.minimum(
            np.floor(pd.Series(clv).rank(method="first").to_numpy() * 10 / len(clv) - 1e-9), 9
        ).astype(np.int64)
        table = pd.DataFrame(
            {
                "customer_id": features["customer_id"].to_numpy(),
                "segment_code": [f"d{r}" for r in rank],
                "segment": [f"CLV decile {r}" for r in rank],
                "segment_rank": rank,
            }
        )
        out["clv_deciles"] = Built("clv_deciles", "model", table, clv)
    return out


def _within(method: str, seg: Segmentation, features: pd.DataFrame, scores: pd.DataFrame) -> np.ndarray:
    """The order inside a segment: the RFM total (then spend) for RFM maps, the weighted score
    for the weighted method, else the value the method ranks on (spend, or profit when mapped)."""
    value = features[seg.params.get("value", "monetary_total")].to_numpy(dtype=float)
    if method in ("rfm8", "rfm10", "rfm-map"):
        spend = pd.Series(features["monetary_total"].to_numpy()).rank(pct=True).to_numpy()
        return scores["rfm_score"].to_numpy(dtype=float) + 0.999 * spend
    if method == "weighted" and "score" in seg.table.columns:
        return seg.table["score"].to_numpy(dtype=float)
    return value


def judge(
    built: dict[str, Built], test: pd.DataFrame, share: float
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """Per segmentation the summary measures on the holdout window, the per-segment table, and the
    implied orders (positions)."""
    revenue = test["holdout_spend"].to_numpy(dtype=float)
    active = test["active"].to_numpy(dtype=bool)
    important = future_top(revenue, 0.2)
    k = top_count(share, len(test))
    rows, tables, positions = [], [], {}
    for name, b in built.items():
        rank = b.table["segment_rank"].to_numpy()
        position = positions[name] = implied_order(rank, b.within, b.table["customer_id"])
        natural = rank == rank.min()
        monotone, tau = monotonicity(rank, revenue)
        precision, recall = precision_recall(position < k, important)
        rows.append(
            {
                "segmentation": name,
                "kind": b.kind,
                "n_segments": int(pd.unique(rank).size),
                "top_share": float(natural.mean()),
                "top_capture": float(revenue[natural].sum() / revenue.sum()),
                "top_capture_equal_size": top_capture(position, revenue, share),
                "precision_top20": precision,
                "recall_top20": recall,
                "gini": order_gini(position, revenue),
                "monotone": monotone,
                "kendall_tau": tau,
            }
        )
        seg = segment_table(
            rank,
            b.table["segment_code"],
            b.table["segment"],
            test["monetary_total"],
            revenue,
            active,
            test[RFM_COLUMNS],
        )
        tables.append(seg.assign(segmentation=name))
    return pd.DataFrame(rows), pd.concat(tables, ignore_index=True), positions


def run_origin(
    tx, test: pd.DataFrame, tiering: TieringModel, config: ExperimentConfig, cutoff: str, lang: str = "en"
) -> tuple[Origin, list[str]]:
    """Segment at ``cutoff`` and one horizon earlier, judge on the holdout, measure stability."""
    p_unit, horizon = config.split.time_unit, config.split.horizon
    features = test.drop(
        columns=[c for c in test.columns if c.startswith("holdout_") or c in ("active", "duration_holdout")]
    )
    features.attrs.update(test.attrs)
    built = segmentations(features, tiering, config, lang)
    summary, segments, positions = judge(built, test, config.compare.share)
    earlier_day = dt.date.fromisoformat(cutoff) - window_length(horizon, p_unit)
    earlier = customer_features(tx, as_of=earlier_day, time_unit=p_unit)
    same_k = {
        name: {"n_clusters": b.params["n_clusters"]} for name, b in built.items() if b.kind == "learned"
    }
    before = segmentations(earlier, tiering, config, lang, fixed=same_k)
    moves, migrations = [], {}
    for name, b in built.items():
        joined = (
            before[name]
            .table[["customer_id", "segment_code"]]
            .merge(b.table[["customer_id", "segment_code"]], on="customer_id", suffixes=("_before", "_after"))
        )
        s = stability(joined["segment_code_before"], joined["segment_code_after"])
        order = _by_rank(b.table)
        earlier_order = order + [c for c in _by_rank(before[name].table) if c not in order]
        migrations[name] = s["migration"].reindex(index=earlier_order, columns=order, fill_value=0)
        moves.append({"segmentation": name, "stability_share": s["share_kept"], "stability_ari": s["ari"]})
    summary = summary.merge(pd.DataFrame(moves), on="segmentation")
    labels = {name: b.table["segment_code"].to_numpy() for name, b in built.items()}
    warnings = [w for b in built.values() for w in b.label_warnings]
    origin = Origin(
        cutoff,
        len(test),
        summary,
        segments,
        positions,
        test["holdout_spend"].to_numpy(dtype=float),
        labels,
        migrations,
    )
    return origin, warnings


def _by_rank(table: pd.DataFrame) -> list:
    """Segment codes, most valuable first."""
    return (
        table.drop_duplicates("segment_code")
        .sort_values("segment_rank", kind="stable")["segment_code"]
        .tolist()
    )


def tiering_for(config: ExperimentConfig, fits: dict, window) -> TieringModel:
    """The tiering model as fitted for one origin's test cutoff (evaluation fits). Refused when
    its data reach past the cutoff: ML targets end at the training cutoff + horizon."""
    end = dt.date.fromisoformat(window.train_cutoff) + window_length(
        config.split.horizon, config.split.time_unit
    )
    if end > dt.date.fromisoformat(window.test_cutoff):
        raise InputError(
            "compare",
            f"the model's training window ends {end}, after the comparison cutoff "
            f"{window.test_cutoff}: it has seen the outcome it would be judged on",
        )
    t = config.tiering
    return TieringModel(
        clv=fits[t.clv_model].model, btyd=fits[t.btyd_model].model, info={"cutoff": window.test_cutoff}
    )


def summarise(
    origins: list[Origin], config: ExperimentConfig
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The summary over origins (means; monotone only when monotone at every origin), the ranges
    (min and max over origins of every measure), and the paired bootstrap of the differences
    with the reference, averaged over origins draw by draw."""
    c = config.compare
    long = pd.concat([o.summary.assign(origin=o.cutoff) for o in origins], ignore_index=True)
    numeric = [col for col in long.columns if col not in ("segmentation", "kind", "origin", "monotone")]
    grouped = long.groupby(["segmentation", "kind"], sort=False)
    summary = grouped[numeric].mean().reset_index()
    summary["monotone"] = grouped["monotone"].all().to_numpy()
    ranges = grouped[numeric].agg(["min", "max"])
    ranges.columns = [f"{a}_{b}" for a, b in ranges.columns]
    if c.reference not in summary["segmentation"].to_numpy():
        raise InputError(
            "compare.reference",
            f"{c.reference!r} is not among the segmentations compared: {', '.join(summary['segmentation'])}",
        )
    boots = [
        bootstrap_differences(
            o.positions,
            o.revenue,
            c.reference,
            share=c.share,
            draws=c.draws,
            seed=config.seed + i,
            return_draws=True,
        )
        for i, o in enumerate(origins)
    ]
    table = boots[0][0].drop(columns=["diff", "ci_low", "ci_high", "measurable", "value"])
    draws = np.mean([b[1] for b in boots], axis=0)  # (rows, draws): mean difference over origins
    table["value"] = np.mean([b[0]["value"].to_numpy() for b in boots], axis=0)
    table["diff"] = np.mean([b[0]["diff"].to_numpy() for b in boots], axis=0)
    if draws.shape[1]:
        table["ci_low"], table["ci_high"] = np.nanpercentile(draws, [2.5, 97.5], axis=1)
    else:
        table["ci_low"] = table["ci_high"] = np.nan
    table["measurable"] = (table["ci_low"] > 0) | (table["ci_high"] < 0)
    capture = table[table["metric"] == "capture"].set_index("segmentation")
    summary["diff_vs_reference"] = capture.loc[summary["segmentation"], "diff"].to_numpy()
    summary["diff_ci_low"] = capture.loc[summary["segmentation"], "ci_low"].to_numpy()
    summary["diff_ci_high"] = capture.loc[summary["segmentation"], "ci_high"].to_numpy()
    return summary[SUMMARY_COLUMNS], ranges.reset_index(), table


def compare(
    config: ExperimentConfig,
    *,
    output=None,
    lang: str = "en",
    tracking_uri: str | None = None,
    log_to_mlflow: bool = True,
    progress: Callable[[str, float | None], None] | None = None,
    engine: str = "duckdb",
) -> CompareResult:
    """Run the comparison; write ``output`` (HTML) with ``<stem>_summary.csv`` and
    ``<stem>_segments.csv`` beside it when given; log a ``compare`` run unless told not to.
    ``engine="spark"`` reads the data and computes every feature table in Spark (collected to
    the driver: the segmentations run on the customer tables)."""
    from clvtier.report.compare import check_report_path, write_report
    from clvtier.tracking.runs import log_compare

    if output is not None:
        check_report_path(output)
    check_methods(config)  # a wrong option stops the job before any fit

    step = Steps(progress)
    uri = use_tracking_uri(resolve_tracking_uri(tracking_uri)) if log_to_mlflow else None
    with step(STEPS[0]):
        prepared = training.prepare(config, engine)
    with step(STEPS[1]):
        training.features(prepared)
    with step(STEPS[2]):
        fits = training.fit(config, prepared)
    origins, warnings = [], []
    with step(STEPS[3]):
        for window, window_fits in zip(prepared.windows, fits, strict=True):
            tiering = tiering_for(config, window_fits, window)
            origin, found = run_origin(
                prepared.transactions, window.test, tiering, config, window.test_cutoff, lang
            )
            origins.append(origin)
            warnings = found  # the latest origin's label check
    with step(STEPS[4]):
        summary, ranges, boot = summarise(origins, config)
        ari, nmi = agreement(origins[-1].labels)
        k = top_count(config.compare.share, origins[-1].customers)
        overlap = top_overlap({name: p < k for name, p in origins[-1].positions.items()})
    result = CompareResult(config, origins, summary, ranges, boot, ari, nmi, overlap, warnings)
    if output is not None:
        with step(STEPS[5]):
            result.output = write_report(result, Path(output), lang=lang)
    if log_to_mlflow:
        with step(STEPS[6]):
            result.run_id = log_compare(result, uri=uri)
    result.step_seconds = step.seconds
    return result
