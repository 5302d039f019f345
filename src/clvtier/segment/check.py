"""Does a segment's label describe its customers? The label check run by ``segment`` and
``compare``.

A built-in label makes claims: "Champions" bought recently, often and much; "At risk" bought
often and much, but long ago. :data:`CLAIMS` lists them per segment code; :func:`check_labels`
compares each segment's medians with the whole population's and returns a warning for each claim
its customers contradict, naming the segment and the figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clvtier.segment.base import RFM_COLUMNS, Segmentation

R, F, M = RFM_COLUMNS

#: segment code -> (recent, frequent, valuable): True claims high, False claims low, None nothing.
CLAIMS: dict[str, tuple[bool | None, bool | None, bool | None]] = {
    "important_value": (True, True, True),
    "important_develop": (True, False, True),
    "important_retain": (False, True, True),
    "important_winback": (False, False, True),
    "general_value": (True, True, False),
    "general_develop": (True, False, False),
    "general_retain": (False, True, False),
    "general_winback": (False, False, False),
    "champions": (True, True, None),
    "loyal": (None, True, None),
    "potential_loyalist": (True, None, None),
    "new": (True, False, None),
    "promising": (True, False, None),
    "about_to_sleep": (False, None, None),
    "at_risk": (False, True, None),
    "cant_lose": (False, True, None),
    "hibernating": (False, False, None),
    "best": (True, True, True),
    "frequent": (None, True, None),
    "spender": (None, None, True),
}
_TEXT = {
    "en": {
        "words": {R: "recent", F: "frequent", M: "high value"},
        "claim": "claims {word}", "not": "claims not {word}", "ref": "all customers: {how} {value}",
        "how": {"median": "median", "mean": "mean"},
        R: "its median customer last bought {median:,.0f} days ago ({ref} days)",
        F: "{once:.0%} of it bought once; median {median:,.0f} purchases ({ref})",
        M: "its median spend is {median:,.2f} ({ref})",
        "line": "segment {name!r} ({method}, {n:,} customers) {claim}, but {figure}",
    },
    "zh": {
        "words": {R: "近期购买", F: "高频购买", M: "高价值"},
        "claim": "标称{word}", "not": "标称非{word}", "ref": "全部客户{how} {value}",
        "how": {"median": "中位数", "mean": "均值"},
        R: "但其客户最近一次购买的中位数在 {median:,.0f} 天前（{ref} 天）",
        F: "但其中 {once:.0%} 只购买过一次，购买次数中位数 {median:,.0f}（{ref}）",
        M: "但其消费额中位数为 {median:,.2f}（{ref}）",
        "line": "分层「{name}」（{method}，{n:,} 位客户）{claim}，{figure}",
    },
}


def check_labels(segmentation: Segmentation, features: pd.DataFrame, *, min_customers: int = 1,
                 lang: str | None = None) -> list[str]:
    """Warnings for segments whose customers contradict their label's claims, in ``lang``
    (default: the segmentation's own language).

    The reference is the population's median, or its mean where the median is degenerate (the
    smallest or largest value, as one purchase is when most customers bought once). A claim of
    "high" holds when the segment's median is better than the reference (recency: fewer days;
    frequency and value: more); for frequency it also needs fewer than half of the segment to be
    one-time buyers. A claim of "low" holds when the segment's median is not better than the
    reference. Segments with fewer than ``min_customers`` are skipped, as are codes without
    claims (ABC levels, clusters, user maps).
    """
    present = [c for c in RFM_COLUMNS if c in features.columns]
    if len(present) < 3:
        return []
    t = _TEXT["zh" if (lang or segmentation.params.get("lang")) == "zh" else "en"]
    frame = segmentation.table[["customer_id", "segment_code", "segment"]].merge(
        features[["customer_id", *RFM_COLUMNS]], on="customer_id", how="left", validate="one_to_one"
    )
    refs = {c: _reference(frame[c].to_numpy(dtype=float)) for c in RFM_COLUMNS}
    out = []
    for code, group in frame.groupby("segment_code", sort=False):
        claims = CLAIMS.get(code)
        if claims is None or len(group) < min_customers:
            continue
        once = float((group[F] <= 1).mean())
        for column, claim in zip(RFM_COLUMNS, claims, strict=True):
            if claim is None:
                continue
            median = float(np.median(group[column]))
            reference, how = refs[column]
            better = median < reference if column == R else median > reference
            if column == F and claim and once >= 0.5:
                better = False
            if better == claim:
                continue
            ref = t["ref"].format(how=t["how"][how], value=f"{reference:,.{2 if column == M else 1}f}")
            claim_text = t["claim" if claim else "not"].format(word=t["words"][column])
            out.append(t["line"].format(name=group["segment"].iloc[0], method=segmentation.method,
                                        n=len(group), claim=claim_text,
                                        figure=t[column].format(median=median, once=once, ref=ref)))
    return out


def _reference(values: np.ndarray) -> tuple[float, str]:
    median = float(np.median(values))
    if median in (float(values.min()), float(values.max())):
        return float(values.mean()), "mean"
    return median, "median"
