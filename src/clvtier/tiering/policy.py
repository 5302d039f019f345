"""Tier policies: YAML rules that turn scored customers into tiers, reasons and actions.

A policy is fitted on the whole scored population (share cut-offs and quantiles become values)
and then assigns any chunk of it, so a batch job can work in chunks and still cut on the
population. Three ways to cut, one per policy:

- **shares**: customers ordered by a score, the best ``share`` of them in the first tier, and so
  on. A customer's tier is the first whose cut-off its score reaches, so equal scores share a
  tier and a tier can exceed its share by the customers tied on its boundary.
- **min_score**: the same score cut at absolute values; the last tier takes the rest.
- **when**: the first tier whose conditions all hold; the last tier (no conditions) takes the rest.

The score is either one column's own value (``scale: value``) or a weighted mean of percentile
ranks (``scale: rank``): a customer's rank on a column is the share of the population with a
value at or below theirs, so it lies in (0, 1] and equal values rank equally.

``at_risk`` is a set of conditions checked for every customer whatever the tier.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from clvtier.errors import InputError
from clvtier.tiering.text import format_rows

BUILTIN = ("corporate4", "abc4_clv", "clv_cs")
DEFAULT = "corporate4"
#: Plain names of the columns policies usually read, for reasons.
NAMES = {
    "predicted_clv": "predicted CLV",
    "monetary_total": "past spend",
    "churn_probability": "churn probability",
    "probability_alive": "P(alive)",
    "expected_purchases": "expected purchases",
    "frequency_count": "purchases",
    "recency_days": "days since last purchase",
    "rfm_score": "RFM score",
    "profit_total": "past profit",
    "satisfaction_mean": "satisfaction",
}
NAMES_ZH = {
    "predicted_clv": "预测CLV",
    "monetary_total": "历史消费",
    "churn_probability": "流失概率",
    "probability_alive": "存活概率",
    "expected_purchases": "预期购买次数",
    "frequency_count": "购买次数",
    "recency_days": "距上次购买天数",
    "rfm_score": "RFM总分",
    "profit_total": "历史利润",
    "satisfaction_mean": "满意度",
}
#: The words of a tier reason, by language ({} are filled in by the code that uses them).
WORDS = {
    "en": {"score": "score ({}) = {{:.3f}}", "part": "{w} x rank {{:.3f}} of {name} {{:,.2f}}",
           "at_least": " >= {tier} cut-off {cut}", "below": " < {tier} cut-off {cut}",
           "quantile": " (the {q:.0%} quantile)", "and": " and ", "at_risk": "; at risk: ",
           "none": "none of the conditions of the tiers above hold"},
    "zh": {"score": "得分（{}）= {{:.3f}}", "part": "{w} × {name} {{:,.2f}} 的排名 {{:.3f}}",
           "at_least": " ≥ {tier}门槛 {cut}", "below": " < {tier}门槛 {cut}",
           "quantile": "（{q:.0%}分位数）", "and": " 且 ", "at_risk": "；流失预警：",
           "none": "不满足以上各层的条件"},
}
_OPS = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Text(_Strict):
    en: str
    zh: str | None = None

    def get(self, lang: str) -> str:
        return self.zh if lang == "zh" and self.zh else self.en


class Condition(_Strict):
    """``column op threshold``: the threshold is a ``value`` or the population ``quantile``."""

    column: str
    op: Literal[">", ">=", "<", "<="]
    value: float | None = None
    quantile: float | None = Field(None, ge=0, le=1)

    @model_validator(mode="after")
    def _one_threshold(self):
        if (self.value is None) == (self.quantile is None):
            raise ValueError("give exactly one of value or quantile")
        return self


class Score(_Strict):
    inputs: dict[str, float] = Field(min_length=1)
    scale: Literal["rank", "value"] = "rank"

    @model_validator(mode="after")
    def _check(self):
        if any(not np.isfinite(w) or w <= 0 for w in self.inputs.values()):
            raise ValueError(f"weights must be positive; got {self.inputs}")
        if self.scale == "value" and len(self.inputs) != 1:
            raise ValueError("scale 'value' takes exactly one input; use 'rank' to combine columns")
        return self


class Tier(_Strict):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: Text
    action: Text
    share: float | None = Field(None, gt=0, le=1)
    min_score: float | None = None
    when: list[Condition] | None = None


class AtRisk(_Strict):
    when: list[Condition] = Field(min_length=1)
    action: Text


class TierPolicy(_Strict):
    """A tier policy as written in YAML (see the built-in ``corporate4.yaml``)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    version: int = Field(ge=1)
    description: str = ""
    score: Score | None = None
    tiers: list[Tier] = Field(min_length=2)
    at_risk: AtRisk | None = None

    @model_validator(mode="after")
    def _cut(self):
        codes = [t.code for t in self.tiers]
        if len(set(codes)) != len(codes):
            raise ValueError(f"tier codes repeat: {codes}")
        kind = self.kind
        head, last = self.tiers[:-1], self.tiers[-1]
        if kind == "shares":
            if any(t.share is None for t in self.tiers):
                raise ValueError("with shares, every tier needs a share (the last one too)")
            total = sum(t.share for t in self.tiers)
            if abs(total - 1) > 1e-6:
                raise ValueError(f"tier shares must add up to 1; got {total:g}")
        elif kind == "min_score":
            if any(t.min_score is None for t in head) or last.min_score is not None:
                raise ValueError("with min_score, every tier but the last needs one; the last takes the rest")
            cuts = [t.min_score for t in head]
            if any(a <= b for a, b in zip(cuts, cuts[1:], strict=False)):
                raise ValueError(f"min_score must decrease from the first tier to the last; got {cuts}")
        else:
            if any(not t.when for t in head) or last.when:
                raise ValueError(
                    "with when, every tier but the last needs conditions; the last takes the rest"
                )
        if kind != "when" and self.score is None:
            raise ValueError(f"tiers cut by {kind} need a score section")
        mixed = [t.code for t in self.tiers if sum(x is not None for x in (t.share, t.min_score, t.when)) > 1]
        if mixed:
            raise ValueError(f"tier {mixed[0]!r}: give one of share, min_score or when")
        return self

    @property
    def kind(self) -> str:
        first = self.tiers[0]
        return "shares" if first.share is not None else "min_score" if first.min_score is not None else "when"

    @property
    def columns(self) -> list[str]:
        """The scored columns the policy reads."""
        cols = list(self.score.inputs) if self.score and self.kind != "when" else []
        for conditions in [t.when or [] for t in self.tiers] + [self.at_risk.when if self.at_risk else []]:
            cols += [c.column for c in conditions]
        return list(dict.fromkeys(cols))

    @property
    def label(self) -> str:
        return f"{self.name}@v{self.version}"

    def fit(self, population: pd.DataFrame) -> FittedPolicy:
        """Resolve shares and quantiles on the whole scored population."""
        values = _columns(population, self.columns, self.name)
        ranks, own = {}, {}
        if self.kind != "when" and self.score.scale == "rank":
            for c in self.score.inputs:  # one sort gives the population and its own ranks
                order = np.argsort(values[c], kind="stable")
                ranks[c] = values[c][order]
                counts = np.empty(len(order), dtype=np.int64)
                counts[order] = np.searchsorted(ranks[c], ranks[c], side="right")
                own[c] = counts / len(order)
        fitted = FittedPolicy(self, ranks, [], {}, len(population))
        columns = dict(values)
        if self.kind == "shares":
            columns[SCORE] = fitted.score(values, own or None)
        return fitted.resolve(SortedColumns(columns, presorted=ranks))

    def digest(self) -> str:
        """SHA-256 of the policy's canonical JSON: equal policies, equal digests."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


#: The name under which :meth:`FittedPolicy.resolve` asks for order statistics of the score.
SCORE = "_score"


class SortedColumns:
    """Order statistics of in-memory columns (the local engine's :class:`Population`): the
    Spark engine answers the same questions from a distributed sort."""

    def __init__(self, columns: dict[str, np.ndarray], presorted: dict[str, np.ndarray] | None = None):
        presorted = presorted or {}  # columns already sorted (the same np.sort) are not sorted again
        self._sorted = {c: presorted[c] if c in presorted else np.sort(np.asarray(v, dtype=float))
                        for c, v in columns.items()}

    def kth(self, column: str, k: int) -> float:
        """The ``k``-th smallest value (0-based) of ``column``."""
        return float(self._sorted[column][k])

    def size(self) -> int:
        return len(next(iter(self._sorted.values())))


def quantile(population, column: str, q: float) -> float:
    """``numpy.quantile(column, q)`` (linear interpolation) from two order statistics: numpy's
    own interpolation between the neighbours, so every engine gets the same bits."""
    n = population.size()
    position = (n - 1) * q
    below = int(np.floor(position))
    lower = population.kth(column, below)
    upper = population.kth(column, min(below + 1, n - 1))
    return float(np.quantile(np.array([lower, upper]), position - below))


    def digest(self) -> str:
        """SHA-256 of the policy's canonical JSON: equal policies, equal digests."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


@dataclass
class FittedPolicy:
    """A policy with its cut-offs resolved on a population; :meth:`assign` tiers any part of it."""

    policy: TierPolicy
    ranks: dict[str, np.ndarray]
    cuts: list[float]
    quantiles: dict[tuple[str, float], float]
    n: int
    degenerate: set = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)

    def resolve(self, population) -> FittedPolicy:
        """Resolve share cut-offs and quantile thresholds from order statistics of the population
        (``population.kth(column, k)``, the score under :data:`SCORE`); returns ``self``."""
        p, n = self.policy, population.size()
        if p.kind == "shares":
            bounds = np.round(np.cumsum([t.share for t in p.tiers]) * n).astype(np.int64)
            bounds[0] = max(bounds[0], 1)  # a lone customer (or all tied) belongs to the top tier
            bounds = np.maximum.accumulate(bounds)
            # the b-th largest score is the (n - b)-th smallest
            cuts = [population.kth(SCORE, n - int(b)) if b > 0 else np.inf for b in bounds[:-1]]
            self.cuts = cuts + [-np.inf]
        elif p.kind == "min_score":
            self.cuts = [t.min_score for t in p.tiers[:-1]] + [-np.inf]
        conditions = [c for t in p.tiers for c in t.when or []]
        conditions += p.at_risk.when if p.at_risk else []
        for c in conditions:
            if c.quantile is not None:
                q = self.quantiles[(c.column, c.quantile)] = quantile(population, c.column, c.quantile)
                # "at least the 75% quantile" that is also the minimum selects nearly everyone: the
                # column cannot separate the customers, so the condition does not fire
                low, high = population.kth(c.column, 0), population.kth(c.column, n - 1)
                if (c.op in (">", ">=") and q <= low) or (c.op in ("<", "<=") and q >= high):
                    self.degenerate.add((c.column, c.quantile))
                    self.warnings.append(
                        f"policy {p.label}: {c.column} {c.op} its {c.quantile:.0%} quantile ({q:,.2f}) "
                        f"cannot separate customers (the quantile is the column's "
                        f"{'minimum' if c.op in ('>', '>=') else 'maximum'}), so the condition never fires"
                    )
        return self

    def score(self, values: dict[str, np.ndarray], ranks: dict[str, np.ndarray] | None = None) -> np.ndarray:
        score = self.policy.score
        if score.scale == "value":
            return values[next(iter(score.inputs))].astype(float)
        ranks = ranks or self._ranks(values)
        total = sum(score.inputs.values())
        return sum(w / total * ranks[c] for c, w in score.inputs.items())

    def _ranks(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {c: self._rank(c, values[c]) for c in self.ranks}

    def _rank(self, column: str, v: np.ndarray) -> np.ndarray:
        population = self.ranks[column]
        # looked up in sorted order (cache-friendly: about 3x faster on a large population), the
        # same counts as a plain lookup
        order = np.argsort(v, kind="stable")
        found = np.empty(len(v), dtype=np.int64)
        found[order] = np.searchsorted(population, v[order], side="right")
        return found / len(population)

    def threshold(self, c: Condition) -> float:
        return c.value if c.quantile is None else self.quantiles[(c.column, c.quantile)]

    def _holds(self, conditions: list[Condition], values) -> np.ndarray:
        ok = np.ones(len(next(iter(values.values()))), dtype=bool)
        for c in conditions:
            if (c.column, c.quantile) in self.degenerate:
                return np.zeros_like(ok)
            ok &= _OPS[c.op](values[c.column], self.threshold(c))
        return ok

    def assign(self, frame, *, lang: str = "en", ranks: dict | None = None, arrow: bool = False):
        """``tier, at_risk, tier_reason, action`` for each row of ``frame`` (a DataFrame or an Arrow
        table; same order), as a DataFrame, or as an Arrow table with ``arrow=True``. ``ranks``
        gives each rank input's population rank per row when they were computed elsewhere (the
        Spark engine); by default they are looked up in the fitted population."""
        p = self.policy
        values = _columns(frame, p.columns, p.name)
        n = len(frame)
        score, ranks = None, ranks if ranks is not None else self._ranks(values)
        if p.kind == "when":
            tier = np.full(n, len(p.tiers) - 1)
            for i in reversed(range(len(p.tiers) - 1)):  # the first match wins
                tier[self._holds(p.tiers[i].when, values)] = i
        else:
            score = self.score(values, ranks)
            tier = np.searchsorted(-np.asarray(self.cuts), -score, side="left")
        at_risk = self._holds(p.at_risk.when, values) if p.at_risk else np.zeros(n, dtype=bool)
        codes = pa.array([t.code for t in p.tiers], pa.large_string()).take(tier)
        # an at-risk customer's action is the at-risk action, then the tier's
        actions = [t.action.get(lang) for t in p.tiers]
        if p.at_risk is not None:
            actions += [p.at_risk.action.get(lang) + " " + a for a in actions]
        actions = pa.array(actions, pa.large_string()).take(tier + len(p.tiers) * at_risk)
        reasons = self._reasons(tier, at_risk, score, values, ranks, lang)
        out = pa.table({"tier": codes, "at_risk": at_risk, "tier_reason": reasons, "action": actions})
        if arrow:
            return out
        frame_index = getattr(frame, "index", None)
        result = out.to_pandas()
        if frame_index is not None:
            result.index = frame_index
        return result

    def _reasons(self, tier: np.ndarray, at_risk: np.ndarray, score, values, ranks,
                 lang: str = "en") -> pa.Array:
        """Each row's reason: its tier's explanation, then for an at-risk row the at-risk
        conditions; built per tier and flag from one template each, then put in row order."""
        p, words = self.policy, _words(lang)
        risk = ("", [])
        if p.at_risk is not None:
            template, columns = self._condition_template(p.at_risk.when, values, lang)
            risk = (_braces(words["at_risk"]) + template, columns)
        texts, where = [], []
        for i in range(len(p.tiers)):
            rows = tier == i
            if not rows.any():
                continue
            template, columns = self._tier_template(i, score, values, ranks, lang)
            for flagged in (False, True) if at_risk[rows].any() else (False,):
                group = rows & (at_risk == flagged)
                if not group.any():
                    continue
                suffix, extra = risk if flagged else ("", [])
                where.append(np.flatnonzero(group))
                texts.append(format_rows(template + suffix, [c[group] for c in [*columns, *extra]],
                                         len(where[-1])))
        return _scatter(texts, where)

    def _tier_template(self, i: int, score, values, ranks, lang: str) -> tuple[str, list[np.ndarray]]:
        """The format template of tier ``i``'s explanation and its columns (whole-chunk arrays)."""
        p, words = self.policy, _words(lang)
        t = p.tiers[i]
        if p.kind == "when":
            if not t.when:
                return _braces(words["none"]), []
            return self._condition_template(t.when, values, lang)
        # English names the tier by its code, Chinese by its label (优质客户门槛)
        if i + 1 < len(p.tiers):
            name = t.code if lang != "zh" else t.label.get(lang)
            bound = words["at_least"].format(tier=name, cut=_fmt_one(self.cuts[i], p.score.scale))
        else:
            above = p.tiers[i - 1]
            name = above.code if lang != "zh" else above.label.get(lang)
            bound = words["below"].format(tier=name, cut=_fmt_one(self.cuts[i - 1], p.score.scale))
        template, args = self._score_text(values, ranks, lang)
        return template + _braces(bound), [*args, score]

    def _score_text(self, values, ranks, lang: str = "en") -> tuple[str, list[np.ndarray]]:
        """A format template for the score's explanation and its arguments (score last)."""
        p, words = self.policy, _words(lang)
        if p.score.scale == "value":
            column = next(iter(p.score.inputs))
            return _braces(_name(column, lang)) + " {:,.2f}", []
        total = sum(p.score.inputs.values())
        parts, args = [], []
        for c, w in p.score.inputs.items():
            parts.append(words["part"].format(w=f"{w / total:.2g}", name=_braces(_name(c, lang))))
            # the template's placeholders are in the language's order: rank then value, or value then rank
            args += [values[c], ranks[c]] if lang == "zh" else [ranks[c], values[c]]
        return words["score"].format(" + ".join(parts)), args

    def _condition_template(self, conditions: list[Condition], values,
                            lang: str = "en") -> tuple[str, list[np.ndarray]]:
        """The format template saying which values met ``conditions``, and its columns."""
        words, pieces = _words(lang), []
        for c in conditions:
            where = words["quantile"].format(q=c.quantile) if c.quantile is not None else ""
            name = _braces(_name(c.column, lang))
            pieces.append(f"{name} {{:,.2f}} {c.op} {_braces(f'{self.threshold(c):,.2f}{where}')}")
        return words["and"].join(pieces), [values[c.column] for c in conditions]

    def summary(self) -> dict:
        """Cut-offs and quantiles as resolved, for logs."""
        p = self.policy
        out = {"policy": p.label, "digest": p.digest(), "kind": p.kind, "customers": self.n}
        if p.kind != "when":
            out["cuts"] = {t.code: float(c) for t, c in zip(p.tiers[:-1], self.cuts, strict=False)}
        out["quantiles"] = {f"{c}@{q:g}": v for (c, q), v in self.quantiles.items()}
        return out


def _name(column: str, lang: str = "en") -> str:
    if lang == "zh":
        return NAMES_ZH.get(column, column)
    return NAMES.get(column, column)


def _words(lang: str) -> dict[str, str]:
    return WORDS["zh" if lang == "zh" else "en"]


def _braces(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _scatter(texts: list[pa.Array], where: list[np.ndarray]) -> pa.Array:
    """One array whose rows ``where[i]`` hold ``texts[i]`` (the ``where`` together cover every
    row once)."""
    if not texts:
        return pa.array([], pa.large_string())
    order = np.concatenate(where)
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    return pa.concat_arrays([t.cast(pa.large_string()) for t in texts]).take(position)


def _fmt_one(value: float, scale: str) -> str:
    return f"{value:.3f}" if scale == "rank" else f"{value:,.2f}"


def _columns(frame, columns: list[str], policy: str) -> dict[str, np.ndarray]:
    """The policy's columns of a DataFrame or an Arrow table as float arrays, checked finite."""
    names = frame.column_names if isinstance(frame, pa.Table) else list(frame.columns)
    out = {}
    for c in columns:
        if c not in names:
            raise InputError(
                f"policy {policy}",
                f"needs column {c!r}, which the scored table does not "
                f"have; columns: {', '.join(map(str, names))}",
            )
        column = frame[c]
        if isinstance(column, pa.ChunkedArray):
            column = column.to_pandas()
        v = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        bad = ~np.isfinite(v)
        if bad.any():
            raise InputError(
                f"policy {policy}", f"column {c!r} has {int(bad.sum())} missing or non-finite values"
            )
        out[c] = v
    return out


def load_policy(source: str | Path | None = None) -> TierPolicy:
    """A built-in policy by name (``corporate4`` by default, ``abc4_clv``, ``clv_cs``) or a
    YAML file. Errors name the file and the key."""
    source = DEFAULT if source is None else source
    if str(source) in BUILTIN:
        name = f"{source}.yaml"
        text = resources.files("clvtier.tiering").joinpath("policies", name).read_text(encoding="utf-8")
    else:
        name = str(source)
        path = Path(source)
        if not path.is_file():
            raise InputError(name, f"no such policy file (built-in policies: {', '.join(BUILTIN)})")
        text = path.read_text(encoding="utf-8")
    try:
        return TierPolicy.model_validate(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        raise InputError(name, f"not valid YAML: {str(exc).splitlines()[0]}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(map(str, err["loc"])) or "top level"
        raise InputError(name, f"{where}: {err['msg'].removeprefix('Value error, ')}") from None


__all__ = ["BUILTIN", "DEFAULT", "FittedPolicy", "TierPolicy", "load_policy"]
