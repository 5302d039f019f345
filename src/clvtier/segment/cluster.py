"""Learned segments: KMeans or a Gaussian mixture on customer features, with stable labels.

The number of clusters is chosen on a seeded sample (silhouette on a sub-sample, or BIC), the
chosen model is then refitted on every customer starting from the sample's solution, and the
clusters are renumbered by mean value so that cluster 1 is the most valuable, whatever the
seed's arbitrary order. Each cluster gets a descriptive name from its medians.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.mixture import GaussianMixture
from sklearn.utils.validation import check_is_fitted

from clvtier.errors import InputError
from clvtier.segment.base import RFM_COLUMNS, Segmentation, finish, numeric, require
from clvtier.segment.labels import check_lang, strategy
from clvtier.segment.rfm import RFM8

METHODS = ("kmeans", "gmm")
SELECTIONS = ("silhouette", "bic")
#: column -> words for a cluster whose median is (low, high) against the population's tertiles,
#: in English and Chinese; beyond the outer deciles they get "very". Mid-range values add no word.
WORDS = {
    "recency_days": (("recent", "lapsed"), ("近期购买", "久未购买")),
    "frequency_count": (("infrequent", "frequent"), ("低频", "高频")),
    "monetary_total": (("low spend", "high spend"), ("低消费", "高消费")),
    "avg_order_value": (("small orders", "big orders"), ("低客单价", "高客单价")),
    "tenure_days": (("new", "long-standing"), ("新近获取", "老客户")),
}


def _level(median: float, q10: float, q33: float, q67: float, q90: float) -> int:
    """-2 very low, -1 low (bottom third), 0 middle, 1 high (top third), 2 very high (top tenth).
    "Very" needs the decile to differ from the tertile: with most customers at one value (one-time
    buyers), that value is just low."""
    if median <= q33:
        return -2 if median <= q10 < q33 else -1
    if median > q67:
        return 2 if median > q90 > q67 else 1
    return 0


def _signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


class ValueClusters(BaseEstimator):
    """KMeans or Gaussian-mixture clusters of customers, numbered by mean value.

    Parameters
    ----------
    method : {"kmeans", "gmm"}, default="kmeans"
    features : sequence of str, default=("recency_days", "frequency_count", "monetary_total")
    n_clusters : int, optional
        Fixed k. Default: chosen over ``k_range`` by ``selection``.
    k_range : (int, int), default=(2, 8)
        Smallest and largest k tried (inclusive).
    selection : {"silhouette", "bic"}, optional
        Default: silhouette for KMeans, BIC for the mixture (BIC needs a likelihood, so KMeans
        only takes silhouette).
    log : bool, default=True
        Apply sign(x) * log1p(|x|) before standardising (spend and counts are heavy-tailed).
    value : str, default="monetary_total"
        Column whose mean orders the clusters (1 = highest), e.g. "predicted_clv".
    sample_size : int, default=50_000
        Customers (seeded sample) on which each candidate k is fitted.
    silhouette_size : int, default=5_000
        Customers on which the silhouette is computed (it is quadratic in their number).
    reg_covar : float, default=0.1
        Added to the mixture's covariance diagonals, in standardised units. Counts are discrete, so
        without it BIC rewards components that sit on single values (k runs to the top of the
        range); 0.1 keeps components at least about 0.3 standard deviations wide.
    random_state : int, default=0

    Attributes
    ----------
    n_clusters_ : int
    selection_scores_ : dict
        k -> silhouette (higher is better) or BIC (lower is better); empty for a fixed k.
    estimator_ : KMeans or GaussianMixture, fitted on all customers (None when k = 1)
    center_, scale_ : ndarray
        Standardisation of the (log-)features.
    order_ : ndarray
        order_[raw cluster] = cluster number 1..k.
    names_ : dict
        Cluster number -> {"en": name, "zh": name}.
    rfm8_code_ : dict
        Cluster number -> the 2x2x2 RFM segment of its medians (its strategy), when R, F and M
        are among the features.
    """

    def __init__(
        self,
        *,
        method: str = "kmeans",
        features: Sequence[str] = tuple(RFM_COLUMNS),
        n_clusters: int | None = None,
        k_range: tuple[int, int] = (2, 8),
        selection: str | None = None,
        log: bool = True,
        value: str = "monetary_total",
        sample_size: int = 50_000,
        silhouette_size: int = 5_000,
        reg_covar: float = 0.1,
        random_state: int = 0,
    ):
        self.method = method
        self.features = features
        self.n_clusters = n_clusters
        self.k_range = k_range
        self.selection = selection
        self.log = log
        self.value = value
        self.sample_size = sample_size
        self.silhouette_size = silhouette_size
        self.reg_covar = reg_covar
        self.random_state = random_state

    def _matrix(self, frame: pd.DataFrame) -> np.ndarray:
        x = np.column_stack([numeric(frame, c, self.method) for c in self.features])
        return _signed_log1p(x) if self.log else x

    def _model(self, k: int, start=None):
        if self.method == "kmeans":
            if start is None:
                return KMeans(n_clusters=k, n_init=3, random_state=self.random_state)
            return KMeans(n_clusters=k, init=start.cluster_centers_, n_init=1, random_state=self.random_state)
        if start is None:
            return GaussianMixture(
                n_components=k,
                covariance_type="full",
                n_init=1,
                reg_covar=self.reg_covar,
                random_state=self.random_state,
            )
        return GaussianMixture(
            n_components=k,
            covariance_type="full",
            reg_covar=self.reg_covar,
            weights_init=start.weights_,
            means_init=start.means_,
            precisions_init=start.precisions_,
            random_state=self.random_state,
        )

    def _check(self, frame: pd.DataFrame) -> None:
        if self.method not in METHODS:
            raise InputError("method", f"valid options are 'kmeans', 'gmm'; got {self.method!r}")
        selection = self.selection or ("silhouette" if self.method == "kmeans" else "bic")
        if selection not in SELECTIONS or (self.method == "kmeans" and selection == "bic"):
            allowed = "'silhouette'" if self.method == "kmeans" else "'silhouette', 'bic'"
            raise InputError("selection", f"valid options for {self.method} are {allowed}; got {selection!r}")
        lo, hi = self.k_range
        if self.n_clusters is None and not 2 <= lo <= hi:
            raise InputError("k_range", f"need 2 <= smallest <= largest; got {self.k_range}")
        if self.n_clusters is not None and self.n_clusters < 1:
            raise InputError("n_clusters", f"must be at least 1; got {self.n_clusters}")
        require(frame, [*self.features, self.value], self.method)

    def fit(self, frame: pd.DataFrame, y=None) -> ValueClusters:
        """Fit on a feature table. Rows are put in a canonical order (by their feature values, then
        the value column) first, so the clusters do not depend on the order the rows came in."""
        self._check(frame)
        raw_all = self._matrix(frame)
        value_all = numeric(frame, self.value, self.method)
        canonical = np.lexsort([value_all, *raw_all.T[::-1]])
        raw, frame = raw_all[canonical], frame.iloc[canonical]
        self.center_ = raw.mean(axis=0)
        scale = raw.std(axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        x = (raw - self.center_) / self.scale_
        rng = np.random.default_rng(self.random_state)
        sample = x[rng.choice(len(x), self.sample_size, replace=False)] if len(x) > self.sample_size else x
        distinct = len(np.unique(sample, axis=0))
        self.selection_scores_ = {}
        selection = self.selection or ("silhouette" if self.method == "kmeans" else "bic")
        if self.n_clusters is not None:
            ks = [min(self.n_clusters, distinct)]
        else:  # with fewer distinct customers than the smallest k: one cluster
            ks = [k for k in range(self.k_range[0], self.k_range[1] + 1) if k <= distinct] or [1]
        fits = {k: self._model(k).fit(sample) for k in ks if k > 1}
        if len(fits) > 1:
            size = min(self.silhouette_size, len(sample))
            for k, model in fits.items():
                if selection == "bic":
                    self.selection_scores_[k] = float(model.bic(sample))
                    continue
                labels = model.predict(sample)
                useful = 2 <= len(np.unique(labels)) < size
                self.selection_scores_[k] = (
                    float(silhouette_score(sample, labels, sample_size=size, random_state=self.random_state))
                    if useful
                    else -1.0
                )
            pick = min if selection == "bic" else max
            k = pick(self.selection_scores_, key=self.selection_scores_.get)
        else:
            k = ks[0]
        self.n_clusters_ = k
        self.feature_names_in_ = np.array(self.features, dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        if k == 1:  # nothing to fit: everyone is cluster 1
            self.estimator_ = None
        else:
            self.estimator_ = self._model(k, start=fits[k]).fit(x) if sample is not x else fits[k]
        raw_labels = self._raw_predict(x)
        value = value_all[canonical]
        means = np.array(
            [value[raw_labels == c].mean() if np.any(raw_labels == c) else -np.inf for c in range(k)]
        )
        ranking = np.lexsort([np.arange(k), -means])  # by mean value, then raw id
        self.order_ = np.empty(k, dtype=np.int64)
        self.order_[ranking] = np.arange(1, k + 1)
        self._describe(frame, self.order_[raw_labels])
        return self

    def _describe(self, frame: pd.DataFrame, labels: np.ndarray) -> None:
        self.names_, self.rfm8_code_, classes = {}, {}, {}
        for c in self.features:
            values = numeric(frame, c, self.method)
            cuts = np.quantile(values, [0.1, 1 / 3, 2 / 3, 0.9])
            medians = pd.Series(values).groupby(labels).median()
            classes[c] = {i: _level(m, *cuts) for i, m in medians.items()}
        for i in range(1, self.n_clusters_ + 1):
            words = {"en": [], "zh": []}
            for c in self.features:
                level = classes[c].get(i, 0)
                if level:
                    en, zh = WORDS.get(c, ((f"low {c}", f"high {c}"), (f"{c}低", f"{c}高")))
                    very = abs(level) == 2
                    words["en"].append("very " * very + en[level > 0])
                    words["zh"].append("非常" * very + zh[level > 0])
            self.names_[i] = {
                "en": ", ".join(words["en"]) or "average",
                "zh": "，".join(words["zh"]) or "中等",
            }
            if all(c in self.features for c in RFM_COLUMNS):
                r, f, m = (classes[c].get(i, 0) for c in RFM_COLUMNS)
                self.rfm8_code_[i] = RFM8[(r < 0, f > 0, m > 0)]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Cluster number 1..k (1 = most valuable) per customer."""
        check_is_fitted(self, "estimator_")
        require(frame, list(self.features), self.method)
        x = (self._matrix(frame) - self.center_) / self.scale_
        return self.order_[self._raw_predict(x)]

    def _raw_predict(self, x: np.ndarray) -> np.ndarray:
        return np.zeros(len(x), dtype=np.int64) if self.estimator_ is None else self.estimator_.predict(x)

    def segmentation(self, frame: pd.DataFrame, *, lang: str = "en") -> Segmentation:
        """Labels, inputs and the profile table of ``frame`` (predicted with the fitted model)."""
        check_lang(lang)
        labels = self.predict(frame)
        order = [f"cluster_{i}" for i in range(1, self.n_clusters_ + 1)]
        names = {
            f"cluster_{i}": (
                f"{i}: {self.names_[i][lang]}",
                strategy(self.rfm8_code_[i], lang) if i in self.rfm8_code_ else "",
            )
            for i in range(1, self.n_clusters_ + 1)
        }
        codes = np.array(order, dtype=object)[labels - 1]
        inputs = frame[list(dict.fromkeys([*self.features, self.value]))].reset_index(drop=True)
        inputs.insert(0, "cluster", labels)
        params = {
            "method": self.method,
            "n_clusters": self.n_clusters_,
            "features": list(self.features),
            "selection_scores": self.selection_scores_,
            "random_state": self.random_state,
        }
        return finish(
            self.method,
            frame,
            codes,
            order,
            inputs=inputs,
            value=self.value,
            lang=lang,
            params=params,
            names=names,
        )


def clusters(frame: pd.DataFrame, *, method: str = "kmeans", lang: str = "en", **options) -> Segmentation:
    """Fit :class:`ValueClusters` on ``frame`` (a feature table) and return its segmentation."""
    return ValueClusters(method=method, **options).fit(frame).segmentation(frame, lang=lang)
