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


#: How customers with equal values are scored: ``share`` a score, or ``spread`` over the scores
#: by the tie-breaks (equal-sized groups).
TIES = ("share", "spread")


def rfm_scores(features: pd.DataFrame, *, bins: int = 5, ties: str = "share") -> pd.DataFrame:
    """Score R, F and M from 1 to ``bins`` (quintiles by default).

    R = ``bins`` for the most recent customers, F and M = ``bins`` for the most frequent and the
    highest spenders. A customer's position is its rank 1..n (n = best) and the score is
    ``ceil(position * bins / n)``, so one customer alone scores ``bins``.

    ``ties="share"`` (default): customers with equal values share a score, the one of the lowest
    position of their group (``rank(method="min")``). When 55% of customers bought once they all
    score F = 1, and the next F score is the one the two-time buyers reach (3 then): a score
    describes the customers in it, and some scores may be empty.
    ``ties="spread"``: equal-sized groups; ties are broken by monetary_total (the higher spender
    scores higher; for M, by frequency_count), then by customer id (the smaller id higher), so
    one-time buyers spread over the low F scores.

    Either way the scores never depend on the row order.

    Returns
    -------
    DataFrame
        ``customer_id, recency_days, frequency_count, monetary_total, r_score, f_score, m_score,
        rfm_cell`` (e.g. ``"545"``; ``"5-4-5"`` when bins > 9) and ``rfm_score`` (R + F + M).
    """
    if not isinstance(bins, int | np.integer) or bins < 2:
        raise InputError("bins", f"must be an integer of at least 2; got {bins!r}")
    if ties not in TIES:
        raise InputError("ties", f"valid options are 'share', 'spread'; got {ties!r}")
    require(features, RFM_COLUMNS, "RFM scores")
    r, f, m = (numeric(features, c, "RFM scores") for c in RFM_COLUMNS)
    n = len(features)
    out = features[["customer_id", *RFM_COLUMNS]].reset_index(drop=True)
    for name, keys in (("r_score", [-r, m]), ("f_score", [f, m]), ("m_score", [m, f])):
        if ties == "share":
            position = pd.Series(keys[0]).rank(method="min").to_numpy()
        else:
            position = positions(features, keys)
        out[name] = np.ceil(position * bins / n).astype(np.int64)
    sep = "" if bins <= 9 else "-"
    out["rfm_cell"] = (
        out["r_score"].astype(str) + sep + out["f_score"].astype(str) + sep + out["m_score"].astype(str)
    )
    out["rfm_score"] = out["r_score"] + out["f_score"] + out["m_score"]
    return out


def rfm_score_sql(bins: int = 5, ties: str = "share") -> str:
    """SQL select-list items giving the scores of :func:`rfm_scores` over a whole table (window
    functions, same order and tie handling), for data too large for pandas: ``r_score, f_score,
    m_score``. The table needs ``customer_id`` and the RFM columns."""
    n = "count(*) OVER ()"
    if ties == "share":
        orders = {"r_score": f"{R} DESC", "f_score": f"{F} ASC", "m_score": f"{M} ASC"}
        return ", ".join(f"CAST(ceil(rank() OVER (ORDER BY {o}) * {int(bins)} / {n}) AS BIGINT) AS {name}"
                         for name, o in orders.items())
    orders = {"r_score": f"{R} DESC, {M} ASC", "f_score": f"{F} ASC, {M} ASC",
              "m_score": f"{M} ASC, {F} ASC"}
    return ", ".join(f"CAST(ceil(row_number() OVER (ORDER BY {o}, customer_id DESC) * {int(bins)} / {n})"
                     f" AS BIGINT) AS {name}" for name, o in orders.items())


class RFMPopulation:
    """A population's sorted R, F and M values, scoring any of its customers as
    :func:`rfm_scores` and :func:`rfm_score_sql` do with ``ties="share"`` (the lowest position of
    the tied group), so a batch job can score chunks against the whole population."""

    def __init__(self, recency, frequency, monetary, bins: int = 5):
        self.bins = bins
        self.sorted = {c: np.sort(np.asarray(v)) for c, v in zip(RFM_COLUMNS, (recency, frequency, monetary),
                                                                  strict=True)}
        self.n = len(self.sorted[R])

    def scores(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """``r_score, f_score, m_score`` of the rows of ``frame`` (members of the population)."""
        out = {}
        for name, c in (("r_score", R), ("f_score", F), ("m_score", M)):
            population = self.sorted[c]
            v = frame[c].to_numpy(dtype=population.dtype)
            order = np.argsort(v, kind="stable")  # looked up in sorted order (cache-friendly)
            if c == R:  # fewer days rank higher: position = customers with more days + 1
                found = len(population) - np.searchsorted(population, v[order], side="right")
            else:
                found = np.searchsorted(population, v[order], side="left")
            position = np.empty(len(v), dtype=np.int64)
            position[order] = found + 1
            out[name] = np.ceil(position * self.bins / self.n).astype(np.int64)
        return out


def rfm_score_segments(features: pd.DataFrame, *, bins: int = 5, ties: str = "share",
                       lang: str = "en") -> Segmentation:
    """Customers grouped by their total RFM score (R + F + M, from 3 x bins down to 3), with
    the scores as inputs. Empty totals are left out of the profile. Segments have no strategy."""
    scores = rfm_scores(features, bins=bins, ties=ties)
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
        params={"bins": bins, "ties": ties},
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
    features: pd.DataFrame,
    *,
    threshold: Literal["auto", "mean", "median", "score"] = "auto",
    rules: dict[str, float] | None = None,
    ties: str = "share",
    lang: str = "en",
) -> Segmentation:
    """The eight-segment RFM map: R, F and M each high or low.

    Thresholds, per dimension:

    - ``"median"`` / ``"mean"``: R is high when the customer bought *more recently* than it
      (recency_days strictly below), F and M when strictly above; a customer at the threshold is
      low, so identical customers all land in the same segment.
    - ``"score"``: high when the dimension's RFM score (quintiles, equal values sharing a score)
      is 4 or 5: the best two fifths, without splitting equal customers.
    - ``"auto"`` (default): the median, except where it is degenerate (equal to the smallest or
      largest value, as F's median of 1 is when most customers bought once: "F high" would mean
      "bought twice"), where the score is used. ``params["split"]`` says which was used.
    - ``rules`` overrides any dimension with a business rule: ``{"recency_days": 90}`` = R high
      within 90 days (``<=``), ``{"frequency_count": 3, "monetary_total": 500}`` = F high from 3
      purchases, M high from 500 (``>=``).
    """
    if threshold not in ("auto", "mean", "median", "score"):
        raise InputError("threshold",
                         f"valid options are 'auto', 'mean', 'median', 'score'; got {threshold!r}")
    rules = dict(rules or {})
    unknown = sorted(set(rules) - set(RFM_COLUMNS))
    if unknown:
        raise InputError("rules", f"rules apply to {', '.join(RFM_COLUMNS)}; got {unknown[0]!r}")
    require(features, RFM_COLUMNS, "rfm8")
    values = {c: numeric(features, c, "rfm8") for c in RFM_COLUMNS}
    scores = rfm_scores(features, ties=ties)
    high, split, centre = {}, {}, {}
    for c, score in zip(RFM_COLUMNS, ("r_score", "f_score", "m_score"), strict=True):
        v = values[c]
        if c in rules:
            rule = float(rules[c])
            high[c], split[c], centre[c] = (v <= rule) if c == R else (v >= rule), "rule", rule
            continue
        how = threshold
        if how == "auto":
            median = float(np.median(v))
            how = "score" if median in (float(v.min()), float(v.max())) else "median"
        if how == "score":
            high[c], split[c], centre[c] = scores[score].to_numpy() >= 4, "score", None
        else:
            centre[c] = float(getattr(np, how)(v))
            high[c] = v < centre[c] if c == R else v > centre[c]
            split[c] = how
    flags = pd.DataFrame({"r_high": high[R], "f_high": high[F], "m_high": high[M]})
    codes = [RFM8[key] for key in zip(flags["r_high"], flags["f_high"], flags["m_high"], strict=True)]
    inputs = pd.concat([features[RFM_COLUMNS].reset_index(drop=True), flags], axis=1)
    return finish(
        "rfm8",
        features,
        np.array(codes, dtype=object),
        list(RFM8.values()),
        inputs=inputs,
        value="monetary_total",
        lang=lang,
        params={"threshold": threshold, "split": split, "centre": centre, "rules": rules, "ties": ties},
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


def rfm_map(features: pd.DataFrame, rfm_map: RFMMap = RFM10, *, ties: str = "share",
            lang: str = "en") -> Segmentation:
    """Name customers by a map on their RFM scores (default: the ten-segment RF map).

    Built-in strategies come from :data:`clvtier.segment.labels.LABELS`; a user map brings its
    own labels and strategies (Chinese falls back to English when not given).
    """
    check_lang(lang)
    rfm_map.check_complete(rfm_map.name)
    scores = rfm_scores(features, bins=rfm_map.bins, ties=ties)
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
        params={"map": rfm_map.name, "bins": rfm_map.bins, "ties": ties},
        names=names,
    )
