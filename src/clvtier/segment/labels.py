"""One table of segment names and strategies, in English and Chinese (DESIGN.md section 4).

Every built-in method labels customers with a language-independent ``segment_code``; the label
and the recommended strategy shown to people come from :data:`LABELS` in the language asked for.
"""

from __future__ import annotations

from clvtier.errors import InputError

LANGS = ("en", "zh")

#: code -> (English name, Chinese name, English strategy, Chinese strategy)
LABELS: dict[str, tuple[str, str, str, str]] = {
    # RFM 2x2x2: R high = recent, F high = frequent, M high = high spend.
    "important_value": (
        "Important value",
        "重要价值客户",
        "VIP treatment and dedicated service",
        "VIP待遇，专属服务",
    ),
    "important_develop": (
        "Important develop",
        "重要发展客户",
        "Promotions to raise purchase frequency",
        "促销活动，提高购买频率",
    ),
    "important_retain": (
        "Important retain",
        "重要保持客户",
        "Contact proactively and invite to events to prevent churn",
        "主动联系，邀请参加活动，防止流失",
    ),
    "important_winback": (
        "Important win-back",
        "重要挽留客户",
        "Actively retain and ask for feedback",
        "积极挽留，征求反馈意见",
    ),
    "general_value": (
        "General value",
        "一般价值客户",
        "Standard service and good-value products",
        "标准服务，推荐高性价比产品",
    ),
    "general_develop": (
        "General develop",
        "一般发展客户",
        "Raise activity and cross-sell",
        "提高活跃度，交叉销售",
    ),
    "general_retain": ("General retain", "一般保持客户", "Send recent offers", "推送近期优惠"),
    "general_winback": ("General win-back", "一般挽留客户", "Let go; no active spend", "放弃，不再主动投入"),
    # RF map on quintile scores.
    "champions": (
        "Champions",
        "冠军客户",
        "Reward them; early access, ask for reviews and referrals",
        "给予奖励，新品优先体验，邀请评价和推荐",
    ),
    "loyal": (
        "Loyal",
        "忠诚客户",
        "Up-sell higher-value products and loyalty programmes",
        "向上销售高价值产品，会员忠诚计划",
    ),
    "potential_loyalist": (
        "Potential loyalist",
        "潜在忠诚客户",
        "Membership offers and personal recommendations",
        "会员邀请，个性化推荐",
    ),
    "new": ("New", "新客户", "Onboarding support and a reason to buy again", "新客引导，促成第二次购买"),
    "promising": ("Promising", "有潜力客户", "Build brand awareness; free trials", "建立品牌认知，免费试用"),
    "need_attention": (
        "Need attention",
        "需要关注客户",
        "Limited-time offers based on past purchases",
        "基于购买历史的限时优惠",
    ),
    "about_to_sleep": (
        "About to sleep",
        "即将沉睡客户",
        "Share popular products and discounts; reconnect",
        "推荐热门产品和折扣，重新建立联系",
    ),
    "at_risk": (
        "At risk",
        "有流失风险客户",
        "Personal emails and renewals; win them back",
        "个性化沟通，续约挽回",
    ),
    "cant_lose": (
        "Can't lose them",
        "不能失去的客户",
        "Win back with new products; talk to them",
        "以新品赢回，直接沟通",
    ),
    "hibernating": (
        "Hibernating",
        "沉睡客户",
        "Low-cost reactivation offers, else let go",
        "低成本唤醒，否则放弃",
    ),
    # ABC / Pareto by count or value shares.
    "A": ("A", "A类客户", "Key-account management; protect and grow", "重点客户管理，保持并发展"),
    "B": ("B", "B类客户", "Develop towards A with targeted offers", "定向营销，向A类发展"),
    "C": ("C", "C类客户", "Low-cost standard service", "低成本标准化服务"),
    # ABC four levels (top 5%, 6-20%, 21-50%, bottom 50%).
    "top": ("Top", "高端客户", "Dedicated account team and tailored offers", "专属客户团队，定制方案"),
    "key": (
        "Key",
        "重要客户",
        "Regular personal contact; grow share of wallet",
        "定期专人联系，提高钱包份额",
    ),
    "regular": ("Regular", "普通客户", "Standard service and cross-selling", "标准服务，交叉销售"),
    "small": ("Small", "小客户", "Self-service and automated marketing only", "自助服务，仅自动化营销"),
    # Customer pyramid (Zeithaml, Rust & Lemon 2002) by profitability.
    "platinum": (
        "Platinum",
        "铂金客户",
        "Most profitable: invest in service and loyalty",
        "最有利可图：加大服务与忠诚投入",
    ),
    "gold": ("Gold", "黄金客户", "Profitable: grow them towards platinum", "有利可图：培养为铂金客户"),
    "iron": ("Iron", "钢铁客户", "Volume that fills capacity: serve efficiently", "贡献规模：高效服务"),
    "lead": (
        "Lead",
        "铅质客户",
        "Cost more than they bring: cut cost to serve or reprice",
        "成本高于贡献：降低服务成本或调整价格",
    ),
    # Value matrix: purchase frequency x average order value (Marcus 1998).
    "best": ("Best", "最佳客户", "Keep them: recognition and premium service", "保持：认可与优质服务"),
    "frequent": ("Frequent", "常客", "Up-sell to raise the order value", "向上销售，提高客单价"),
    "spender": ("Spender", "高消费客户", "Give reasons to come back more often", "提高回购频率"),
    "uncertain": (
        "Uncertain",
        "不确定客户",
        "Low-cost contact; learn what they want",
        "低成本接触，了解需求",
    ),
    # Weighted score tiers.
    "high_value": ("High value", "高价值客户", "Priority service and retention", "优先服务，重点保留"),
    "medium_value": ("Medium value", "中价值客户", "Develop with targeted offers", "定向营销，逐步发展"),
    "low_value": ("Low value", "低价值客户", "Low-cost standard service", "低成本标准化服务"),
    # CLV x customer satisfaction.
    "clv_high_sat_high": (
        "High CLV, satisfied",
        "高价值高满意",
        "Reward and ask for referrals",
        "奖励并邀请推荐",
    ),
    "clv_high_sat_mid": (
        "High CLV, lukewarm",
        "高价值中满意",
        "Improve service before they drift",
        "主动改进服务，防止流失",
    ),
    "clv_high_sat_low": ("High CLV, dissatisfied", "高价值低满意", "Urgent service recovery", "紧急服务补救"),
    "clv_low_sat_high": (
        "Low CLV, satisfied",
        "低价值高满意",
        "Cross-sell and up-sell",
        "交叉销售和向上销售",
    ),
    "clv_low_sat_mid": ("Low CLV, lukewarm", "低价值中满意", "Low-cost standard service", "低成本标准化服务"),
    "clv_low_sat_low": (
        "Low CLV, dissatisfied",
        "低价值低满意",
        "Minimal service; let go",
        "最低限度服务，可放弃",
    ),
}


def check_lang(lang: str) -> str:
    if lang not in LANGS:
        raise InputError("lang", f"valid options are {', '.join(map(repr, LANGS))}; got {lang!r}")
    return lang


def label(code: str, lang: str = "en") -> str:
    """Display name of a built-in segment code."""
    return LABELS[code][LANGS.index(check_lang(lang))] if code in LABELS else code


def strategy(code: str, lang: str = "en") -> str:
    """Recommended strategy of a built-in segment code ('' when it has none)."""
    return LABELS[code][2 + LANGS.index(check_lang(lang))] if code in LABELS else ""
