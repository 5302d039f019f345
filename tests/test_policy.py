"""Tier policies: validation, one tier per customer, shares, absolute cuts, rules, at-risk, reasons."""

import re

import numpy as np
import pandas as pd
import pytest

from clvtier.errors import InputError
from clvtier.tiering.policy import BUILTIN, TierPolicy, load_policy


def _scored(n=2000, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    clv = rng.gamma(0.8, 40, n)
    if ties:  # a third of the customers share one predicted value, as one-time buyers often do
        clv[: n // 3] = 3.25
    return pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "predicted_clv": clv,
            "monetary_total": rng.gamma(1.2, 80, n),
            "churn_probability": rng.uniform(size=n),
            "satisfaction_mean": rng.integers(1, 6, n).astype(float),
        }
    )


def _policy(**changes):
    tree = {
        "name": "test",
        "version": 2,
        "score": {"inputs": {"predicted_clv": 1}, "scale": "value"},
        "tiers": [
            {"code": "a", "label": {"en": "A"}, "action": {"en": "do a"}, "share": 0.2},
            {"code": "b", "label": {"en": "B"}, "action": {"en": "do b"}, "share": 0.8},
        ],
    }
    tree.update(changes)
    return TierPolicy.model_validate(tree)


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_policies_load(name):
    policy = load_policy(name)
    assert policy.name == name and policy.version >= 1 and len(policy.digest()) == 16


def test_default_is_corporate_four_tiers():
    policy = load_policy()
    assert [t.code for t in policy.tiers] == ["premium", "develop", "potential", "marginal"]
    assert [t.share for t in policy.tiers] == [0.15, 0.25, 0.30, 0.30]
    assert [t.label.zh for t in policy.tiers] == ["优质客户", "发展客户", "潜力客户", "边缘客户"]
    assert set(policy.columns) == {"predicted_clv", "monetary_total", "churn_probability"}


@pytest.mark.parametrize(
    "text, match",
    [
        ("name: x\nversion: 1\ntiers: [\n", "not valid YAML"),
        (
            "name: x\nversion: 1\nscore: {inputs: {predicted_clv: 1}}\ntiers:\n"
            "  - {code: a, label: {en: A}, action: {en: a}, share: 0.5}\n"
            "  - {code: b, label: {en: B}, action: {en: b}, share: 0.4}\n",
            "shares must add up to 1",
        ),
        (
            "name: x\nversion: 1\nscore: {inputs: {predicted_clv: 1}, scale: value}\ntiers:\n"
            "  - {code: a, label: {en: A}, action: {en: a}, min_score: 1}\n"
            "  - {code: b, label: {en: B}, action: {en: b}, min_score: 5}\n"
            "  - {code: c, label: {en: C}, action: {en: c}}\n",
            "min_score must decrease",
        ),
        (
            "name: x\nversion: 1\ntiers:\n"
            "  - {code: a, label: {en: A}, action: {en: a}, share: 0.5}\n"
            "  - {code: b, label: {en: B}, action: {en: b}, share: 0.5}\n",
            "need a score section",
        ),
        (
            "name: x\nversion: 1\ntiers:\n"
            "  - {code: a, label: {en: A}, action: {en: a}, when: [{column: c, op: '>', value: 1}]}\n"
            "  - {code: b, label: {en: B}, action: {en: b}, when: [{column: c, op: '<', value: 1}]}\n",
            "the last takes the rest",
        ),
        (
            "name: x\nversion: 1\ntiers:\n"
            "  - {code: a, label: {en: A}, action: {en: a},"
            " when: [{column: c, op: '>', value: 1, quantile: 0.5}]}\n"
            "  - {code: b, label: {en: B}, action: {en: b}}\n",
            "tiers.0.when.0: give exactly one of value or quantile",
        ),
        (
            "name: x\nversion: 1\nscore: {inputs: {a: 1, b: 1}, scale: value}\ntiers:\n"
            "  - {code: a, label: {en: A}, action: {en: a}, share: 0.5}\n"
            "  - {code: b, label: {en: B}, action: {en: b}, share: 0.5}\n",
            "exactly one input",
        ),
        (
            "name: x\nversion: 1\ncolour: red\nscore: {inputs: {predicted_clv: 1}}\ntiers:\n"
            "  - {code: a, label: {en: A}, action: {en: a}, share: 0.5}\n"
            "  - {code: b, label: {en: B}, action: {en: b}, share: 0.5}\n",
            "colour: Extra inputs",
        ),
    ],
)
def test_invalid_policies_name_file_and_key(tmp_path, text, match):
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=re.escape(str(path)) + ".*" + re.escape(match)):
        load_policy(path)


def test_unknown_policy_file_lists_builtins(tmp_path):
    with pytest.raises(InputError, match="built-in policies: corporate4"):
        load_policy(tmp_path / "missing.yaml")


@pytest.mark.parametrize("name", ["corporate4", "abc4_clv", "clv_cs"])
@pytest.mark.parametrize("ties", [False, True])
def test_every_customer_gets_exactly_one_tier_and_chunks_agree(name, ties):
    scored = _scored(ties=ties)
    fitted = load_policy(name).fit(scored)
    whole = fitted.assign(scored)
    codes = {t.code for t in fitted.policy.tiers}
    assert len(whole) == len(scored) and whole["tier"].isin(codes).all()
    assert whole.notna().all().all() and (whole["tier_reason"].str.len() > 0).all()
    chunks = pd.concat([fitted.assign(scored.iloc[i : i + 333]) for i in range(0, len(scored), 333)])
    pd.testing.assert_frame_equal(chunks, whole)


@pytest.mark.parametrize("n", [7, 100, 2000, 2001])
def test_shares_are_respected_within_rounding(n):
    scored = _scored(n=n)
    policy = load_policy("corporate4")
    tiers = policy.fit(scored).assign(scored)["tier"]
    bounds = np.round(np.cumsum([t.share for t in policy.tiers]) * n)
    expected = np.diff(np.concatenate([[0], bounds]))
    counts = tiers.value_counts().reindex([t.code for t in policy.tiers], fill_value=0).to_numpy()
    assert (np.abs(counts - expected) <= 1).all() and counts.sum() == n


def test_equal_scores_share_a_tier_so_ties_can_overfill_the_boundary_tier():
    scored = _scored(ties=True)
    out = load_policy("abc4_clv").fit(scored).assign(scored)
    tied = scored["predicted_clv"] == 3.25
    assert out.loc[tied, "tier"].nunique() == 1
    # the tied third sits across the 50% boundary, so "regular" or "small" holds all of it
    counts = out["tier"].value_counts()
    assert counts.sum() == len(scored) and counts.max() >= tied.sum()


def test_absolute_cutoffs_and_catch_all():
    policy = _policy(
        tiers=[
            {"code": "a", "label": {"en": "A"}, "action": {"en": "do a"}, "min_score": 100},
            {"code": "b", "label": {"en": "B"}, "action": {"en": "do b"}, "min_score": 20},
            {"code": "c", "label": {"en": "C"}, "action": {"en": "do c"}},
        ]
    )
    scored = pd.DataFrame({"customer_id": [1, 2, 3, 4, 5], "predicted_clv": [150.0, 100.0, 99.9, 20.0, 0.0]})
    out = policy.fit(scored).assign(scored)
    assert out["tier"].tolist() == ["a", "a", "b", "b", "c"]
    assert out["action"].tolist() == ["do a", "do a", "do b", "do b", "do c"]
    assert out["tier_reason"].tolist() == [
        "predicted CLV 150.00 >= a cut-off 100.00",
        "predicted CLV 100.00 >= a cut-off 100.00",
        "predicted CLV 99.90 >= b cut-off 20.00",
        "predicted CLV 20.00 >= b cut-off 20.00",
        "predicted CLV 0.00 < b cut-off 20.00",
    ]


def test_rank_score_reason_states_values_ranks_and_cutoff():
    scored = _scored()
    fitted = load_policy("corporate4").fit(scored)
    out = fitted.assign(scored)
    pattern = re.compile(
        r"score \(0\.6 x rank ([\d.]+) of predicted CLV ([\d,.]+) \+ 0\.4 x rank ([\d.]+) of past spend "
        r"([\d,.]+)\) = ([\d.]+) (>=|<) (\w+) cut-off ([\d.]+)"
    )
    cuts = {t.code: c for t, c in zip(fitted.policy.tiers, fitted.cuts, strict=True)}
    for row, reason, tier in zip(scored.itertuples(), out["tier_reason"], out["tier"], strict=True):
        m = pattern.match(reason)
        assert m, reason
        assert float(m[2].replace(",", "")) == pytest.approx(row.predicted_clv, abs=0.005)
        assert float(m[4].replace(",", "")) == pytest.approx(row.monetary_total, abs=0.005)
        score = 0.6 * float(m[1]) + 0.4 * float(m[3])
        assert float(m[5]) == pytest.approx(score, abs=0.002)
        if m[6] == ">=":
            assert m[7] == tier and float(m[5]) >= round(cuts[tier], 3) - 0.0005
        else:
            assert tier == "marginal" and float(m[5]) < round(cuts[m[7]], 3) + 0.0005


def test_at_risk_is_high_past_value_and_high_churn_whatever_the_tier():
    scored = _scored()
    out = load_policy("corporate4").fit(scored).assign(scored)
    past_cut = np.quantile(scored["monetary_total"], 0.75)
    expected = (scored["monetary_total"] >= past_cut) & (scored["churn_probability"] >= 0.5)
    assert (out["at_risk"] == expected).all() and expected.any()
    assert out.loc[expected, "tier"].nunique() > 1  # flagged across tiers
    flagged = out[out["at_risk"]]
    assert flagged["action"].str.startswith("At risk: contact now").all()
    assert (
        flagged["tier_reason"]
        .str.contains(
            r"; at risk: past spend [\d,.]+ >= [\d,.]+ \(the 75% quantile\) "
            r"and churn probability [\d.]+ >= 0\.50"
        )
        .all()
    )
    assert not out.loc[~out["at_risk"], "tier_reason"].str.contains("at risk").any()


def test_an_at_risk_reason_is_the_tier_reason_then_the_conditions_met():
    scored = _scored()
    fitted = load_policy("corporate4").fit(scored)
    out = fitted.assign(scored)
    calm = fitted.assign(scored.assign(churn_probability=0.0))  # same tiers, nobody at risk
    assert (out["tier"] == calm["tier"]).all() and out["at_risk"].any() and not calm["at_risk"].any()
    cut = fitted.quantiles[("monetary_total", 0.75)]
    for row, reason, plain, risky in zip(scored.itertuples(), out["tier_reason"], calm["tier_reason"],
                                         out["at_risk"], strict=True):
        risk = (f"; at risk: past spend {row.monetary_total:,.2f} >= {cut:,.2f} (the 75% quantile) and "
                f"churn probability {row.churn_probability:,.2f} >= 0.50")
        assert reason == plain + (risk if risky else "")
    prefix = fitted.policy.at_risk.action.en + " "
    assert (out.loc[out["at_risk"], "action"] == prefix + calm.loc[out["at_risk"], "action"]).all()


def test_rules_policy_first_match_wins():
    scored = _scored()
    out = load_policy("clv_cs").fit(scored).assign(scored)
    high_clv = scored["predicted_clv"] > scored["predicted_clv"].median()
    assert (out.loc[high_clv, "tier"].str.startswith("clv_high")).all()
    assert (out.loc[~high_clv, "tier"].str.startswith("clv_low")).all()
    top_sat = scored["satisfaction_mean"] > np.quantile(scored["satisfaction_mean"], 0.6667)
    assert (out.loc[high_clv & top_sat, "tier"] == "clv_high_sat_high").all()
    assert (
        out.loc[out["tier"] == "clv_low_sat_low", "tier_reason"]
        == "none of the conditions of the tiers above hold"
    ).all()


def test_chinese_actions():
    scored = _scored(n=50)
    out = load_policy().fit(scored).assign(scored, lang="zh")
    assert out.loc[~out["at_risk"], "action"].str.contains("[\u4e00-\u9fff]").all()


def test_missing_policy_column_is_named():
    scored = _scored().drop(columns="satisfaction_mean")
    with pytest.raises(InputError, match="policy clv_cs: needs column 'satisfaction_mean'"):
        load_policy("clv_cs").fit(scored)


def test_non_finite_policy_values_are_refused():
    scored = _scored()
    scored.loc[3, "predicted_clv"] = np.nan
    with pytest.raises(InputError, match="'predicted_clv' has 1 missing or non-finite"):
        load_policy().fit(scored)
