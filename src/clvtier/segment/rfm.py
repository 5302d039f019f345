"""RFM: quintile scores, the 2x2x2 eight-segment map and named maps on the scores.

R, F and M are ``recency_days`` (days since the last purchase; fewer is better),
``frequency_count`` and ``monetary_total`` of :func:`clvtier.features.customer_features`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from clvtier.errors import InputError
from clvtier.segment.base import RFM_COLUMNS, Segmentation, finish, numeric, positions, require
from clvtier.segment.labels import LABELS, check_lang

R, F, M = RFM_COLUMNS


def rfm_scores(features: pd.DataFrame, *, bins: int = 5) -> pd.DataFrame:
    """Score R, F and M from 1 to ``bins`` in equal-sized groups of customers (quintiles).

    R = ``bins`` for the most recent customers, F and M = ``bins`` for the most frequent and
    the highest spenders. Customers are ordered by the dimension's value; ties are broken by
    monetary_total (the higher spender scores higher; for M, by frequency_count), then by
    customer id (the smaller id scores higher). Every score therefore holds the same number of
    customers (within one), whatever the row order, even when most customers bought once: one-
    time buyers spread over the low F scores, the bigger spenders among them scoring higher.
    The score is ``ceil(rank * bins / n)`` with rank 1..n, so one customer alone scores ``bins``.

    Returns
    -------
    DataFrame
        ``customer_id, recency_days, frequency_count, monetary_total, r_score, f_score, m_score,
        rfm_cell`` (e.g. ``"545"``; ``"5-4-5"`` when bins > 9) and ``rfm_score`` (R + F + M).
    """
    if not isinstance(bins, int | np.integer) or bins < 2:
        raise InputError("bins", f"must be an integer of at least 2; got {bins!r}")
    require(features, RFM_COLUMNS, "RFM scores")
    r, f, m = (numeric(features, c, "RFM scores") for c in RFM_COLUMNS)
    n = len(features)
    out = features[["customer_id", *RFM_COLUMNS]].reset_index(drop=True)
    for name, keys in (("r_score", [-r, m]), ("f_score", [f, m]), ("m_score", [m, f])):
        out[name] = np.ceil(positions(features, keys) * bins / n).astype(np.int64)
    sep = "" if bins <= 9 else "-"
    out["rfm_cell"] = (
        out["r_score"].astype(str) + sep + out["f_score"].astype(str) + sep + out["m_score"].astype(str)
    )
    out["rfm_score"] = out["r_score"] + out["f_score"] + out["m_score"]
    return out


def rfm_score_sql(bins: int = 5) -> str:
    """SQL select-list items giving the scores of :func:`rfm_scores` over a whole table (window
    functions, same order and tie-breaks), for data too large for pandas: ``r_score, f_score,
    m_score``. The table needs ``customer_id`` and the RFM columns."""
    n = "count(*) OVER ()"
    orders = {"r_score": f"{R} DESC, {M} ASC", "f_score": f"{F} ASC, {M} ASC",
              "m_score": f"{M} ASC, {F} ASC"}
    return ", ".join(f"CAST(ceil(row_number() OVER (ORDER BY {o}, customer_id DESC) * {int(bins)} / {n})"
                     f" AS BIGINT) AS {name}" for name, o in orders.items())


def rfm_score_segments(features: pd.DataFrame, *, bins: int = 5, lang: str = "en") -> Segmentation:
    """Customers grouped by their total RFM score (R + F + M, from 3 x bins down to 3), with
    the scores as inputs. Empty totals are left out of the profile. Segments have no strategy."""
    scores = rfm_scores(features, bins=bins)
    order = [f"rfm_{s}" for s in range(3 * bins, 2, -1)]
    names = {c: (f"RFM {c[4:]}", "") for c in order}
    codes = ("rfm_" + scores["rfm_score"].astype(str)).to_numpy(dtype=object)
    seg = finish(
        "rfm",
        features,
        codes,
        order,
        inputs=scores.drop(columns="customer_id"),
        value="monetary_total",
        lang=lang,
        params={"bins": bins},
        names=names,
    )
    profile = seg.profile[seg.profile["customers"] > 0].reset_index(drop=True)
    return Segmentation("rfm", seg.table, profile, seg.params)


#: (R high, F high, M high) -> segment code of the 2x2x2 map.
RFM8 = {
    (True, True, True): "important_value",
    (True, False, True): "important_develop",
    (False, True, True): "important_retain",
    (False, False, True): "important_winback",
    (True, True, False): "general_value",
    (True, False, False): "general_develop",
    (False, True, False): "general_retain",
    (False, False, False): "general_winback",
}


def rfm8(
    features: pd.DataFrame, *, threshold: Literal["mean", "median"] = "median", lang: str = "en"
) -> Segmentation:
    """The eight-segment RFM map: R, F and M each high or low against their mean or median.

    R is high when the customer bought *more recently* than the threshold (recency_days
    strictly below it); F and M are high when strictly above it. A customer at the threshold
    is low, so identical customers all land in the same segment.
    """
    if threshold not in ("mean", "median"):
        raise InputError("threshold", f"valid options are 'mean', 'median'; got {threshold!r}")
    require(features, RFM_COLUMNS, "rfm8")
    r, f, m = (numeric(features, c, "rfm8") for c in RFM_COLUMNS)
    centre = {c: float(getattr(np, threshold)(v)) for c, v in zip(RFM_COLUMNS, (r, f, m), strict=True)}
    high = pd.DataFrame({"r_high": r < centre[R], "f_high": f > centre[F], "m_high": m > centre[M]})
    codes = [RFM8[key] for key in zip(high["r_high"], high["f_high"], high["m_high"], strict=True)]
    inputs = pd.concat([features[RFM_COLUMNS].reset_index(drop=True), high], axis=1)
    return finish(
        "rfm8",
        features,
        np.array(codes, dtype=object),
        list(RFM8.values()),
        inputs=inputs,
        value="monetary_total",
        lang=lang,
        params={"threshold": threshold, "centre": centre},
    )


class _Text(BaseModel):
    model_config = ConfigDict(extra="forbid")
    en: str
    zh: str | None = None

    def get(self, lang: str) -> str:
        return self.zh if lang == "zh" and self.zh else self.en


class _Segment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str
    label: _Text
    strategy: _Text = _Text(en="")
    r: tuple[int, int] | None = None
    f: tuple[int, int] | None = None
    m: tuple[int, int] | None = None

    @field_validator("r", "f", "m", mode="before")
    @classmethod
    def _range(cls, v):
        return (v, v) if isinstance(v, int) else v


class RFMMap(BaseModel):
    """A named map on RFM scores: the first segment whose score ranges (inclusive, ``[lo,
    hi]`` or one score; a dimension left out matches any score) hold the customer wins.
    Segments are listed from the most valuable to the least. Every cell must be covered."""

    model_config = ConfigDict(extra="forbid")
    name: str
    bins: int = Field(default=5, ge=2)
    segments: list[_Segment] = Field(min_length=1)

    def check_complete(self, source: str) -> None:
        codes = [s.code for s in self.segments]
        if len(set(codes)) != len(codes):
            raise InputError(
                source, f"segment codes repeat: {sorted({c for c in codes if codes.count(c) > 1})}"
            )
        for s in self.segments:
            for dim, rng in (("r", s.r), ("f", s.f), ("m", s.m)):
                if rng is not None and not 1 <= rng[0] <= rng[1] <= self.bins:
                    raise InputError(
                        source,
                        f"segment {s.code!r}: {dim} range {list(rng)} is not within "
                        f"1..{self.bins} (low first)",
                    )
        uncovered = np.argwhere(self.lookup() < 0) + 1
        if len(uncovered):
            shown = ", ".join("".join(map(str, c)) for c in uncovered[:5])
            raise InputError(
                source,
                f"map {self.name!r} leaves {len(uncovered)} RFM cells without a "
                f"segment (e.g. {shown}); add a segment or a catch-all",
            )

    def lookup(self) -> np.ndarray:
        """Segment index per (R-1, F-1, M-1) cell; -1 where no segment matches."""
        table = np.full((self.bins,) * 3, -1, dtype=np.int64)
        for i, s in reversed(list(enumerate(self.segments))):  # earlier segments win
            r, f, m = (slice(None) if rng is None else slice(rng[0] - 1, rng[1]) for rng in (s.r, s.f, s.m))
            table[r, f, m] = i
        return table


def _rule(code, r, f):
    en, zh, strategy_en, strategy_zh = LABELS[code]
    return {
        "code": code,
        "label": {"en": en, "zh": zh},
        "strategy": {"en": strategy_en, "zh": strategy_zh},
        "r": r,
        "f": f,
    }


#: The common ten-segment map on the R and F quintile scores (M is not used).
RFM10 = RFMMap(
    name="rfm10",
    bins=5,
    segments=[
        _rule("champions", [5, 5], [4, 5]),
        _rule("loyal", [3, 4], [4, 5]),
        _rule("potential_loyalist", [4, 5], [2, 3]),
        _rule("new", 5, 1),
        _rule("promising", 4, 1),
        _rule("need_attention", 3, 3),
        _rule("about_to_sleep", 3, [1, 2]),
        _rule("cant_lose", [1, 2], 5),
        _rule("at_risk", [1, 2], [3, 4]),
        _rule("hibernating", [1, 2], [1, 2]),
    ],
)


def load_rfm_map(path) -> RFMMap:
    """Read a user-defined map from YAML (the shape of :class:`RFMMap`), checking that it is
    complete. Example::

        name: simple
        bins: 3
        segments:
          - code: best
            label: {en: Best, zh: 最佳}
            strategy: {en: Reward them, zh: 奖励}
            r: [3, 3]
            f: [2, 3]
          - code: rest
            label: {en: Everyone else}
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        rfm_map = RFMMap.model_validate(raw)
    except yaml.YAMLError as exc:
        raise InputError(str(path), f"not valid YAML: {str(exc).splitlines()[0]}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(map(str, err["loc"])) or "top level"
        raise InputError(str(path), f"{where}: {err['msg']}") from None
    rfm_map.check_complete(str(path))
    return rfm_map


def rfm_map(features: pd.DataFrame, rfm_map: RFMMap = RFM10, *, lang: str = "en") -> Segmentation:
    """Name customers by a map on their RFM scores (default: the ten-segment RF map).

    Built-in strategies come from :data:`clvtier.segment.labels.LABELS`; a user map brings its
    own labels and strategies (Chinese falls back to English when not given).
    """
    check_lang(lang)
    rfm_map.check_complete(rfm_map.name)
    scores = rfm_scores(features, bins=rfm_map.bins)
    index = rfm_map.lookup()[scores["r_score"] - 1, scores["f_score"] - 1, scores["m_score"] - 1]
    order = [s.code for s in rfm_map.segments]
    names = {s.code: (s.label.get(lang), s.strategy.get(lang)) for s in rfm_map.segments}
    codes = np.array(order, dtype=object)[index]
    return finish(
        rfm_map.name,
        features,
        codes,
        order,
        inputs=scores.drop(columns="customer_id"),
        value="monetary_total",
        lang=lang,
        params={"map": rfm_map.name, "bins": rfm_map.bins},
        names=names,
    )
