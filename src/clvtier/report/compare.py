"""The comparison report: one self-contained HTML file (Jinja2 template, plots embedded as PNG),
and the summary and per-segment CSVs beside it.

Plot text is English in both languages (no CJK font is assumed on the machine that renders
it); the page around the plots follows ``lang``. Segments are shown by their codes in plots.
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from clvtier.data.io import atomic_output, write_frame

_COLOURS = {"rule": "#4C72B0", "learned": "#55A868", "model": "#C44E52"}
TEXT = {
    "en": {
        "title": "Which segmentation finds the most future value?",
        "yes": "yes",
        "no": "no",
        "units": {"weeks": "weeks", "days": "days"},
        "answer": "Answer",
        "summary": "Summary",
        "segments": "Segments",
        "plots": "Plots",
        "labels": "Label check",
        "no_label_warnings": "Every segment's customers match its label.",
        "setup": (
            "{n:,} customers as of {cutoff}; outcomes over the next {horizon} {unit}. "
            "Equal size = the top {share:.0%} of customers by each segmentation's own order. "
            "Intervals: 95%, paired bootstrap over customers ({draws:,} draws)."
        ),
        "origins": "Averaged over {k} cutoffs ({cutoffs}); ranges are min to max over them.",
        "best": (
            "At equal size, <b>{name}</b> captures the most holdout revenue: {value:.1%} "
            "of it with the top {share:.0%} of customers"
        ),
        "vs_ref": ", {diff:+.1f} points against {ref} (95% interval {low:+.1f} to {high:+.1f})",
        "no_diff": "; no measurable difference from {ref}",
        "runner": ("Its lead over the runner-up, {name} ({value:.1%}), is {diff:+.1f} points."),
        "not_measurable": "No measurable difference from {ref}: {names}.",
        "stable": (
            "Most stable: <b>{name}</b> keeps {share:.0%} of customers in their segment from one "
            "cutoff to the next (adjusted Rand index {ari:.2f})."
        ),
        "flips": "Careful: the best segmentation differs between cutoffs ({names}).",
        "columns": {
            "segmentation": "segmentation",
            "kind": "kind",
            "n_segments": "segments",
            "top_share": "top segment share",
            "top_capture": "top segment capture",
            "top_capture_equal_size": "capture at equal size",
            "diff_vs_reference": "vs reference",
            "diff_ci_low": "95% low",
            "diff_ci_high": "95% high",
            "precision_top20": "precision (future top 20%)",
            "recall_top20": "recall (future top 20%)",
            "gini": "Gini",
            "monotone": "monotone",
            "kendall_tau": "Kendall tau",
            "stability_share": "kept segment",
            "stability_ari": "stability ARI",
        },
        "captions": {
            "gain": "Cumulative share of holdout revenue by share of customers, in each segmentation's order",
            "rank": "Holdout revenue per customer by segment rank (1 = the segment labelled most valuable)",
            "boot": "Difference from the reference with 95% bootstrap intervals",
            "ari": "Agreement between segmentations (adjusted Rand index)",
            "nmi": "Agreement between segmentations (normalised mutual information)",
            "overlap": (
                "Overlap of the equal-size top groups: share of the row's top customers also in the column's"
            ),
            "migration": "Migration between the two cutoffs (share of each earlier segment)",
            "profile": "Segment profiles: share of customers against share of holdout revenue",
        },
    },
    "zh": {
        "title": "哪种客户分层最能找到未来价值？",
        "yes": "是",
        "no": "否",
        "units": {"weeks": "周", "days": "天"},
        "answer": "结论",
        "summary": "汇总",
        "segments": "分层明细",
        "plots": "图表",
        "labels": "标签检查",
        "no_label_warnings": "各分层客户特征与其标签一致。",
        "setup": (
            "截至 {cutoff} 的 {n:,} 位客户；结果期为其后 {horizon} {unit}。"
            "等规模 = 按各分层自身排序的前 {share:.0%} 客户。区间：95%，按客户配对自助法（{draws:,} 次）。"
        ),
        "origins": "为 {k} 个截止日（{cutoffs}）的平均；范围为各截止日的最小至最大值。",
        "best": "等规模下，<b>{name}</b> 找到的未来收入最多：前 {share:.0%} 客户贡献结果期收入的 {value:.1%}",
        "vs_ref": "，比 {ref} 高 {diff:+.1f} 个百分点（95% 区间 {low:+.1f} 至 {high:+.1f}）",
        "no_diff": "；与 {ref} 无可测差异",
        "runner": "领先第二名 {name}（{value:.1%}）{diff:+.1f} 个百分点。",
        "not_measurable": "与 {ref} 无可测差异：{names}。",
        "stable": (
            "最稳定：<b>{name}</b>，相邻截止日之间 {share:.0%} 的客户留在原分层（调整兰德指数 {ari:.2f}）。"
        ),
        "flips": "注意：不同截止日的最佳分层不同（{names}）。",
        "columns": {
            "segmentation": "分层方法",
            "kind": "类型",
            "n_segments": "层数",
            "top_share": "最高层客户占比",
            "top_capture": "最高层收入占比",
            "top_capture_equal_size": "等规模收入占比",
            "diff_vs_reference": "相对基准",
            "diff_ci_low": "95%下限",
            "diff_ci_high": "95%上限",
            "precision_top20": "精确率（未来前20%）",
            "recall_top20": "召回率（未来前20%）",
            "gini": "基尼",
            "monotone": "单调",
            "kendall_tau": "肯德尔tau",
            "stability_share": "留层比例",
            "stability_ari": "稳定性ARI",
        },
        "captions": {
            "gain": "按各分层排序的累计结果期收入占比（横轴：客户占比）",
            "rank": "各分层等级的人均结果期收入（1 = 标签上最有价值的层）",
            "boot": "与基准的差异及 95% 自助法区间",
            "ari": "分层方法之间的一致性（调整兰德指数）",
            "nmi": "分层方法之间的一致性（标准化互信息）",
            "overlap": "等规模最高层的重合：行方法的最高层客户中也在列方法最高层的比例",
            "migration": "两个截止日之间的迁移（占早期各层的比例）",
            "profile": "分层画像：客户占比与结果期收入占比",
        },
    },
}


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _grid(n: int, width: float = 3.2, height: float = 2.6, columns: int = 4) -> tuple[Figure, list]:
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    return fig, [fig.add_subplot(rows, cols, i + 1) for i in range(n)]


def gain_plot(result) -> Figure:
    o = result.latest
    revenue = o.revenue
    share = np.arange(1, revenue.size + 1) / revenue.size
    total = revenue.sum() or 1.0
    kinds = dict(zip(result.summary["segmentation"], result.summary["kind"], strict=True))
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(share, np.cumsum(np.sort(revenue)[::-1]) / total, color="black", linewidth=2, label="oracle")
    styles = ["-", "--", ":", "-."]
    for i, (name, position) in enumerate(o.positions.items()):
        ax.plot(
            share,
            np.cumsum(revenue[np.argsort(position)]) / total,
            color=_COLOURS[kinds[name]],
            linestyle=styles[i % 4],
            linewidth=1.2,
            label=f"{name} ({kinds[name]})",
        )
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="random")
    ax.axvline(result.config.compare.share, color="grey", linewidth=0.8)
    ax.set(
        xlabel="share of customers (segmentation's order, best first)",
        ylabel="share of holdout revenue",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title=f"Cumulative gain at cutoff {o.cutoff}",
    )
    ax.legend(fontsize="x-small", ncol=2)
    return fig


def _panels(result):
    """A figure with one panel per segmentation, and (axes, name, its segments at the latest
    cutoff, its kind) for each."""
    seg = result.latest.segments
    kinds = result.summary.set_index("segmentation")["kind"]
    names = list(result.latest.positions)
    fig, axes = _grid(len(names))
    return fig, [
        (ax, name, seg[seg["segmentation"] == name], kinds[name])
        for ax, name in zip(axes, names, strict=True)
    ]


def rank_plot(result) -> Figure:
    fig, panels = _panels(result)
    for ax, name, part, kind in panels:
        ax.bar(part["segment_rank"].astype(str), part["revenue_per_customer"], color=_COLOURS[kind])
        ax.set(title=name, xlabel="segment rank (1 = best)", ylabel="revenue per customer")
    return fig


def bootstrap_plot(result) -> Figure:
    fig, axes = _grid(2, width=5.5, height=0.35 * len(result.summary) + 1.5, columns=2)
    ref = result.config.compare.reference
    for ax, metric, unit in zip(
        axes, ("capture", "gini"), ("points of holdout revenue", "Gini points"), strict=True
    ):
        part = result.bootstrap[result.bootstrap["metric"] == metric].iloc[::-1]
        y = np.arange(len(part))
        diff, low, high = (part[c].to_numpy() * 100 for c in ("diff", "ci_low", "ci_high"))
        ax.errorbar(diff, y, xerr=[diff - low, high - diff], fmt="o", color="#333333", capsize=3)
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set_yticks(y, part["segmentation"])
        ax.set(
            xlabel=f"difference from {ref}, {unit}",
            title="equal-size capture" if metric == "capture" else "normalised Gini",
        )
    return fig


def heatmap(matrix: pd.DataFrame, title: str, ax=None, *, vmin=0.0, vmax=1.0, annotate=True) -> Figure | None:
    fig = None
    if ax is None:
        fig = Figure(
            figsize=(1.0 + 0.55 * len(matrix.columns), 0.8 + 0.45 * len(matrix)), layout="constrained"
        )
        ax = fig.add_subplot()
    values = matrix.to_numpy(dtype=float)
    image = ax.imshow(values, cmap="Blues", vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(
        range(len(matrix.columns)),
        [str(c) for c in matrix.columns],
        rotation=60,
        ha="right",
        fontsize="x-small",
    )
    ax.set_yticks(range(len(matrix.index)), [str(c) for c in matrix.index], fontsize="x-small")
    if annotate and values.size <= 400:
        for (i, j), v in np.ndenumerate(values):
            ax.text(
                j,
                i,
                f"{v:.2f}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if v > 0.6 * vmax else "black",
            )
    ax.set_title(title, fontsize="small")
    if fig is not None:
        fig.colorbar(image, ax=ax)
    return fig


def migration_plot(result) -> Figure:
    migrations = result.latest.migrations
    fig, axes = _grid(len(migrations), width=3.6, height=3.2)
    for ax, (name, table) in zip(axes, migrations.items(), strict=False):
        shares = table.div(table.sum(axis=1).replace(0, np.nan), axis=0).fillna(0.0)
        heatmap(shares, name, ax, annotate=len(shares) <= 10)
        ax.set(xlabel="segment at the later cutoff", ylabel="earlier segment")
    return fig


def profile_plot(result) -> Figure:
    fig, panels = _panels(result)
    for ax, name, part, _ in panels:
        x = np.arange(len(part))
        ax.bar(x - 0.2, part["share_customers"], width=0.4, label="customers", color="#BBBBBB")
        ax.bar(x + 0.2, part["share_holdout_revenue"], width=0.4, label="holdout revenue", color="#4C72B0")
        ax.set_xticks(x, part["segment_code"].astype(str), rotation=60, ha="right", fontsize="x-small")
        ax.set(title=name, ylabel="share")
        ax.legend(fontsize="xx-small")
    return fig


def verdict(result, lang: str = "en") -> list[str]:
    """The first screen: which segmentation captures the most at equal size (with its interval
    against the reference and its lead over the runner-up), which differ measurably, which is
    most stable, and whether the winner changes between cutoffs."""
    t, c = TEXT[lang], result.config.compare
    s = result.summary.sort_values("top_capture_equal_size", ascending=False, kind="stable")
    best, runner = s.iloc[0], s.iloc[1] if len(s) > 1 else None
    line = t["best"].format(name=best["segmentation"], value=best["top_capture_equal_size"], share=c.share)
    if best["segmentation"] != c.reference:
        if best["diff_ci_low"] > 0 or best["diff_ci_high"] < 0 or np.isnan(best["diff_ci_low"]):
            line += t["vs_ref"].format(
                diff=100 * best["diff_vs_reference"],
                ref=c.reference,
                low=100 * best["diff_ci_low"],
                high=100 * best["diff_ci_high"],
            )
        else:
            line += t["vs_ref"].format(
                diff=100 * best["diff_vs_reference"],
                ref=c.reference,
                low=100 * best["diff_ci_low"],
                high=100 * best["diff_ci_high"],
            )
            line += t["no_diff"].format(ref=c.reference)
    lines = [line + ("." if lang == "en" else "。")]
    if runner is not None:
        lines.append(
            t["runner"].format(
                name=runner["segmentation"],
                value=runner["top_capture_equal_size"],
                diff=100 * (best["top_capture_equal_size"] - runner["top_capture_equal_size"]),
            )
        )
    same = s[(s["segmentation"] != c.reference) & ~((s["diff_ci_low"] > 0) | (s["diff_ci_high"] < 0))]
    if c.draws and len(same):
        lines.append(t["not_measurable"].format(ref=c.reference, names=", ".join(same["segmentation"])))
    stable = result.summary.sort_values(
        ["stability_share", "stability_ari"], ascending=False, kind="stable"
    ).iloc[0]
    lines.append(
        t["stable"].format(
            name=stable["segmentation"], share=stable["stability_share"], ari=stable["stability_ari"]
        )
    )
    winners = {
        o.cutoff: o.summary.sort_values("top_capture_equal_size", ascending=False, kind="stable").iloc[0][
            "segmentation"
        ]
        for o in result.origins
    }
    if len(set(winners.values())) > 1:
        lines.append(t["flips"].format(names=", ".join(f"{k}: {v}" for k, v in winners.items())))
    return lines


_PERCENT = ("share", "capture", "precision", "recall", "churn_rate")
_POINTS = ("diff_vs_reference", "diff_ci_low", "diff_ci_high")


def _shown(frame: pd.DataFrame, lang: str = "en") -> pd.DataFrame:
    """Shares as percentages, differences in points, counts as integers, the rest to 3 places."""
    out = frame.copy()
    for c in out.columns:
        if c in _POINTS:
            out[c] = [f"{100 * v:+.1f}" if pd.notna(v) else "-" for v in out[c]]
        elif out[c].dtype == bool:
            out[c] = out[c].map({True: TEXT[lang]["yes"], False: TEXT[lang]["no"]})
        elif pd.api.types.is_float_dtype(out[c]) and any(k in c for k in _PERCENT):
            out[c] = [f"{v:.1%}" if pd.notna(v) else "-" for v in out[c]]
        elif c in ("n_segments", "customers") or (
            pd.api.types.is_float_dtype(out[c]) and out[c].dropna().mod(1).eq(0).all() and c.startswith("n_")
        ):
            out[c] = out[c].map(lambda v: f"{v:,.0f}")
        elif pd.api.types.is_float_dtype(out[c]):
            out[c] = [f"{v:,.3f}" if pd.notna(v) else "-" for v in out[c]]
    return out


def _table_html(frame: pd.DataFrame, names: dict[str, str] | None = None, lang: str = "en") -> str:
    shown = _shown(frame, lang).rename(columns=names or {})
    return shown.to_html(index=False, border=0, classes="data", na_rep="-")


def render(result, lang: str = "en") -> str:
    t = TEXT[lang]
    c, split = result.config.compare, result.config.split
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("clvtier.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )
    figures = {
        "gain": gain_plot(result),
        "rank": rank_plot(result),
        "boot": bootstrap_plot(result),
        "ari": heatmap(result.agreement, "adjusted Rand index", vmin=0, vmax=1),
        "nmi": heatmap(result.nmi, "normalised mutual information", vmin=0, vmax=1),
        "overlap": heatmap(result.overlap, "share of the row's top group in the column's", vmin=0, vmax=1),
        "migration": migration_plot(result),
        "profile": profile_plot(result),
    }
    plots = [{"id": key, "caption": t["captions"][key], "png": _png(fig)} for key, fig in figures.items()]
    ranged = result.ranges[
        ["segmentation", "top_capture_equal_size_min", "top_capture_equal_size_max", "gini_min", "gini_max"]
    ]
    segments = result.latest.segments.drop(columns=["segment_code"])
    return env.get_template("compare.html.j2").render(
        lang=lang,
        t=t,
        verdict=verdict(result, lang),
        setup=t["setup"].format(
            n=result.latest.customers,
            cutoff=result.latest.cutoff,
            horizon=f"{split.horizon:g}",
            unit=t["units"].get(split.time_unit, split.time_unit),
            share=c.share,
            draws=c.draws,
        ),
        origins=(
            t["origins"].format(k=len(result.origins), cutoffs=", ".join(o.cutoff for o in result.origins))
            if len(result.origins) > 1
            else ""
        ),
        summary=jinja2.utils.markupsafe.Markup(
            _table_html(
                result.summary.sort_values("top_capture_equal_size", ascending=False, kind="stable"),
                t["columns"],
                lang,
            )
        ),
        ranges=jinja2.utils.markupsafe.Markup(_table_html(ranged)) if len(result.origins) > 1 else "",
        segments={
            name: jinja2.utils.markupsafe.Markup(_table_html(part.drop(columns="segmentation"), lang=lang))
            for name, part in segments.groupby("segmentation", sort=False)
        },
        label_warnings=result.label_warnings,
        plots=plots,
        experiment=result.config.experiment,
    )


def check_report_path(path) -> Path:
    """The report's path, or an InputError when it is not an .html file."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        from clvtier.errors import InputError

        raise InputError("output", f"the report is HTML: give a .html path; got {path.name!r}")
    return path


def write_report(result, path: Path, *, lang: str = "en") -> Path:
    """Write the HTML report and ``<stem>_summary.csv`` / ``<stem>_segments.csv`` beside it, each
    atomically. The CSVs hold aggregates only (no customer ids)."""
    path = check_report_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    html = render(result, lang)
    with atomic_output(path) as tmp:
        Path(tmp).write_text(html, encoding="utf-8")
    write_frame(result.summary, path.with_name(f"{path.stem}_summary.csv"))
    segments = pd.concat([o.segments.assign(cutoff=o.cutoff) for o in result.origins], ignore_index=True)
    write_frame(segments, path.with_name(f"{path.stem}_segments.csv"))
    return path
