"""Rule-based segmentations, each against hand-worked cases."""

import math

import numpy as np
import pandas as pd
import pytest

from clvtier.errors import InputError
from clvtier.segment import (
    RFM10,
    abc,
    abc4,
    ahp_weights,
    clv_cs,
    entropy_weights,
    load_rfm_map,
    normalise,
    pyramid,
    rfm8,
    rfm_map,
    rfm_scores,
    value_matrix,
    weighted_score,
)
from clvtier.segment.labels import LABELS


def feats(r, f, m, **extra):
    n = len(r)
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1),
            "recency_days": r,
            "frequency_count": f,
            "monetary_total": np.asarray(m, dtype=float),
        }
    )
    frame["avg_order_value"] = frame["monetary_total"] / frame["frequency_count"]
    frame["purchase_days"] = frame["frequency_count"]
    return frame.assign(**extra)


# ---- RFM scores -------------------------------------------------------------------------------


def test_rfm_scores_hand_worked():
    # ten customers with distinct values: rank k (1 = worst) scores ceil(k * 5 / 10)
    f = feats(r=[90, 80, 70, 60, 50, 40, 30, 20, 10, 0], f=list(range(1, 11)), m=list(range(10, 110, 10)))
    s = rfm_scores(f)
    assert s["r_score"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]  # most recent (0 days) = 5
    assert s["f_score"].tolist() == s["m_score"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert s.loc[9, "rfm_cell"] == "555" and s.loc[0, "rfm_score"] == 3


def test_rfm_equal_values_share_a_score_by_default():
    # eight one-time buyers and two repeat buyers: the one-time buyers are all F = 1
    f = feats(r=[5] * 10, f=[1] * 8 + [3, 4], m=[10, 80, 10, 30, 10, 50, 20, 10, 5, 5])
    s = rfm_scores(f).set_index("customer_id")
    assert s["f_score"].tolist() == [1] * 8 + [5, 5]  # positions 1 (min of 1-8), 9 and 10 of 10
    assert (s["r_score"] == 1).all()  # everybody bought 5 days ago: one shared (lowest) score
    assert s["m_score"].tolist() == [2, 5, 2, 4, 2, 5, 4, 2, 1, 1]  # 5,5 -> 1; 10 x4 -> pos 3 -> 2
    shuffled = rfm_scores(f.sample(frac=1, random_state=3)).set_index("customer_id").loc[s.index]
    pd.testing.assert_frame_equal(shuffled, s)


def test_rfm_spread_ties_break_by_value_then_id_whatever_the_row_order():
    # eight one-time buyers and two repeat buyers: spread, F does not collapse into one score
    f = feats(r=[5] * 10, f=[1] * 8 + [3, 4], m=[10, 80, 10, 30, 10, 50, 20, 10, 5, 5])
    s = rfm_scores(f, ties="spread").set_index("customer_id")
    assert s["f_score"].value_counts().sort_index().tolist() == [2, 2, 2, 2, 2]
    assert s.loc[[9, 10], "f_score"].tolist() == [5, 5]
    assert s.loc[2, "f_score"] == 4 and s.loc[6, "f_score"] == 4  # the biggest one-time spenders
    # customers 1, 3, 5, 8 tie on F=1 and m=10: the smaller id scores higher
    assert s.loc[[1, 3, 5, 8], "f_score"].tolist() == [2, 2, 1, 1]
    shuffled = rfm_scores(f.sample(frac=1, random_state=3), ties="spread")
    pd.testing.assert_frame_equal(shuffled.set_index("customer_id").loc[s.index], s)


@pytest.mark.parametrize("bins, cell", [(3, "333"), (5, "555"), (10, "10-10-10")])
def test_rfm_single_customer_and_bins(bins, cell):
    s = rfm_scores(feats([3], [1], [0.0]), bins=bins)  # a zero-spend customer alone
    assert s.loc[0, "rfm_cell"] == cell and s.loc[0, "rfm_score"] == 3 * bins


def test_rfm_identical_customers_are_spread_deterministically():
    s = rfm_scores(feats([7] * 5, [2] * 5, [9] * 5), ties="spread")
    assert s["r_score"].tolist() == [5, 4, 3, 2, 1]  # by customer id, documented
    assert rfm_scores(feats([7] * 5, [2] * 5, [9] * 5))["r_score"].tolist() == [1] * 5


@pytest.mark.parametrize(
    "kwargs, frame, message",
    [
        ({"bins": 1}, feats([1], [1], [1]), "bins: must be an integer of at least 2"),
        ({}, feats([1], [1], [1]).drop(columns="monetary_total"), "needs column 'monetary_total'"),
        (
            {},
            feats([1, 2], [1, 1], [1, np.nan]),
            "'monetary_total' has 1 missing or non-finite values \\(customer_id 2\\)",
        ),
    ],
)
def test_rfm_errors(kwargs, frame, message):
    with pytest.raises(InputError, match=message):
        rfm_scores(frame, **kwargs)


# ---- RFM maps ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "threshold, expected",
    [
        # median: R 10 (recent), F 2, M 30
        (
            "median",
            ["important_value", "general_winback", "important_winback", "general_value", "general_winback"],
        ),
        # mean: R 26, F 2.4, M 38
        (
            "mean",
            ["important_value", "general_develop", "important_winback", "general_value", "general_develop"],
        ),
    ],
)
def test_rfm8_hand_worked(threshold, expected):
    f = feats(r=[1, 10, 100, 5, 15], f=[5, 2, 1, 3, 1], m=[100, 30, 40, 10, 10])
    seg = rfm8(f, threshold=threshold)
    assert seg.table["segment_code"].tolist() == expected
    assert seg.profile["customers"].sum() == 5


def test_rfm8_r_high_means_recent_and_zh_labels():
    f = feats(r=[1, 300], f=[1, 1], m=[5, 5])
    seg = rfm8(f, threshold="mean", lang="zh")
    assert seg.table["r_high"].tolist() == [True, False]
    assert (
        seg.table.loc[0, "segment"] == "一般发展客户"
        and seg.table.loc[0, "strategy"] == "提高活跃度，交叉销售"
    )
    identical = rfm8(feats([5] * 4, [2] * 4, [10] * 4))
    assert set(identical.table["segment_code"]) == {"general_winback"}


@pytest.mark.parametrize(
    "cell, code",
    [
        ((5, 5, 1), "champions"),
        ((5, 4, 5), "champions"),
        ((3, 5, 2), "loyal"),
        ((4, 4, 4), "loyal"),
        ((4, 2, 1), "potential_loyalist"),
        ((5, 3, 5), "potential_loyalist"),
        ((5, 1, 5), "new"),
        ((4, 1, 1), "promising"),
        ((3, 3, 3), "need_attention"),
        ((3, 2, 5), "about_to_sleep"),
        ((2, 5, 1), "cant_lose"),
        ((1, 3, 5), "at_risk"),
        ((2, 4, 1), "at_risk"),
        ((1, 1, 5), "hibernating"),
    ],
)
def test_rfm10_cells(cell, code):
    lookup = RFM10.lookup()
    assert (lookup >= 0).all()  # every one of the 125 cells has a segment
    assert RFM10.segments[lookup[cell[0] - 1, cell[1] - 1, cell[2] - 1]].code == code


def test_rfm10_applied_with_strategies_from_the_one_table():
    f = feats(r=list(range(10)), f=list(range(10, 0, -1)), m=[10] * 10)
    seg = rfm_map(f, lang="zh")
    assert seg.table.loc[0, "segment_code"] == "champions"  # most recent and most frequent
    assert seg.table.loc[0, "segment"] == LABELS["champions"][1]
    assert seg.table.loc[9, "segment_code"] == "hibernating"  # least recent, least frequent
    assert len(seg.profile) == 10


YAML_MAP = """
name: simple
bins: 3
segments:
  - code: best
    label: {en: Best, zh: 最佳}
    strategy: {en: Reward them}
    r: [3, 3]
    f: [2, 3]
  - code: rest
    label: {en: Everyone else}
"""


def test_user_map_from_yaml(tmp_path):
    path = tmp_path / "map.yaml"
    path.write_text(YAML_MAP, encoding="utf-8")
    user_map = load_rfm_map(path)
    seg = rfm_map(feats(r=[1, 2, 3], f=[3, 2, 1], m=[1, 2, 3]), user_map, lang="zh")
    assert seg.table["segment_code"].tolist() == ["best", "rest", "rest"]
    assert seg.table["segment"].tolist() == ["最佳", "Everyone else", "Everyone else"]
    assert seg.table.loc[0, "strategy"] == "Reward them"  # zh falls back to en


@pytest.mark.parametrize(
    "text, message",
    [
        (
            YAML_MAP.replace("  - code: rest\n    label: {en: Everyone else}\n", ""),
            "leaves 21 RFM cells without a segment \\(e.g. 111",
        ),
        (YAML_MAP.replace("bins: 3", "bins: 3\ncolour: red"), "colour: Extra inputs are not permitted"),
        (YAML_MAP.replace("r: [3, 3]", "r: [3, 4]"), "segment 'best': r range \\[3, 4\\] is not within 1..3"),
        (YAML_MAP.replace("code: rest", "code: best"), "segment codes repeat"),
        ("name: [unclosed", "not valid YAML"),
    ],
)
def test_user_map_errors(tmp_path, text, message):
    path = tmp_path / "map.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        load_rfm_map(path)


# ---- ABC, pyramid, value matrix ---------------------------------------------------------------


def test_abc_by_count_shares():
    f = feats(r=[1] * 10, f=[1] * 10, m=[5, 90, 10, 80, 20, 70, 30, 60, 40, 50])
    seg = abc(f)
    by_value = seg.table.sort_values("monetary_total", ascending=False)["segment_code"].tolist()
    assert by_value == list("AABBBCCCCC")
    assert seg.profile["share_customers"].tolist() == [0.2, 0.3, 0.5]


def test_abc_by_value_shares_hand_worked():
    # cumulative share before each customer: 0, .5, .8, .9, .95 against cuts .5 / .8
    f = feats(r=[1] * 6, f=[1] * 6, m=[50, 30, 10, 5, 5, 0])
    seg = abc(f, shares=(0.5, 0.3, 0.2), by="value")
    assert seg.table["segment_code"].tolist() == ["A", "B", "C", "C", "C", "C"]
    assert seg.profile["share_value"].tolist() == pytest.approx([0.5, 0.3, 0.2])


def test_abc_profit_when_given_any_levels_and_ties_by_id():
    f = feats(r=[1] * 5, f=[1] * 5, m=[1, 2, 3, 4, 5], profit_total=[9.0, 9.0, 9.0, 1.0, -2.0])
    seg = abc(f, shares=(0.2, 0.2, 0.2, 0.2, 0.2))
    assert seg.params["value"] == "profit_total"
    assert seg.table["segment_code"].tolist() == ["A", "B", "C", "D", "E"]  # ties 1-3 ordered by id
    assert abc(f, value="monetary_total").table["segment_code"].tolist() == ["C", "C", "C", "B", "A"]


def test_abc4_shares_and_labels():
    f = feats(r=[1] * 20, f=[1] * 20, m=np.arange(20, 0, -1))
    seg = abc4(f, lang="zh")
    assert seg.table["segment_code"].tolist() == ["top"] + ["key"] * 3 + ["regular"] * 6 + ["small"] * 10
    assert seg.profile["segment"].tolist() == ["高端客户", "重要客户", "普通客户", "小客户"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"shares": (0.5, 0.4)}, "shares must add up to 1"),
        ({"shares": (1.0,)}, "give two or more positive shares"),
        ({"by": "revenue"}, "valid options are 'count', 'value'"),
        ({"codes": ["X", "Y"]}, "give 3 distinct labels"),
    ],
)
def test_abc_errors(kwargs, message):
    with pytest.raises(InputError, match=message):
        abc(feats([1], [1], [1]), **kwargs)


def test_pyramid_profit_and_lead_rule():
    f = feats(r=[1] * 10, f=[1] * 10, m=[10] * 10, profit_total=[50, 40, 30, 20, 10, 5, 0, -1, -2, 3])
    seg = pyramid(f, shares=(0.1, 0.2, 0.6, 0.1))
    assert seg.table["segment_code"].tolist() == [
        "platinum",
        "gold",
        "gold",
        "iron",
        "iron",
        "iron",
        "lead",
        "lead",
        "lead",
        "iron",
    ]
    no_profit = pyramid(f.drop(columns="profit_total"))
    assert no_profit.params["value"] == "monetary_total"


def test_value_matrix_quadrants_median_and_given_cuts():
    f = feats(r=[1] * 4, f=[5, 5, 1, 1], m=[500, 50, 100, 10])  # AOV 100, 10, 100, 10
    seg = value_matrix(f)
    assert seg.table["segment_code"].tolist() == ["best", "frequent", "spender", "uncertain"]
    assert seg.params["cuts"] == {"frequency_count": 3.0, "avg_order_value": 55.0}
    given = value_matrix(f, frequency_cut=5, order_value_cut=5)  # F=5 is not above 5
    assert given.table["segment_code"].tolist() == ["spender", "spender", "spender", "spender"]


# ---- weighted score ---------------------------------------------------------------------------


def test_ahp_consistent_matrix_hand_worked():
    # a consistent matrix: w_i / w_j = a_ij with w = (4, 2, 1) / 7, lambda_max = n, CR = 0
    result = ahp_weights([[1, 2, 4], [1 / 2, 1, 2], [1 / 4, 1 / 2, 1]])
    assert result.weights == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    assert result.lambda_max == pytest.approx(3) and result.cr == pytest.approx(0, abs=1e-12)


def test_ahp_textbook_example():
    # Saaty-style 3x3: lambda_max 3.0385, CI 0.0193, CR = 0.0193 / 0.58 = 0.0332
    result = ahp_weights([[1, 3, 5], [1 / 3, 1, 3], [1 / 5, 1 / 3, 1]])
    assert result.weights == pytest.approx([0.6370, 0.2583, 0.1047], abs=1e-4)
    assert result.lambda_max == pytest.approx(3.0385, abs=1e-4)
    assert result.cr == pytest.approx(0.0332, abs=1e-4)


@pytest.mark.parametrize(
    "matrix, kwargs, message",
    [
        ([[1, 9, 1 / 9], [1 / 9, 1, 9], [9, 1 / 9, 1]], {}, "consistency ratio .* is not below 0.1"),
        ([[1, 2], [2, 1]], {}, "reciprocal .*a\\[0\\]\\[1\\] = 2, a\\[1\\]\\[0\\] = 2"),
        ([[1, 2, 3], [1 / 2, 1, 1]], {}, "must be square"),
        ([[1, -2], [-0.5, 1]], {}, "positive number"),
    ],
)
def test_ahp_errors(matrix, kwargs, message):
    with pytest.raises(InputError, match=message):
        ahp_weights(matrix, **kwargs)


def test_ahp_inconsistent_allowed_on_request():
    assert ahp_weights([[1, 9, 1 / 9], [1 / 9, 1, 9], [9, 1 / 9, 1]], allow_inconsistent=True).cr > 0.1


def test_entropy_weights_hand_worked():
    # column 1 [0, .5, 1] -> p (0, 1/3, 2/3): e = 1 - (2/3) ln2 / ln3, d = 0.420620
    # column 2 [1, 1, 0]  -> p (1/2, 1/2, 0): e = ln2 / ln3,          d = 0.369070
    w = entropy_weights([[0, 1], [0.5, 1], [1, 0]])
    d1, d2 = (2 / 3) * math.log(2) / math.log(3), 1 - math.log(2) / math.log(3)
    assert w == pytest.approx([d1 / (d1 + d2), d2 / (d1 + d2)])
    assert w == pytest.approx([0.53263, 0.46737], abs=1e-5)
    assert entropy_weights([[0, 3], [1, 3]]) == pytest.approx([1, 0])  # a constant column carries nothing


@pytest.mark.parametrize(
    "method, direction, expected",
    [
        ("minmax", "higher", [0, 0.25, 1]),
        ("minmax", "lower", [1, 0.75, 0]),
        ("rank", "higher", [0, 0.5, 1]),
        ("z", "lower", [0.9806, 0.3922, -1.3728]),
    ],
)
def test_normalise(method, direction, expected):
    # z: mean 8/3, population std 1.6997
    assert normalise([1, 2, 5], method, direction) == pytest.approx(expected, abs=1e-4)
    assert np.all(normalise([3, 3], method) == normalise([7, 7], method))  # constant: one neutral value


def test_weighted_score_expert_weights_and_cutoffs():
    f = feats(r=[0, 10, 20], f=[3, 2, 1], m=[30, 20, 10])
    seg = weighted_score(
        f,
        {"recency_days": "lower", "monetary_total": "higher"},
        weights={"recency_days": 1, "monetary_total": 3},
        cutoffs=[0.9, 0.4],
    )
    assert seg.table["score"].tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert seg.table["segment_code"].tolist() == ["high_value", "medium_value", "low_value"]
    assert seg.params["weights"] == {"recency_days": 0.25, "monetary_total": 0.75}


def test_weighted_score_ahp_entropy_and_shares():
    f = feats(r=list(range(10)), f=[1] * 10, m=np.arange(10, 0, -1))
    ahp = weighted_score(
        f,
        {"recency_days": "lower", "monetary_total": "higher"},
        weights="ahp",
        ahp_matrix=[[1, 3], [1 / 3, 1]],
        shares=(0.5, 0.5),
    )
    assert ahp.params["weights"] == {"recency_days": 0.75, "monetary_total": 0.25}
    assert ahp.table["segment_code"].tolist() == ["T1"] * 5 + ["T2"] * 5
    ent = weighted_score(f, {"recency_days": "lower", "frequency_count": "higher"}, weights="entropy")
    assert ent.params["weights"] == {"recency_days": 1.0, "frequency_count": 0.0}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"weights": {"recency_days": 1}}, "one weight per indicator"),
        ({"weights": "ahp"}, "needs the pairwise comparison matrix"),
        ({"weights": "ahp", "ahp_matrix": [[1]]}, "the matrix is 1x1 but there are 2 indicators"),
        ({"weights": "magic"}, "valid options are 'equal', 'entropy', 'ahp'"),
        ({"normalise_with": "log"}, "valid options are 'minmax', 'rank', 'z'"),
        ({"cutoffs": [0.5], "codes": ["a", "b", "c"]}, "give 2 tier labels"),
    ],
)
def test_weighted_score_errors(kwargs, message):
    with pytest.raises(InputError, match=message):
        weighted_score(
            feats([1, 2], [1, 2], [1, 2]), {"recency_days": "lower", "monetary_total": "higher"}, **kwargs
        )


# ---- CLV-CS -----------------------------------------------------------------------------------


def test_clv_cs_six_classes():
    f = feats(
        r=[1] * 6,
        f=[1] * 6,
        m=[1] * 6,
        predicted_clv=[90, 80, 70, 3, 2, 1],
        satisfaction_mean=[5, 3, 1, 5, 3, 1],
    )
    seg = clv_cs(f, satisfaction_cuts=(2, 4))
    assert seg.table["segment_code"].tolist() == [
        "clv_high_sat_high",
        "clv_high_sat_mid",
        "clv_high_sat_low",
        "clv_low_sat_high",
        "clv_low_sat_mid",
        "clv_low_sat_low",
    ]
    assert clv_cs(f).table["segment_code"].tolist() == seg.table["segment_code"].tolist()  # tertile cuts


def test_clv_cs_without_satisfaction_is_a_clear_error():
    with pytest.raises(InputError, match="clv-cs needs customer satisfaction .* map a satisfaction "
                       "column .*satisfaction=<column>"):
        clv_cs(feats([1], [1], [1], predicted_clv=[1.0]))


def test_rfm8_auto_uses_the_score_where_the_median_is_degenerate():
    # six of ten bought once: F's median (1) is the smallest value, so "F high > median" would
    # mean "bought twice"; auto splits F by its score (4-5 = 3+ purchases here) instead
    f = feats(r=[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], f=[1, 1, 1, 1, 1, 1, 2, 2, 3, 5],
              m=[10, 20, 30, 40, 50, 60, 70, 80, 90, 100])
    seg = rfm8(f)
    assert seg.params["split"] == {"recency_days": "median", "frequency_count": "score",
                                   "monetary_total": "median"}
    # F scores: 1 x6 -> 1, 2 x2 -> position 7 -> 4, 3 -> 5, 5 -> 5: "high" = 2+ purchases here
    assert seg.table["f_high"].tolist() == [False] * 6 + [True] * 4
    assert rfm8(f, threshold="median").table["f_high"].tolist() == [False] * 6 + [True] * 4
    ruled = rfm8(f, rules={"frequency_count": 3, "recency_days": 2})
    assert ruled.table["f_high"].tolist() == [False] * 8 + [True] * 2
    assert ruled.table["r_high"].tolist() == [True, True] + [False] * 8
    assert ruled.params["split"]["frequency_count"] == "rule"
    with pytest.raises(InputError, match="rules apply to"):
        rfm8(f, rules={"profit": 1})


def test_label_check_fires_on_a_mislabelled_segment_and_not_on_a_correct_one():
    from clvtier.segment.base import finish
    from clvtier.segment.check import check_labels

    # customers 1-5 recent, frequent, big; 6-10 lapsed one-time buyers with little spend
    f = feats(r=[5, 6, 7, 8, 9, 300, 310, 320, 330, 340], f=[6, 5, 7, 4, 8, 1, 1, 1, 1, 1],
              m=[500, 400, 450, 600, 700, 20, 30, 10, 25, 15])
    right = np.array(["champions"] * 5 + ["hibernating"] * 5, dtype=object)
    seg = finish("hand", f, right, ["champions", "hibernating"], inputs=[], value="monetary_total",
                 lang="en", params={})
    assert check_labels(seg, f) == []
    wrong = finish("hand", f, right[::-1].copy(), ["champions", "hibernating"], inputs=[],
                   value="monetary_total", lang="en", params={})
    warnings = check_labels(wrong, f)
    # references: median recency (9 + 300) / 2 = 154.5 days, median frequency (1 + 4) / 2 = 2.5
    assert warnings == [
        "segment 'Hibernating' (hand, 5 customers) claims not recent, but its median customer last "
        "bought 7 days ago (all customers: median 154.5 days)",
        "segment 'Hibernating' (hand, 5 customers) claims not frequent, but 0% of it bought once; "
        "median 6 purchases (all customers: median 2.5)",
        "segment 'Champions' (hand, 5 customers) claims recent, but its median customer last bought "
        "320 days ago (all customers: median 154.5 days)",
        "segment 'Champions' (hand, 5 customers) claims frequent, but 100% of it bought once; "
        "median 1 purchases (all customers: median 2.5)",
    ]
    zh = finish("hand", f, right[::-1].copy(), ["champions", "hibernating"], inputs=[],
                value="monetary_total", lang="zh", params={})
    assert check_labels(zh, f)[2] == ("分层「冠军客户」（hand，5 位客户）标称近期购买，但其客户最近一次购买的"
                                      "中位数在 320 天前（全部客户中位数 154.5 天）")


def test_rfm8_rules_from_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from clvtier.cli import app

    (tmp_path / "tx.csv").write_text("customer_id,date,amount\na,2024-01-01,10\na,2024-03-01,10\n"
                                     "a,2024-03-20,10\nb,2023-06-01,100\n", encoding="utf-8")
    args = ["segment", "-i", str(tmp_path / "tx.csv"), "--as-of", "2024-03-31", "--method", "rfm8",
            "-o", str(tmp_path / "s.csv")]
    ok = CliRunner().invoke(app, [*args, "--rules", "frequency_count=3,recency_days=30"])
    assert ok.exit_code == 0, ok.output
    table = pd.read_csv(tmp_path / "s.csv")
    assert table["f_high"].tolist() == [True, False] and table["r_high"].tolist() == [True, False]
    bad = CliRunner().invoke(app, [*args, "--rules", "frequency_count=many"])
    assert bad.exit_code == 2 and "--rules: frequency_count: expected a number" in bad.output


def test_spread_ties_reach_every_rfm_method():
    from clvtier.pipelines.segment import SegmentOptions, segment_features

    f = feats(r=[5] * 10, f=[1] * 8 + [3, 4], m=[10, 80, 10, 30, 10, 50, 20, 10, 5, 5])
    for method in ("rfm", "rfm10", "rfm8"):
        shared = segment_features(f, method, SegmentOptions())
        spread = segment_features(f, method, SegmentOptions(ties="spread", threshold="score"))
        assert spread.params.get("ties", "spread") == "spread"
        if method != "rfm8":
            assert shared.params["ties"] == "share"
            assert spread.table["f_score"].nunique() == 5 and shared.table["f_score"].nunique() == 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_population_scores_of_any_chunk_equal_the_sql_window_and_pandas_scores(seed):
    """The batch scorer ranks chunks against the population's sorted values: equal to
    rfm_scores and to rfm_score_sql's window functions, on heavy ties."""
    import duckdb

    from clvtier.segment.rfm import RFMPopulation, rfm_score_sql

    rng = np.random.default_rng(seed)
    n = 5_000
    features = pd.DataFrame({"customer_id": np.arange(n).astype(str),
                             "recency_days": rng.integers(0, 30, n).astype(np.int32),
                             "frequency_count": rng.geometric(0.5, n).astype(np.int64),
                             "monetary_total": np.round(rng.choice([0.0, 9.99, 25.0], n)
                                                        + rng.integers(0, 3, n), 2)})
    expected = rfm_scores(features)
    con = duckdb.connect()
    con.register("f", features)
    sql = con.sql(f"SELECT customer_id, {rfm_score_sql()} FROM f").df().set_index("customer_id")
    sql = sql.loc[features["customer_id"]]
    population = RFMPopulation(*(features[c].to_numpy()
                                 for c in ("recency_days", "frequency_count", "monetary_total")))
    for chunk in np.array_split(rng.permutation(n), 7):
        got = population.scores(features.iloc[chunk])
        for name in ("r_score", "f_score", "m_score"):
            assert np.array_equal(got[name], expected[name].to_numpy()[chunk])
            assert np.array_equal(got[name], sql[name].to_numpy()[chunk])
