"""Segment customers of a transaction file as of a date, by one named method."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

import pandas as pd

from clvtier.data import Accounting
from clvtier.data.schema import Transactions
from clvtier.errors import InputError
from clvtier.features import customer_features
from clvtier.segment import (
    RFM10,
    Diagnosis,
    Segmentation,
    abc,
    abc4,
    clusters,
    clv_cs,
    diagnose,
    load_rfm_map,
    pyramid,
    rfm8,
    rfm_map,
    rfm_score_segments,
    value_matrix,
    weighted_score,
)
from clvtier.segment.base import value_column
from clvtier.segment.check import check_labels
from clvtier.segment.value import require_satisfaction

METHODS = (
    "rfm",
    "rfm8",
    "rfm10",
    "rfm-map",
    "abc",
    "abc4",
    "pyramid",
    "value-matrix",
    "weighted",
    "clv-cs",
    "kmeans",
    "gmm",
)
#: Weighted score default: the three classic RFM indicators.
DEFAULT_INDICATORS = {"recency_days": "lower", "frequency_count": "higher", "monetary_total": "higher"}


def check_method(method: str) -> str:
    """The method name, or an InputError listing the valid ones."""
    if method not in METHODS:
        raise InputError("method", f"valid options are {', '.join(METHODS)}; got {method!r}")
    return method


@dataclass
class SegmentOptions:
    """Method options; each method reads the ones it understands (see ``clvtier segment --help``)."""

    bins: int = 5
    threshold: str = "auto"
    rules: dict[str, float] | None = None
    ties: str = "share"
    map_path: str | None = None
    shares: list[float] | None = None
    by: str = "count"
    value: str | None = None
    frequency_cut: float | None = None
    order_value_cut: float | None = None
    indicators: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_INDICATORS))
    normalise: str = "minmax"
    weights: str | dict[str, float] = "equal"
    ahp_matrix: list[list[float]] | None = None
    allow_inconsistent: bool = False
    cutoffs: list[float] | None = None
    n_clusters: int | None = None
    k_range: tuple[int, int] = (2, 8)
    selection: str | None = None
    cluster_features: list[str] | None = None
    horizon_weeks: float = 52.0
    discount_rate: float = 0.0
    random_state: int = 0


@dataclass
class SegmentResult:
    segmentation: Segmentation
    diagnosis: Diagnosis
    accounting: Accounting
    features: pd.DataFrame
    #: Segments whose customers contradict their label (:func:`clvtier.segment.check.check_labels`)
    label_warnings: list[str] = field(default_factory=list)


def predicted_clv(tx: Transactions, as_of, *, horizon_weeks: float, discount_rate: float = 0.0) -> pd.Series:
    """CLV over the next ``horizon_weeks`` from BG/NBD + Gamma-Gamma fitted on history to ``as_of``."""
    from clvtier.clv import BetaGeoModel, GammaGammaModel

    summary = customer_features(tx, as_of=as_of, time_unit="weeks")
    purchases = BetaGeoModel(time_unit="weeks").fit(summary)
    spend = GammaGammaModel().fit(summary)
    return pd.Series(
        purchases.customer_lifetime_value(summary, spend, horizon=horizon_weeks, discount_rate=discount_rate),
        index=summary["customer_id"].to_numpy(),
        name="predicted_clv",
    )


def segment_features(
    features: pd.DataFrame, method: str, options: SegmentOptions | None = None, *, lang: str = "en"
) -> Segmentation:
    """Run one named method on a feature table."""
    o = options or SegmentOptions()
    check_method(method)
    shares = {} if o.shares is None else {"shares": o.shares}
    if method == "rfm":
        return rfm_score_segments(features, bins=o.bins, ties=o.ties, lang=lang)
    if method == "rfm8":
        return rfm8(features, threshold=o.threshold, rules=o.rules, ties=o.ties, lang=lang)
    if method == "rfm10":
        return rfm_map(features, RFM10, ties=o.ties, lang=lang)
    if method == "rfm-map":
        if o.map_path is None:
            raise InputError("map_path", "method rfm-map needs a YAML map file")
        return rfm_map(features, load_rfm_map(o.map_path), ties=o.ties, lang=lang)
    if method == "abc":
        return abc(features, by=o.by, value=o.value, lang=lang, **shares)
    if method == "abc4":
        return abc4(features, value=o.value, lang=lang)
    if method == "pyramid":
        return pyramid(features, value=o.value, lang=lang, **shares)
    if method == "value-matrix":
        return value_matrix(
            features, frequency_cut=o.frequency_cut, order_value_cut=o.order_value_cut, lang=lang
        )
    if method == "weighted":
        return weighted_score(
            features,
            o.indicators,
            normalise_with=o.normalise,
            weights=o.weights,
            ahp_matrix=o.ahp_matrix,
            allow_inconsistent=o.allow_inconsistent,
            cutoffs=o.cutoffs,
            lang=lang,
            **shares,
        )
    if method == "clv-cs":
        return clv_cs(features, lang=lang)
    extra = {} if o.cluster_features is None else {"features": o.cluster_features}
    return clusters(
        features,
        method=method,
        n_clusters=o.n_clusters,
        k_range=o.k_range,
        selection=o.selection,
        value=value_column(features, o.value),
        random_state=o.random_state,
        lang=lang,
        **extra,
    )


def run_segment(
    tx: Transactions, *, as_of, method: str, options: SegmentOptions | None = None, lang: str = "en"
) -> SegmentResult:
    """Features as of ``as_of`` -> diagnosis -> segmentation by ``method``."""
    o = options or SegmentOptions()
    check_method(method)
    as_of = tx.resolve_as_of(as_of)
    features = customer_features(tx, as_of=as_of)
    if method == "clv-cs":
        require_satisfaction(features)
        clv = predicted_clv(tx, as_of, horizon_weeks=o.horizon_weeks, discount_rate=o.discount_rate)
        features["predicted_clv"] = clv.reindex(features["customer_id"].to_numpy()).to_numpy()
    seg = segment_features(features, method, o, lang=lang)
    seg.table.insert(1, "as_of", as_of.isoformat())
    return SegmentResult(seg, diagnose(features), tx.accounting(as_of), features, check_labels(seg, features))


def format_profile(seg: Segmentation) -> str:
    """The profile as a plain text table (segment, customers and value shares, mean R/F/M)."""
    p = seg.profile
    cols = [c for c in ("mean_recency_days", "mean_frequency_count", "mean_monetary_total") if c in p.columns]
    width = max(12, *(_width(s) for s in p["segment"]))
    share = f"share of {seg.params['value']}"
    head = f"{_pad('segment', width)} {'customers':>10} {'share':>7} {share:>{len(share)}}" + "".join(
        f" {c[5:]:>16}" for c in cols
    )
    settings = {k: v for k, v in seg.params.items() if k not in ("lang", "value")}
    lines = [f"{seg.method}: " + ", ".join(f"{k}={_short(v)}" for k, v in settings.items()), head]
    for _, row in p.iterrows():
        line = (
            f"{_pad(row['segment'], width)} {row['customers']:>10,} {row['share_customers']:>7.1%} "
            f"{row['share_value']:>{len(share)}.1%}"
        )
        line += "".join(f" {row[c]:>16,.1f}" if pd.notna(row[c]) else f" {'-':>16}" for c in cols)
        lines.append(line)
    return "\n".join(lines)


def _width(text: str) -> int:
    """Display width: East Asian wide characters take two columns."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def _short(value) -> str:
    """Settings for one line: floats to 4 significant digits, containers recursively."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)
