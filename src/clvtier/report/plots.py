"""Evaluation plots (matplotlib figures; the caller saves or logs them and closes them).

Every function takes results already computed and draws them; none fits a model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def _figure(width: float = 6.4, height: float = 4.8) -> tuple[Figure, object]:
    # Figure() directly, not pyplot: no global figure registry, no GUI backend, safe in threads
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def calibration_curves(calibration: pd.DataFrame) -> Figure:
    """Observed churn rate against mean predicted P(churn) per probability bin, one line per
    model (``calibration``: the tables of :func:`clvtier.evaluate.calibration_table` with a
    ``model`` column)."""
    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    for name, table in calibration.groupby("model", sort=False):
        ax.plot(table["mean_predicted"], table["observed_rate"], marker="o", markersize=3, label=name)
    ax.set(
        xlabel="predicted P(churn)",
        ylabel="observed churn rate",
        xlim=(0, 1),
        ylim=(0, 1),
        title="Calibration on the test window",
    )
    ax.legend(fontsize="small")
    return fig


def gain_curves(actual, predictions: dict[str, np.ndarray]) -> Figure:
    """Share of the test window's spend captured by the top x% of customers as ranked by each
    model (the gain, or Lorenz, curve), with the perfect ranking and a random one."""
    actual = np.asarray(actual, dtype=float)
    share = np.arange(1, actual.size + 1) / actual.size
    total = actual.sum() or 1.0
    fig, ax = _figure()
    ax.plot(share, np.cumsum(np.sort(actual)[::-1]) / total, color="black", label="perfect ranking")
    for name, predicted in predictions.items():
        order = np.lexsort((np.arange(actual.size), -np.asarray(predicted, dtype=float)))
        ax.plot(share, np.cumsum(actual[order]) / total, label=name)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="random")
    ax.set(
        xlabel="share of customers, highest predicted value first",
        ylabel="share of test-window spend",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title="Gain curve",
    )
    ax.legend(fontsize="small")
    return fig


def probability_alive_matrix(purchase_model, *, max_frequency: int, max_T: float, title: str = "") -> Figure:
    """P(alive) of a customer with ``frequency`` repeat purchases, the last one at ``recency``,
    observed for ``max_T`` (the frequency-recency heatmap of the BTYD literature)."""
    frequency = np.arange(max_frequency + 1, dtype=float)
    recency = np.linspace(0, max_T, 60)
    f, r = np.meshgrid(frequency, recency, indexing="ij")
    grid = pd.DataFrame(
        {"frequency": f.ravel(), "recency": np.where(f.ravel() == 0, 0, r.ravel()), "T": max_T}
    )
    alive = purchase_model.probability_alive(grid).reshape(f.shape)
    alive[0, 1:] = np.nan  # no repeat purchase means recency 0: only the first column exists
    fig, ax = _figure()
    image = ax.imshow(
        alive,
        origin="lower",
        aspect="auto",
        cmap="viridis",
        vmin=0,
        vmax=1,
        extent=(0, max_T, -0.5, max_frequency + 0.5),
    )
    fig.colorbar(image, ax=ax, label="P(alive)")
    ax.set(
        xlabel=f"recency (time of the last purchase, T = {max_T:g})",
        ylabel="frequency (repeat purchases)",
        title=title or "P(alive) by frequency and recency",
    )
    return fig


def tracking_plot(actual: pd.DataFrame, predicted: dict[str, np.ndarray], *, time_unit: str) -> Figure:
    """Cumulative repeat purchases in the test window, actual against each model's forecast
    (``actual``: ``period, repeat_purchases``; ``predicted``: cumulative expected purchases at
    the end of each period)."""
    fig, ax = _figure()
    ax.plot(actual["period"], actual["repeat_purchases"].cumsum(), color="black", linewidth=2, label="actual")
    for name, values in predicted.items():
        ax.plot(actual["period"], values, linestyle="--", label=name)
    ax.set(
        xlabel=f"{time_unit} after the test cutoff",
        ylabel="cumulative repeat purchases",
        title="Tracking: repeat purchases in the test window",
    )
    ax.legend(fontsize="small")
    return fig


def feature_importance(importances: dict[str, pd.Series], *, top: int = 15, title: str = "") -> Figure:
    """Horizontal bars of each part's importance (e.g. total gain), largest ``top`` features."""
    fig = Figure(figsize=(6.4 * len(importances), 4.8), layout="constrained")
    for i, (part, values) in enumerate(importances.items(), start=1):
        ax = fig.add_subplot(1, len(importances), i)
        shown = values.sort_values().tail(top)
        ax.barh(shown.index.astype(str), shown.to_numpy())
        ax.set(xlabel="total gain", title=part)
    if title:
        fig.suptitle(title)
    return fig


__all__ = [
    "calibration_curves",
    "feature_importance",
    "gain_curves",
    "probability_alive_matrix",
    "tracking_plot",
]
