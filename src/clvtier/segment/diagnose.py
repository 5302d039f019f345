"""Is tiering worth it? Customer count, repeat purchasing and value concentration."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from clvtier.errors import InputError
from clvtier.evaluate.metrics import value_gini, value_top_share
from clvtier.segment.base import numeric, value_column

#: Below these, tiers are unstable, frequency says little, or tiers barely differ in value.
MIN_CUSTOMERS = 100
MIN_REPEAT_RATE = 0.10
MIN_TOP20_SHARE = 0.40


@dataclass(frozen=True)
class Diagnosis:
    """Facts that decide whether tiering pays, and a plain-language verdict.

    ``repeat_rate`` is the share of customers who bought on more than one day; ``gini`` the Gini
    coefficient of ``value`` across customers (negative values count as 0); ``top20_share`` the
    share of value held by the top 20% of customers; ``problems`` the reasons tiering may not
    pay (empty when it does).
    """

    customers: int
    repeat_rate: float
    gini: float
    top20_share: float
    value: str
    problems: tuple[str, ...]

    @property
    def worth_it(self) -> bool:
        return not self.problems

    def format(self, lang: str = "en") -> str:
        what = {"monetary_total": ("spend", "消费额"), "profit_total": ("profit", "利润")}.get(
            self.value, (self.value, self.value)
        )
        if lang == "zh":
            head = (
                f"客户数 {self.customers:,} · 重复购买率 {self.repeat_rate:.1%} · 基尼系数 {self.gini:.2f} · "
                f"前20%客户贡献{what[1]}的 {self.top20_share:.1%}"
            )
            reasons = {
                "few_customers": f"客户太少（少于{MIN_CUSTOMERS}），分层不稳定",
                "few_repeat": f"重复购买率低于{MIN_REPEAT_RATE:.0%}，频率维度意义不大",
                "even_value": f"价值分布较均匀（前20%贡献不足{MIN_TOP20_SHARE:.0%}），各层差别不大",
            }
            verdict = (
                "结论：值得分层，价值集中且客户会重复购买。"
                if self.worth_it
                else "结论：分层收益有限：" + "；".join(reasons[p] for p in self.problems) + "。"
            )
            return f"{head}\n{verdict}"
        head = (
            f"customers {self.customers:,} · repeat purchasers {self.repeat_rate:.1%} · Gini {self.gini:.2f}"
            f" · top 20% hold {self.top20_share:.1%} of {what[0]}"
        )
        reasons = {
            "few_customers": f"fewer than {MIN_CUSTOMERS} customers make unstable tiers",
            "few_repeat": f"under {MIN_REPEAT_RATE:.0%} buy again, so frequency says little",
            "even_value": f"value is spread evenly (top 20% hold under {MIN_TOP20_SHARE:.0%}), "
            "so tiers would differ little",
        }
        verdict = (
            f"verdict: tiering is worth it: the top 20% hold {self.top20_share:.0%} of {what[0]} and "
            f"{self.repeat_rate:.0%} of customers buy again."
            if self.worth_it
            else "verdict: tiering may not pay: " + "; ".join(reasons[p] for p in self.problems) + "."
        )
        return f"{head}\n{verdict}"


def diagnose(features: pd.DataFrame, *, value: str | None = None) -> Diagnosis:
    """Diagnose a feature table (:func:`clvtier.features.customer_features`).

    Value is ``profit_total`` when profit is mapped, else ``monetary_total``. Repeat purchase
    uses ``purchase_days`` (else ``frequency_count``).
    """
    value = value_column(features, value)
    repeat_col = "purchase_days" if "purchase_days" in features.columns else "frequency_count"
    for c in (value, repeat_col):
        if c not in features.columns:
            raise InputError("features", f"diagnose needs column {c!r}")
    if features.empty:
        raise InputError("features", "diagnose: no customers")
    v = numeric(features, value, "diagnose")
    repeat = float((numeric(features, repeat_col, "diagnose") > 1).mean())
    gini, top20 = value_gini(v), value_top_share(v)
    problems = tuple(
        p
        for p, bad in (
            ("few_customers", len(v) < MIN_CUSTOMERS),
            ("few_repeat", repeat < MIN_REPEAT_RATE),
            ("even_value", top20 < MIN_TOP20_SHARE),
        )
        if bad
    )
    return Diagnosis(len(v), repeat, gini, top20, value, problems)
