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
_WORDS = {R: ("recent", "bought recently"), F: ("frequent", "buy often"), M: ("high value", "spend much")}


def check_labels(segmentation: Segmentation, features: pd.DataFrame, *, min_customers: int = 1) -> list[str]:
    """Warnings for segments whose customers contradict their label's claims.

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
    frame = segmentation.table[["customer_id", "segment_code", "segment"]].merge(
        features[["customer_id", *RFM_COLUMNS]], on="customer_id", how="left", validate="one_to_one"
    )
    refs = {c: _reference(frame[c].to_numpy(dtype=float)) for c in RFM_COLUMNS}
    overall = {c: value for c, (value, _) in refs.items()}
    out = []
    for code, group in frame.groupby("segment_code", sort=False):
        claims = CLAIMS.get(code)
        if claims is None or len(group) < min_customers:
            continue
        name = group["segment"].iloc[0]
        once = float((group[F] <= 1).mean())
        for column, claim in zip(RFM_COLUMNS, claims, strict=True):
            if claim is None:
                continue
            median = float(np.median(group[column]))
            better = median < overall[column] if column == R else median > overall[column]
            if column == F and claim and once >= 0.5:
                better = False
            if better == claim:
                continue
            word, verb = _WORDS[column]
            figure = _figure(column, median, once).format(
                ref=f"all customers: {refs[column][1]} {overall[column]:,.{2 if column == M else 1}f}"
            )
            claim_text = f"claims {word}" if claim else f"claims not {word}"
            out.append(
                f"segment {name!r} ({segmentation.method}, {len(group):,} customers) {claim_text}, "
                f"but {figure}"
            )
    return out


def _reference(values: np.ndarray) -> tuple[float, str]:
    median = float(np.median(values))
    if median in (float(values.min()), float(values.max())):
        return float(values.mean()), "mean"
    return median, "median"


def _figure(column: str, median: float, once: float) -> str:
    if column == R:
        return f"its median customer last bought {median:,.0f} days ago ({{ref}} days)"
    if column == F:
        return f"{once:.0%} of it bought once; median {median:,.0f} purchases ({{ref}})"
    return f"its median spend is {median:,.2f} ({{ref}})"
