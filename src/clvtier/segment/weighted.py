"""Weighted score: chosen indicators, normalised and weighted (expert, AHP or entropy weights),
then cut into tiers by customer shares or by score cut-offs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from clvtier.errors import InputError
from clvtier.segment.base import (
    Segmentation,
    check_shares,
    cut_by_shares,
    finish,
    numeric,
    positions,
    require,
)

NORMALISATIONS = ("minmax", "rank", "z")
DIRECTIONS = ("higher", "lower")
#: Saaty's random consistency index for matrices of order 1..15.
RANDOM_INDEX = (0.0, 0.0, 0.58, 0.90, 1.12, 1.24, 1.32, 1.41, 1.45, 1.49, 1.51, 1.48, 1.56, 1.57, 1.59)
TIER_CODES = ("high_value", "medium_value", "low_value")


def normalise(values, method: str = "minmax", direction: str = "higher") -> np.ndarray:
    """Put one indicator on a common scale, better = larger.

    ``minmax``: (x - min) / (max - min) in [0, 1] (0.5 when all are equal); ``rank``: the
    percentile of the average rank in [0, 1] (0.5 for one customer); ``z``: (x - mean) / std
    (0 when all are equal). ``direction="lower"`` mirrors the scale (e.g. recency_days).
    """
    if method not in NORMALISATIONS:
        raise InputError(
            "normalise", f"valid options are {', '.join(map(repr, NORMALISATIONS))}; got {method!r}"
        )
    if direction not in DIRECTIONS:
        raise InputError("direction", f"valid options are 'higher', 'lower'; got {direction!r}")
    x = np.asarray(values, dtype=float)
    if direction == "lower":
        x = -x
    if method == "minmax":
        span = x.max() - x.min()
        return (x - x.min()) / span if span > 0 else np.full(x.shape, 0.5)
    if method == "rank":
        return (rankdata(x) - 1) / (len(x) - 1) if len(x) > 1 else np.full(x.shape, 0.5)
    std = x.std()
    return (x - x.mean()) / std if std > 0 else np.zeros(x.shape)


@dataclass(frozen=True)
class AHP:
    """Weights from a pairwise comparison matrix (Saaty): ``weights`` (the principal
    eigenvector, summing to 1), ``lambda_max``, consistency index ``ci = (lambda_max - n) /
    (n - 1)`` and consistency ratio ``cr = ci / RI(n)`` (0 for n <= 2)."""

    weights: np.ndarray
    lambda_max: float
    ci: float
    cr: float


def ahp_weights(matrix, *, max_cr: float = 0.1, allow_inconsistent: bool = False) -> AHP:
    """AHP weights of a reciprocal pairwise comparison matrix.

    ``matrix[i][j]`` says how much more important indicator i is than j (1 = equal, 9 =
    extremely); the matrix must be square, positive, 1 on the diagonal and reciprocal
    (``a[j][i] = 1 / a[i][j]``). A consistency ratio of ``max_cr`` or more is an error unless
    ``allow_inconsistent``.
    """
    a = np.asarray(matrix, dtype=float)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 1:
        raise InputError("ahp", f"the pairwise matrix must be square; got shape {a.shape}")
    n = a.shape[0]
    if n > len(RANDOM_INDEX):
        raise InputError("ahp", f"at most {len(RANDOM_INDEX)} indicators; got {n}")
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise InputError("ahp", "every pairwise judgement must be a positive number")
    bad = ~np.isclose(a * a.T, 1, rtol=1e-2)  # judgements like 1/3 typed as 0.333 pass
    np.fill_diagonal(bad, ~np.isclose(np.diag(a), 1))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InputError(
            "ahp",
            f"the matrix must be reciprocal with 1 on the diagonal: a[{i}][{j}] = "
            f"{a[i, j]:g}, a[{j}][{i}] = {a[j, i]:g}",
        )
    eigenvalues, eigenvectors = np.linalg.eig(a)
    k = int(np.argmax(eigenvalues.real))
    weights = np.abs(eigenvectors[:, k].real)
    weights /= weights.sum()
    lambda_max = float(eigenvalues[k].real)
    ci = (lambda_max - n) / (n - 1) if n > 1 else 0.0
    cr = ci / RANDOM_INDEX[n - 1] if n > 2 else 0.0
    if cr >= max_cr and not allow_inconsistent:
        raise InputError(
            "ahp",
            f"consistency ratio {cr:.3f} is not below {max_cr:g}: revise the pairwise "
            "judgements (or allow an inconsistent matrix explicitly)",
        )
    return AHP(weights, lambda_max, ci, cr)


def entropy_weights(normalised) -> np.ndarray:
    """Entropy weight method on a customers x indicators matrix of values in [0, 1].

    p_ij = x_ij / sum_i x_ij; e_j = -sum_i p_ij ln p_ij / ln n; w_j = (1 - e_j) / sum_k (1 - e_k).
    An indicator that does not vary (or is 0 for everyone) carries no information (e_j = 1).
    """
    x = np.asarray(normalised, dtype=float)
    n = x.shape[0]
    if n < 2:
        raise InputError("weights", "entropy weights need at least two customers")
    if np.any(x < 0):
        raise InputError("weights", "entropy weights need non-negative values (use min-max normalised data)")
    totals = x.sum(axis=0)
    p = np.divide(x, totals, out=np.full(x.shape, 1.0 / n), where=totals > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(p), 0.0)
    divergence = 1 + plogp.sum(axis=0) / np.log(n)
    divergence = np.clip(divergence, 0, None)
    if divergence.sum() <= 1e-12:
        raise InputError("weights", "entropy weights are undefined: no indicator varies between customers")
    return divergence / divergence.sum()


def weighted_score(
    features: pd.DataFrame,
    indicators: Mapping[str, str],
    *,
    normalise_with: str = "minmax",
    weights: str | Mapping[str, float] = "equal",
    ahp_matrix=None,
    allow_inconsistent: bool = False,
    shares: Sequence[float] | None = (0.2, 0.3, 0.5),
    cutoffs: Sequence[float] | None = None,
    codes: Sequence[str] | None = None,
    lang: str = "en",
) -> Segmentation:
    """Score customers on weighted, normalised indicators and cut the score into tiers.

    Parameters
    ----------
    indicators : mapping of column -> "higher" or "lower"
        Which columns to use and which direction is better, e.g. ``{"recency_days": "lower",
        "frequency_count": "higher", "monetary_total": "higher"}``.
    normalise_with : {"minmax", "rank", "z"}, default="minmax"
    weights : "equal", "entropy", "ahp" or a mapping column -> weight (expert weights)
        Expert weights are rescaled to sum to 1. ``"entropy"`` weighs by the entropy method on
        min-max normalised indicators; ``"ahp"`` uses ``ahp_matrix`` (rows and columns in the
        order of ``indicators``) and refuses a consistency ratio >= 0.1 unless
        ``allow_inconsistent``.
    shares, cutoffs
        Tiers by customer shares from the top (default 20/30/50), or by score cut-offs from the
        highest (``[0.7, 0.4]``: score >= 0.7 is tier 1, >= 0.4 tier 2, the rest tier 3).
        ``cutoffs`` wins when given.
    codes : sequence of str, optional
        Tier codes, best first (default high/medium/low value for three tiers, else T1, T2, ...).
    """
    if not indicators:
        raise InputError("indicators", "choose at least one indicator column")
    columns = list(indicators)
    require(features, columns, "weighted")
    for c, d in indicators.items():
        if d not in DIRECTIONS:
            raise InputError("indicators", f"direction of {c!r} must be 'higher' or 'lower'; got {d!r}")
    raw = np.column_stack([numeric(features, c, "weighted") for c in columns])
    norm = np.column_stack(
        [normalise(raw[:, j], normalise_with, indicators[c]) for j, c in enumerate(columns)]
    )
    params: dict = {"indicators": dict(indicators), "normalise": normalise_with}
    if isinstance(weights, Mapping):
        if set(weights) != set(columns):
            raise InputError("weights", f"give one weight per indicator {columns}; got {sorted(weights)}")
        w = np.array([float(weights[c]) for c in columns])
        if np.any(~np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise InputError("weights", f"weights must be non-negative and not all zero; got {dict(weights)}")
        w = w / w.sum()
    elif weights == "equal":
        w = np.full(len(columns), 1 / len(columns))
    elif weights == "entropy":
        minmax = np.column_stack(
            [normalise(raw[:, j], "minmax", indicators[c]) for j, c in enumerate(columns)]
        )
        w = entropy_weights(minmax)
    elif weights == "ahp":
        if ahp_matrix is None:
            raise InputError("weights", "weights='ahp' needs the pairwise comparison matrix")
        result = ahp_weights(ahp_matrix, allow_inconsistent=allow_inconsistent)
        if len(result.weights) != len(columns):
            raise InputError(
                "ahp",
                f"the matrix is {len(result.weights)}x{len(result.weights)} but there are "
                f"{len(columns)} indicators",
            )
        w = result.weights
        params.update(consistency_ratio=result.cr, lambda_max=result.lambda_max)
    else:
        raise InputError(
            "weights", f"valid options are 'equal', 'entropy', 'ahp' or a mapping; got {weights!r}"
        )
    score = norm @ w
    params["weights"] = dict(zip(columns, w.round(6).tolist(), strict=True))
    if cutoffs is not None:
        cuts = sorted((float(c) for c in cutoffs), reverse=True)
        level = np.searchsorted(-np.array(cuts), -score, side="left")
        n_levels = len(cuts) + 1
        params["cutoffs"] = cuts
    else:
        shares = check_shares(shares)
        level = cut_by_shares(positions(features, [score]), shares)
        n_levels = len(shares)
        params["shares"] = shares
    if codes is None:
        codes = TIER_CODES if n_levels == 3 else [f"T{i}" for i in range(1, n_levels + 1)]
    if len(codes) != n_levels:
        raise InputError("labels", f"give {n_levels} tier labels; got {list(codes)}")
    inputs = pd.DataFrame(raw, columns=columns)
    for j, c in enumerate(columns):
        inputs[f"{c}_norm"] = norm[:, j]
    inputs["score"] = score
    value = "monetary_total" if "monetary_total" in features.columns else columns[0]
    return finish(
        "weighted",
        features,
        np.array(codes, dtype=object)[level],
        list(codes),
        inputs=inputs,
        value=value,
        lang=lang,
        params=params,
    )
