"""Comparing segmentations: every measure worked by hand, the bootstrap against an explicit
resample, and the pipeline, CLI, CSVs and MLflow run on the CDNOW sample."""

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from clvtier.cli import app
from clvtier.config import parse_config
from clvtier.evaluate.compare import (
    _capture_gini,
    agreement,
    bootstrap_differences,
    future_top,
    implied_order,
    monotonicity,
    order_gini,
    precision_recall,
    segment_table,
    stability,
    top_capture,
    top_overlap,
)
from clvtier.evaluate.metrics import normalized_gini
from clvtier.pipelines.compare import SUMMARY_COLUMNS, compare

# six customers; segmentation A: ranks 1,1,2,2,3,3 with within-segment scores 5,9,1,2,0,0
IDS = np.array([1, 2, 3, 4, 5, 6])
REVENUE = np.array([100.0, 0.0, 50.0, 0.0, 30.0, 20.0])
RANK = np.array([1, 1, 2, 2, 3, 3])
WITHIN = np.array([5.0, 9.0, 1.0, 2.0, 0.0, 0.0])


def test_implied_order_by_rank_then_within_then_id():
    # rank 1: id 2 (9) before id 1 (5); rank 2: id 4 (2), id 3 (1); rank 3 tied: id 5, id 6
    assert implied_order(RANK, WITHIN, IDS).tolist() == [1, 0, 3, 2, 4, 5]
    shuffled = np.array([5, 0, 3, 1, 4, 2])
    # ids 6, 1, 4, 2, 5, 3 keep their places whatever the row order
    assert implied_order(RANK[shuffled], WITHIN[shuffled], IDS[shuffled]).tolist() == [5, 1, 2, 0, 4, 3]


def test_capture_future_top_precision_recall():
    position = implied_order(RANK, WITHIN, IDS)
    assert top_capture(position, REVENUE, 1 / 3) == 0.5  # ids 2 and 1: 100 of 200
    assert top_capture(position, REVENUE, 0.5) == 0.5  # ids 2, 1, 4
    assert future_top(REVENUE, 0.2).tolist() == [True, False, False, False, False, False]  # round(1.2) = 1
    assert future_top(REVENUE, 0.5).tolist() == [True, False, True, False, True, False]  # >= 30
    assert future_top(np.array([5.0, 0, 0, 0, 0]), 0.6).tolist() == [True, False, False, False, False]
    assert precision_recall(position < 3, future_top(REVENUE, 0.5)) == (1 / 3, 1 / 3)


def test_segment_table_by_hand():
    rfm = pd.DataFrame(
        {
            "recency_days": [1, 3, 5, 7, 9, 11],
            "frequency_count": [1, 2, 3, 4, 5, 6],
            "monetary_total": [10.0, 20, 30, 40, 50, 60],
        }
    )
    past = rfm["monetary_total"]
    table = segment_table(
        RANK, ["a", "a", "b", "b", "c", "c"], ["A", "A", "B", "B", "C", "C"], past, REVENUE, REVENUE > 0, rfm
    )
    assert table["customers"].tolist() == [2, 2, 2]
    assert table["share_customers"].tolist() == pytest.approx([1 / 3] * 3)
    assert table["share_past_value"].tolist() == pytest.approx([30 / 210, 70 / 210, 110 / 210])
    assert table["share_holdout_revenue"].tolist() == pytest.approx([0.5, 0.25, 0.25])
    assert table["revenue_per_customer"].tolist() == [50.0, 25.0, 25.0]
    assert table["share_active"].tolist() == [0.5, 0.5, 1.0]
    assert table["churn_rate"].tolist() == [0.5, 0.5, 0.0]
    assert table["median_recency_days"].tolist() == [2.0, 6.0, 10.0]
    assert table["median_frequency_count"].tolist() == [1.5, 3.5, 5.5]


def test_monotonicity_and_kendall_tau():
    # per rank: 50, 25, 25 -> never rises; tau-b with one tie in y: 2 / sqrt(3 * 2)
    assert monotonicity(RANK, REVENUE) == (True, pytest.approx(2 / np.sqrt(6)))
    monotone, tau = monotonicity([1, 1, 2, 2], [0.0, 0.0, 10.0, 20.0])
    assert not monotone and tau == pytest.approx(-1.0)
    assert np.isnan(monotonicity([1, 1], [1.0, 2.0])[1])


def test_order_gini_by_hand():
    # along the order: 0, 100, 0, 50, 30, 20 -> cumulative shares sum 3.65 -> 3.65/6 - 7/12 = 0.025;
    # the oracle: 100, 50, 30, 20, 0, 0 -> 5.15/6 - 7/12 = 0.275
    assert order_gini(implied_order(RANK, WITHIN, IDS), REVENUE) == pytest.approx(0.025 / 0.275)


def test_stability_agreement_and_overlap():
    s = stability(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert s["share_kept"] == 0.75
    # contingency [[1, 1], [0, 2]]: sum C(n_ij, 2) = 1, rows 2, columns 3, C(4, 2) = 6 -> (1 - 1) / (2.5 - 1)
    assert s["ari"] == pytest.approx(0.0)
    assert s["migration"].loc["a", "b"] == 1 and s["migration"].loc["b", "b"] == 2
    ari, nmi = agreement(
        {"x": np.array([1, 1, 2, 2]), "y": np.array([5, 5, 7, 7]), "z": np.array([1, 2, 1, 2])}
    )
    assert ari.loc["x", "y"] == 1 and nmi.loc["x", "y"] == pytest.approx(1)
    assert ari.loc["x", "z"] == pytest.approx(-0.5) and nmi.loc["x", "z"] == pytest.approx(0)
    overlap = top_overlap({"a": np.array([1, 1, 0, 0], bool), "b": np.array([1, 0, 1, 0], bool)})
    assert overlap.loc["a", "b"] == 0.5 and overlap.loc["a", "a"] == 1


def test_weighted_measures_equal_an_explicit_resample():
    rng = np.random.default_rng(4)
    n = 40
    revenue = np.where(rng.random(n) < 0.4, 0.0, rng.gamma(1.0, 30.0, n))
    position = implied_order(rng.integers(1, 4, n), rng.random(n), np.arange(n))
    order = np.argsort(position)
    weights = rng.integers(0, 4, n)
    expanded = np.repeat(np.arange(n), weights)
    k = 9
    # the explicit resample: every customer as often as drawn, in the implied order
    ranked = revenue[order][np.repeat(np.arange(n), weights[order])]
    capture, gini = _capture_gini(order, weights[None, :], revenue, k)
    assert capture[0] == pytest.approx(ranked[:k].sum() / ranked.sum())
    oracle = np.argsort(-revenue, kind="stable")
    best = _capture_gini(oracle, weights[None, :], revenue, k)[1]
    assert gini[0] / best[0] == pytest.approx(
        normalized_gini(revenue[expanded], -position[expanded].astype(float))
    )
    ones = np.ones((1, n), dtype=int)
    assert _capture_gini(order, ones, revenue, k)[0][0] == pytest.approx(
        top_capture(position, revenue, k / n)
    )


def test_bootstrap_is_paired_seeded_and_finds_a_real_difference():
    rng = np.random.default_rng(1)
    n = 400
    revenue = np.where(rng.random(n) < 0.5, 0.0, rng.gamma(1.0, 50.0, n))
    good = implied_order(np.ones(n), revenue + rng.normal(0, 10, n), np.arange(n))
    noise = implied_order(np.ones(n), rng.random(n), np.arange(n))
    positions = {"good": good, "noise": noise, "same": noise.copy()}
    table = bootstrap_differences(positions, revenue, "noise", draws=300, seed=3)
    again = bootstrap_differences(positions, revenue, "noise", draws=300, seed=3)
    pd.testing.assert_frame_equal(table, again)
    row = table.set_index(["segmentation", "metric"])
    assert row.loc[("good", "capture"), "measurable"] and row.loc[("good", "capture"), "ci_low"] > 0.2
    assert row.loc[("good", "capture"), "value"] == pytest.approx(top_capture(good, revenue, 0.2))
    assert row.loc[("good", "gini"), "value"] == pytest.approx(order_gini(good, revenue))
    # an identical ordering differs by exactly 0 in every draw: paired
    assert row.loc[("same", "capture"), ["diff", "ci_low", "ci_high"]].tolist() == [0.0, 0.0, 0.0]
    assert not row.loc[("same", "gini"), "measurable"]


SAMPLE = {
    "experiment": "compare-sample",
    "seed": 0,
    "data": {"dataset": "cdnow_sample"},
    "split": {"train_cutoff": "1997-07-01", "test_cutoff": "1997-12-30", "horizon": 26},
    "models": {
        "bgnbd_gg": {},
        "xgboost": {"n_estimators": 40, "learning_rate": 0.1},
        "hybrid": {"n_estimators": 40, "learning_rate": 0.1},
    },
    "compare": {"draws": 100},
}


@pytest.fixture(scope="module")
def compared(tmp_path_factory, new_store):
    folder = tmp_path_factory.mktemp("compare")
    uri = new_store(folder)
    result = compare(parse_config(SAMPLE), output=folder / "report.html", tracking_uri=uri)
    return result, folder, uri


def test_compare_on_the_sample(compared):
    result, folder, uri = compared
    summary = pd.read_csv(folder / "report_summary.csv")
    assert summary.columns.tolist() == SUMMARY_COLUMNS
    assert set(summary["kind"]) == {"rule", "learned", "model"}
    assert {
        "rfm8",
        "rfm10",
        "rfm",
        "abc4",
        "pyramid",
        "value-matrix",
        "weighted",
        "kmeans",
        "gmm",
        "policy:corporate4",
        "policy:abc4_clv",
        "clv_deciles",
    } == set(summary["segmentation"])
    ref = summary.set_index("segmentation").loc["abc4"]
    assert ref["diff_vs_reference"] == 0 and ref["diff_ci_low"] == 0
    assert summary["top_capture_equal_size"].between(0, 1).all() and summary["gini"].between(-1, 1).all()
    # every segmentation covers the same customers, and the per-segment table adds up
    segments = pd.read_csv(folder / "report_segments.csv")
    per = segments.groupby("segmentation")[["customers", "share_holdout_revenue"]].sum()
    assert (per["customers"] == result.latest.customers).all()
    assert np.allclose(per["share_holdout_revenue"], 1.0)
    assert "customer_id" not in segments.columns
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert "captures the most holdout revenue" in html and html.count("data:image/png;base64,") == 8
    assert (folder / "report.html").stat().st_size < 5_000_000 and "http" not in html.split("<body>")[1]
    client = mlflow.MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("compare-sample").experiment_id])[0]
    assert run.data.tags["clvtier.command"] == "compare"
    assert "compare.abc4.top_capture_equal_size" in run.data.metrics
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"report.html", "compare_summary.csv"}


def test_the_model_is_the_evaluation_fit_and_a_leaking_one_is_refused():
    from clvtier.errors import InputError
    from clvtier.pipelines.compare import tiering_for
    from clvtier.pipelines.train import Window

    config = parse_config(SAMPLE)
    window = Window("1997-09-30", "1997-12-30", False, None, None)  # 13 weeks later, horizon 26
    with pytest.raises(InputError, match="after the comparison cutoff"):
        tiering_for(config, {}, window)


def test_compare_command_zh_with_origins(tmp_path, new_store, monkeypatch):
    uri = new_store(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp.yaml").write_text(
        "experiment: cli-compare\ndata: {dataset: cdnow_sample}\n"
        "split: {train_cutoff: 1997-07-01, test_cutoff: 1997-12-30, horizon: 26, step: 13}\n"
        "models: {bgnbd_gg: {}}\ntiering: {clv_model: bgnbd_gg}\n"
        "compare: {draws: 50, methods: {rfm10: {}, abc4: {}, value-matrix: {}}, policies: [abc4_clv]}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        app,
        [
            "compare",
            "-c",
            "exp.yaml",
            "-o",
            "out/c.html",
            "--lang",
            "zh",
            "--origins",
            "2",
            "--tracking-uri",
            uri,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "等规模下" in result.output and "report  -> out/c.html" in result.output
    summary = pd.read_csv(tmp_path / "out" / "c_summary.csv")
    assert summary["segmentation"].tolist() == [
        "rfm10",
        "abc4",
        "value-matrix",
        "policy:abc4_clv",
        "clv_deciles",
    ]
    html = (tmp_path / "out" / "c.html").read_text(encoding="utf-8")
    assert "哪种客户分层" in html and "1997-09-30" in html  # both origins in the report
    for args, message in (
        (["-o", "r.pdf"], "--output: the report is HTML"),
        (["--set", "compare.methods.rfm8.thresh=1"], "compare.methods.rfm8: got an unexpected keyword"),
        (["--set", "compare.methods.nope={}"], "compare.methods.nope: valid options are"),
    ):
        early = CliRunner().invoke(app, ["compare", "-c", "exp.yaml", "--no-tracking", *args])
        assert early.exit_code == 2 and message in early.output, early.output
        assert "done" not in early.output  # refused before any work
    bad = CliRunner().invoke(
        app, ["compare", "-c", "exp.yaml", "--set", "compare.reference=nope", "--no-tracking"]
    )
    assert bad.exit_code == 2 and "compare.reference" in bad.output and "Traceback" not in bad.output


def _chromium() -> str:
    """Debian's chromium, installed here when missing and the machine allows (root with apt-get)."""
    import os
    import shutil
    import subprocess

    found = shutil.which("chromium")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        for args in (
            ["apt-get", "install", "-y", "-q", "chromium"],
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "chromium"],
        ):
            subprocess.run(args, capture_output=True, timeout=900, check=False)
            found = shutil.which("chromium")
            if found:
                break
    if found is None:
        message = "headless Chromium is not installed: sudo apt-get install -y chromium"
        if os.environ.get("CLVTIER_REQUIRE_BROWSER") == "1":  # set by .ci/run: CI must run it
            pytest.fail(message)
        pytest.skip(message)
    return found


def test_report_renders_in_chromium_without_errors(compared, tmp_path):
    from playwright.sync_api import sync_playwright

    result, folder, _ = compared
    executable = _chromium()
    problems = []
    flags = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=flags)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on(
            "console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
        )
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"failed request: {r.url}"))
        page.goto((folder / "report.html").as_uri(), wait_until="load")
        plots = page.locator("img.plot")
        assert plots.count() == 8
        for i in range(plots.count()):
            plot = plots.nth(i)
            plot.scroll_into_view_if_needed()
            box = plot.bounding_box()
            assert box and box["width"] > 100 and box["height"] > 100, plot.get_attribute("alt")
            assert plot.evaluate("img => img.complete && img.naturalWidth > 0")
        page.evaluate("window.scrollTo(0, 0)")
        answer = page.locator("#answer").inner_text()
        assert "captures the most holdout revenue" in answer and "Most stable" in answer
        shot = tmp_path / "compare-report.png"
        page.screenshot(path=str(shot))
        browser.close()
    assert problems == []
    assert shot.stat().st_size > 10_000
