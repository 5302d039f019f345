"""BTYD purchase models (BG/NBD, MBG/NBD, Pareto/NBD) and the Gamma-Gamma spend model.

The likelihoods are the ones in ``lifetimes``; this module is the only place that imports it. What
clvtier adds around them:

- the fit runs on identical ``(frequency, recency, T)`` rows compressed with weights, so its cost
  grows with the number of distinct rows, not customers;
- failed optimisations are retried (BFGS, then Nelder-Mead, then Powell, from other starts);
- the fitted estimator keeps only ``params_`` and a few diagnostics, never the data, and pickles;
- predictions are computed here in log space with the hypergeometric terms rewritten by Euler's
  transformation, so customers with thousands of purchases, ``recency == T`` or a tiny ``T`` get
  finite values where ``lifetimes`` returns NaN.

Time is in the estimator's ``time_unit`` ("days" or "weeks", a week being 7 days of the daily
clock): fit it on a summary built with the same unit and give horizons in it.
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import pandas as pd
from scipy import optimize, special
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from clvtier.errors import ClvtierError, InputError
from clvtier.features.summary import unit_days

log = logging.getLogger(__name__)

PURCHASE_COLUMNS = ("frequency", "recency", "T")
DAYS_PER_YEAR = 365.25


class ModelFitError(ClvtierError):
    """A model could not be fitted (no convergence, or an invalid fitted parameter)."""


def _lifetimes():
    """Import lifetimes without keeping its side effects: on import it sets a (pandas 3: no-op,
    deprecated) pandas option, which warns, and its likelihoods reset warning filters when called,
    so every call into it runs inside ``warnings.catch_warnings()``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import lifetimes
    return lifetimes


# ---------------------------------------------------------------------------------------------
# data contract


def _column(X, name: str, source: str) -> np.ndarray:
    if isinstance(X, pd.DataFrame):
        if name not in X.columns:
            raise InputError(source, f"required column {name!r} is missing; columns found: "
                                     f"{', '.join(map(repr, X.columns)) or 'none'}")
        values = X[name].to_numpy(dtype=float, na_value=np.nan)
    else:
        raise InputError(source, f"expected a DataFrame with columns {', '.join(PURCHASE_COLUMNS)}; "
                                 f"got {type(X).__name__}")
    return values


def _bad_rows(X, mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask)
    ids = X["customer_id"].to_numpy()[rows[:5]] if "customer_id" in X.columns else rows[:5]
    return f"{rows.size} rows (e.g. {', '.join(map(str, ids))})"


def check_purchase_data(X, *, time_unit: str | None = None, source: str = "<features>"):
    """Validate a BTYD summary and return ``frequency, recency, T`` as float arrays.

    Raises ``InputError`` naming the column and the offending rows when a value is missing, not
    finite, negative, a non-integer frequency, ``recency > T`` or a non-zero recency with no repeat
    purchase; and when the frame's ``attrs["time_unit"]`` differs from the model's.
    """
    unit = X.attrs.get("time_unit") if isinstance(X, pd.DataFrame) else None
    if time_unit is not None and unit is not None and unit != time_unit:
        raise InputError(source, f"features are in {unit!r} but the model uses {time_unit!r}")
    f, r, T = (_column(X, c, source) for c in PURCHASE_COLUMNS)
    if f.size == 0:
        raise InputError(source, "no customers to fit on")
    checks = [
        ("frequency", ~np.isfinite(f) | (f < 0) | (f != np.round(f)), "is not a non-negative integer"),
        ("recency", ~np.isfinite(r) | (r < 0), "is missing or negative"),
        ("T", ~np.isfinite(T) | (T < 0), "is missing or negative"),
        ("recency", r > T * (1 + 1e-12) + 1e-12, "is larger than T"),
        ("recency", (f == 0) & (r != 0), "is not 0 for a customer with frequency 0"),
    ]
    for column, mask, problem in checks:
        if mask.any():
            raise InputError(source, f"column {column!r} {problem} in {_bad_rows(X, mask)}")
    return f, np.minimum(r, T), T


def compress(*columns: np.ndarray, weights: np.ndarray | None = None):
    """Distinct rows of ``columns`` with their summed weights, and the index mapping rows back.

    Each column is hashed on its own and the codes are folded into one compact integer key, which
    is several times faster than hashing row tuples.
    """
    columns = [np.asarray(c, dtype=float) for c in columns]
    key = np.zeros(columns[0].size, dtype=np.int64)
    for column in columns:
        codes, uniques = pd.factorize(column)
        key, _ = pd.factorize(key * len(uniques) + codes)  # stays below n: no overflow
    first = np.empty(key.max() + 1 if key.size else 0, dtype=np.int64)
    first[key[::-1]] = np.arange(key.size)[::-1]  # first row of each distinct key
    w = np.ones(key.size) if weights is None else np.asarray(weights, dtype=float)
    return [c[first] for c in columns], np.bincount(key, weights=w, minlength=first.size), key


# ---------------------------------------------------------------------------------------------
# optimisation with retries


#: Seconds one model fit may take, all attempts together; past it the fit stops with a clear error
#: instead of running for hours on degenerate data.
FIT_SECONDS = 300.0


def _minimise(objective, x0: np.ndarray, *, tol: float, gradient=None, name: str,
              seconds: float | None = None) -> optimize.OptimizeResult:
    """Minimise ``objective`` over log-parameters, retrying with other optimisers and starts.

    The first attempt is what ``lifetimes`` does (BFGS from 0.1, with the autograd gradient when
    the likelihood supports it), so results match plain ``lifetimes``. When it fails, Nelder-Mead
    from 0 and then Powell from 1, each polished by BFGS, are tried before giving up.
    """
    attempts = [("BFGS", x0), ("Nelder-Mead", np.zeros_like(x0)), ("Powell", np.ones_like(x0))]
    messages, best = [], None
    budget = FIT_SECONDS if seconds is None else seconds
    deadline = time.monotonic() + budget

    def stop_when_late(*_):
        if time.monotonic() > deadline:
            raise StopIteration

    for method, start in attempts:
        if time.monotonic() > deadline:
            raise ModelFitError(f"{name} did not converge within its time budget of {budget:g} s ("
                                + "; ".join(messages) + "): the data may be degenerate (e.g. no purchases "
                                "after the cutoff, or customers far older than the data)")
        if best is not None and np.all(np.isfinite(best)) and np.all(np.abs(best) < 50):
            start = best  # BFGS often stops near the optimum ("precision loss"): resume from there
        with np.errstate(all="ignore"):
            try:
                if method == "BFGS":
                    result = optimize.minimize(gradient or objective, start, jac=gradient is not None,
                                               method="BFGS", tol=tol, callback=stop_when_late)
                else:
                    options = {"maxiter": 5_000}
                    if method == "Nelder-Mead":
                        options.update(xatol=1e-8, fatol=1e-12)
                    result = optimize.minimize(objective, start, method=method, options=options,
                                               callback=stop_when_late)
                    if np.all(np.isfinite(result.x)):
                        polished = optimize.minimize(objective, result.x, method="BFGS", tol=tol,
                                                     callback=stop_when_late)
                        if np.isfinite(polished.fun) and polished.fun <= result.fun:
                            polished.success = result.success or polished.success
                            result = polished
            except (ValueError, FloatingPointError, OverflowError, ZeroDivisionError) as err:
                messages.append(f"{method}: {err}")
                continue
        if result.success and np.isfinite(result.fun) and np.all(np.isfinite(result.x)) \
                and np.all(np.abs(result.x) < 50):
            result.method = method
            result.attempts = len(messages) + 1
            return result
        if np.isfinite(result.fun):
            best = result.x
        messages.append(f"{method}: {result.message}")
        log.info("%s fit attempt with %s failed: %s", name, method, result.message)
    raise ModelFitError(f"{name} did not converge after {len(attempts)} attempts ("
                        + "; ".join(messages) + "); try a small penalizer")


WARM_START_ROWS = 50_000


def _warm_start(make_objective, args: tuple, x0: np.ndarray) -> np.ndarray:
    """Start values from a fit on a weighted sample of distinct rows, when there are many.

    ``args`` are the likelihood's arrays (the weights last but one, the penalizer last). The sample
    only moves the starting point: the full fit then converges to the same optimum in a few
    iterations instead of dozens, which is what makes 10M customers a matter of seconds.
    """
    *columns, w, penalizer = args
    if w.size <= WARM_START_ROWS:
        return x0
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(w.size, WARM_START_ROWS, replace=False, p=w / w.sum()))
    objective, gradient = make_objective((*(c[idx] for c in columns), w[idx], penalizer))
    with np.errstate(all="ignore"):
        try:
            result = optimize.minimize(gradient or objective, x0, jac=gradient is not None, method="BFGS",
                                       tol=1e-5)
        except (ValueError, FloatingPointError, OverflowError, ZeroDivisionError):
            return x0
    return result.x if np.all(np.isfinite(result.x)) and np.all(np.abs(result.x) < 50) else x0


# ---------------------------------------------------------------------------------------------
# purchase models


class _PurchaseModel(BaseEstimator):
    """Shared fit/validation for the purchase-count models; subclasses supply the maths."""

    _name = ""
    _fitter_name = ""  # the lifetimes class whose likelihood is fitted
    _param_names: tuple[str, ...] = ()
    _scaled: tuple[str, ...] = ()  # rate parameters that carry the time unit

    def __init__(self, *, time_unit: str = "weeks", penalizer: float = 0.0, tol: float = 1e-7):
        self.time_unit = time_unit
        self.penalizer = penalizer
        self.tol = tol

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, X, y=None, sample_weight=None):
        """Fit on a BTYD summary (``frequency``, ``recency``, ``T`` in ``time_unit``).

        Identical rows are compressed into weights first; ``sample_weight`` multiplies them.
        Returns ``self``.
        """
        unit_days(self.time_unit)
        if self.penalizer < 0:
            raise InputError("penalizer", f"must be >= 0; got {self.penalizer}")
        f, r, T = check_purchase_data(X, time_unit=self.time_unit)
        (f, r, T), w, _ = compress(f, r, T, weights=sample_weight)
        if T.max() <= 0:
            raise InputError("<features>", "every customer has T = 0: nothing to learn from")
        scale = 1.0 / T.max()  # as lifetimes: rescale time so the optimiser sees O(1) rates
        args = (f, r * scale, T * scale, w, self.penalizer)
        with warnings.catch_warnings():  # lifetimes' likelihoods reset warning filters on each call
            x0 = _warm_start(self._objective, args, np.full(len(self._param_names), 0.1))
            objective, gradient = self._objective(args)
            result = _minimise(objective, x0, tol=self.tol, gradient=gradient, name=self._name)
            params = np.exp(result.x)
            for name in self._scaled:
                params[self._param_names.index(name)] /= scale
            self.params_ = dict(zip(self._param_names, map(float, params), strict=True))
            self.log_likelihood_ = float(self._log_likelihood(f, r, T, w))
        self.feature_names_in_ = np.array(PURCHASE_COLUMNS, dtype=object)
        self.n_features_in_ = len(PURCHASE_COLUMNS)
        self.n_customers_ = int(round(w.sum()))
        self.n_distinct_rows_ = int(f.size)
        self.optimiser_ = result.method
        self.fit_attempts_ = int(result.attempts)
        self._check_params()
        return self

    def _check_params(self):
        bad = {k: v for k, v in self.params_.items() if not (np.isfinite(v) and v > 0)}
        if bad:
            raise ModelFitError(f"{self._name} fitted invalid parameters {bad}")

    def _fitter(self):
        return getattr(_lifetimes(), self._fitter_name)

    def _objective(self, args):
        from autograd import value_and_grad

        nll = self._fitter()._negative_log_likelihood
        return (lambda x: nll(x, *args)), value_and_grad(lambda x: nll(x, *args))

    def _log_likelihood(self, f, r, T, w):
        logp = np.log([self.params_[k] for k in self._param_names])
        return -self._fitter()._negative_log_likelihood(logp, f, r, T, w, 0.0) * w.sum()

    # -- predictions ------------------------------------------------------------------------
    def _data(self, X):
        check_is_fitted(self, "params_")
        return check_purchase_data(X, time_unit=self.time_unit)

    def expected_purchases(self, X, t: float) -> np.ndarray:
        """Expected number of purchases in ``(T, T + t]`` for each customer (``t`` in time_unit)."""
        f, r, T = self._data(X)
        return _finite(self._expected_purchases(f, r, T, _horizon(t)))

    def probability_alive(self, X) -> np.ndarray:
        """Probability that each customer is still active at ``T``."""
        f, r, T = self._data(X)
        return _finite(self._probability_alive(f, r, T))

    def probability_any_purchase(self, X, t: float) -> np.ndarray:
        """Probability of at least one purchase in ``(T, T + t]``: the churn score to rank by."""
        f, r, T = self._data(X)
        return _finite(np.clip(self._probability_any_purchase(f, r, T, _horizon(t)), 0.0, 1.0))

    def customer_lifetime_value(self, X, spend, *, horizon: float, discount_rate: float = 0.0,
                                margin: float = 1.0, step: float | None = None) -> np.ndarray:
        """Discounted value of each customer's purchases in ``(T, T + horizon]``.

        Parameters
        ----------
        X : DataFrame
            BTYD summary in ``time_unit``.
        spend : array-like or GammaGammaModel
            Expected spend per purchase, one per customer, or a fitted Gamma-Gamma model (then
            ``X`` must also hold ``monetary_value``).
        horizon : float
            Length of the future window, in ``time_unit``.
        discount_rate : float, default=0.0
            Annual discount rate (0.1 = 10% a year), applied continuously on the daily clock.
        margin : float, default=1.0
            Share of spend that is profit.
        step : float, optional
            Length of the discounting steps in ``time_unit``; by default about a month.

        Returns
        -------
        ndarray : ``sum_k margin * spend * (E[Y(t_k)] - E[Y(t_k-1)]) / (1 + discount_rate) ** years_k``,
        with ``t_k`` the step ends and ``years_k`` their distance from ``T`` in years.
        """
        f, r, T = self._data(X)
        if discount_rate < 0 or not 0 <= margin:
            raise InputError("customer_lifetime_value", f"discount_rate and margin must be >= 0; got "
                                                        f"{discount_rate} and {margin}")
        horizon = _horizon(horizon)
        days = unit_days(self.time_unit)
        step = (30.4375 / days) if step is None else float(step)
        ends = np.unique(np.append(np.arange(step, horizon, step), horizon))
        if isinstance(spend, GammaGammaModel):
            spend = spend.expected_spend(X)
        spend = np.broadcast_to(np.asarray(spend, dtype=float), f.shape)
        value, previous = np.zeros_like(f), np.zeros_like(f)
        for end in ends:
            cumulative = self._expected_purchases(f, r, T, end)
            value += (cumulative - previous) / (1.0 + discount_rate) ** (end * days / DAYS_PER_YEAR)
            previous = cumulative
        return _finite(value * spend * margin)

    def __repr__(self):  # noqa: D105 - keep sklearn's repr but show fitted params when present
        text = super().__repr__()
        if hasattr(self, "params_"):
            text += " params_=" + ", ".join(f"{k}={v:.4g}" for k, v in self.params_.items())
        return text


def _horizon(t) -> float:
    t = float(t)
    if not (np.isfinite(t) and t >= 0):
        raise InputError("horizon", f"must be a finite number >= 0; got {t}")
    return t


def _finite(values: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(values)):  # a bug, not bad input: the maths below is written to avoid it
        raise ModelFitError(f"{int((~np.isfinite(values)).sum())} predictions are not finite")
    return values


def _log_ratio(num, den):
    return np.log(num) - np.log(den)


class BetaGeoModel(_PurchaseModel):
    """BG/NBD purchase model (Fader, Hardie & Lee 2005, "Counting your customers the easy way").

    Parameters
    ----------
    time_unit : {"days", "weeks"}, default="weeks"
        Unit of ``recency``, ``T`` and every horizon.
    penalizer : float, default=0.0
        L2 penalty on the parameters, as in lifetimes.
    tol : float, default=1e-7
        Optimiser tolerance.

    Attributes
    ----------
    params_ : dict
        ``r, alpha, a, b``.
    log_likelihood_ : float
        Log-likelihood of the fitted data, in ``time_unit`` (comparable with the papers).
    n_customers_, n_distinct_rows_, optimiser_, fit_attempts_
        What the fit saw and how it converged.
    """

    _name = "BG/NBD"
    _fitter_name = "BetaGeoFitter"
    _param_names = ("r", "alpha", "a", "b")
    _scaled = ("alpha",)

    def _log_odds_dead(self, f, r, T):
        # log of delta(x>0) a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x): eq. (13) of FHL (2005)
        p = self.params_
        with np.errstate(divide="ignore"):
            out = (np.log(p["a"]) - np.log(p["b"] + np.maximum(f, 1) - 1)
                   + (p["r"] + f) * _log_ratio(p["alpha"] + T, p["alpha"] + r))
        return np.where(f > 0, out, -np.inf)

    def _probability_alive(self, f, r, T):
        return special.expit(-self._log_odds_dead(f, r, T))

    def _expected_purchases(self, f, r, T, t):
        # eq. (10) of FHL (2005) with Euler's transformation
        # 2F1(r+x, b+x; a+b+x-1; z) = (1-z)^(a-r-x-1) 2F1(a+b-1-r, a-1; a+b+x-1; z),
        # which removes the large exponents when x is in the thousands.
        p = self.params_
        a, b = p["a"], p["b"]
        z = t / (p["alpha"] + T + t)
        inner = np.power(1 - z, a - 1) * special.hyp2f1(a + b - 1 - p["r"], a - 1, a + b + f - 1, z)
        if abs(a - 1) < 1e-9:  # limit a -> 1 of (1 - inner) / (a - 1)
            ratio = -np.log1p(-z) * (a + b + f - 1)
        else:
            ratio = (a + b + f - 1) / (a - 1) * (1 - inner)
        return np.maximum(ratio, 0.0) * self._probability_alive(f, r, T)

    def _probability_any_purchase(self, f, r, T, t):
        # P(alive) * (1 - ((alpha+T)/(alpha+T+t))^(r+x)): alive customers buy unless the
        # Poisson clock stays silent for t; the posterior of lambda given alive is Gamma(r+x, alpha+T).
        p = self.params_
        silent = -np.expm1((p["r"] + f) * _log_ratio(p["alpha"] + T, p["alpha"] + T + t))
        return silent * self._probability_alive(f, r, T)


class ModifiedBetaGeoModel(BetaGeoModel):
    """MBG/NBD purchase model (Batislam, Denizel & Filiztekin 2007): a customer may also drop out
    right after the first purchase, so P(alive) < 1 without repeat purchases. Same parameters,
    hyperparameters and attributes as :class:`BetaGeoModel`."""

    _name = "MBG/NBD"
    _fitter_name = "ModifiedBetaGeoFitter"

    def _log_odds_dead(self, f, r, T):
        p = self.params_
        return (np.log(p["a"]) - np.log(p["b"] + f)
                + (p["r"] + f) * _log_ratio(p["alpha"] + T, p["alpha"] + r))

    def _expected_purchases(self, f, r, T, t):
        # 2F1(r+x, b+x+1; a+b+x; z) = (1-z)^(a-r-x-1) 2F1(a+b-r, a-1; a+b+x; z)
        p = self.params_
        a, b = p["a"], p["b"]
        z = t / (p["alpha"] + T + t)
        inner = np.power(1 - z, a - 1) * special.hyp2f1(a + b - p["r"], a - 1, a + b + f, z)
        if abs(a - 1) < 1e-9:
            ratio = -np.log1p(-z) * (a + b + f)
        else:
            ratio = (a + b + f) / (a - 1) * (1 - inner)
        return np.maximum(ratio, 0.0) * self._probability_alive(f, r, T)


class ParetoNBDModel(_PurchaseModel):
    """Pareto/NBD purchase model (Schmittlein, Morrison & Colombo 1987), with the expressions of
    Fader & Hardie (2005), "A note on deriving the Pareto/NBD model and related expressions".

    Parameters and attributes as :class:`BetaGeoModel`; ``params_`` holds ``r, alpha, s, beta``.
    """

    _name = "Pareto/NBD"
    _fitter_name = "ParetoNBDFitter"
    _param_names = ("r", "alpha", "s", "beta")
    _scaled = ("alpha", "beta")

    def _objective(self, args):
        f, r, T, w, penalizer = args
        cll = self._fitter()._conditional_log_likelihood
        total = w.sum()

        def objective(x):
            params = np.exp(x)
            return -(w * cll(params, f, r, T)).sum() / total + penalizer * (params**2).sum()

        return objective, None

    def _log_likelihood(self, f, r, T, w):
        params = [self.params_[k] for k in self._param_names]
        return (w * self._fitter()._conditional_log_likelihood(params, f, r, T)).sum()

    def _log_odds_dead(self, f, r, T):
        # log of s/(r+s+x) (alpha+T)^(r+x) (beta+T)^s A0, eq. (18)-(19) of the note; A0 is the
        # difference of two 2F1 terms, rewritten with Euler's transformation
        # 2F1(r+s+x, b; r+s+x+1; z) = (1-z)^(1-b) 2F1(1, r+s+x+1-b; r+s+x+1; z).
        p = self.params_
        rr, alpha, s, beta = p["r"], p["alpha"], p["s"], p["beta"]
        rsx = rr + s + f
        if alpha >= beta:
            base, b2 = alpha, s + 1
        else:
            base, b2 = beta, rr + f

        def log_term(age):
            z = abs(alpha - beta) / (base + age)
            return ((1 - b2) * np.log1p(-z) + np.log(special.hyp2f1(1, rsx + 1 - b2, rsx + 1, z))
                    - rsx * np.log(base + age))

        l_r, l_T = log_term(r), log_term(T)
        with np.errstate(divide="ignore"):
            log_a0 = l_r + np.log(-np.expm1(np.minimum(l_T - l_r, 0.0)))
        return (np.log(s) - np.log(rsx) + (rr + f) * np.log(alpha + T) + s * np.log(beta + T) + log_a0)

    def _probability_alive(self, f, r, T):
        return special.expit(-self._log_odds_dead(f, r, T))

    def _expected_purchases(self, f, r, T, t):
        # eq. (22) of the note: P(alive) (r+x)(beta+T) / ((alpha+T)(s-1)) [1 - ((beta+T)/(beta+T+t))^(s-1)]
        p = self.params_
        s = p["s"]
        log_shrink = _log_ratio(p["beta"] + T, p["beta"] + T + t)
        if abs(s - 1) < 1e-9:
            tail = -log_shrink
        else:
            tail = -np.expm1((s - 1) * log_shrink) / (s - 1)
        return (p["r"] + f) * (p["beta"] + T) / (p["alpha"] + T) * tail * self._probability_alive(f, r, T)

    def _probability_any_purchase(self, f, r, T, t, nodes: int = 32, block: int = 200_000):
        # Given alive at T the posterior is lambda ~ Gamma(r+x, alpha+T), mu ~ Gamma(s, beta+T),
        # independent, and P(buy in t | lambda, mu) = int_0^t lambda e^{-(lambda+mu)v} dv. Taking the
        # expectation and substituting y = (r+x) log(1 + v/(alpha+T)) leaves
        # int_0^Y e^{-y} ((beta+T)/(beta+T+v(y)))^s dy: smooth, so Gauss-Legendre on [0, min(Y, 50)]
        # is accurate to about 1e-10 (e^-50 is below double precision of the result).
        p = self.params_
        x, weights = np.polynomial.legendre.leggauss(nodes)
        out = np.empty_like(f)
        for lo in range(0, f.size, block):  # bounded memory: nodes x block
            sl = slice(lo, lo + block)
            k = p["r"] + f[sl]
            a_T, b_T = p["alpha"] + T[sl], p["beta"] + T[sl]
            upper = np.minimum(k * np.log1p(t / a_T), 50.0)
            y = (x[:, None] + 1) / 2 * upper
            v = a_T * np.expm1(y / k)
            integrand = np.exp(-y + p["s"] * _log_ratio(b_T, b_T + v))
            out[sl] = (weights[:, None] * integrand).sum(axis=0) / 2 * upper
        return out * self._probability_alive(f, r, T)


# ---------------------------------------------------------------------------------------------
# spend


SPEND_COLUMNS = ("frequency", "monetary_value")


def check_spend_data(X, *, source: str = "<features>"):
    """Validate the Gamma-Gamma inputs and return ``frequency, monetary_value`` as float arrays.

    Raises ``InputError`` naming the column and the offending rows when a column is absent, a
    value is missing or not finite, or a frequency is negative or not an integer. A negative
    ``monetary_value`` (repeat purchases netted below zero by returns) is a real observation: the
    fit leaves it out and predictions count it as 0.
    """
    if not isinstance(X, pd.DataFrame):
        raise InputError(source, f"Gamma-Gamma needs a DataFrame with columns {', '.join(SPEND_COLUMNS)}; "
                                 f"got {type(X).__name__}")
    missing = [c for c in SPEND_COLUMNS if c not in X.columns]
    if missing:
        raise InputError(source, f"Gamma-Gamma needs columns {', '.join(SPEND_COLUMNS)}; missing: "
                                 f"{', '.join(missing)}")
    f, m = (X[c].to_numpy(dtype=float, na_value=np.nan) for c in SPEND_COLUMNS)
    checks = [
        ("frequency", ~np.isfinite(f) | (f < 0) | (f != np.round(f)), "is not a non-negative integer"),
        ("monetary_value", ~np.isfinite(m), "is missing or not finite"),
    ]
    for column, mask, problem in checks:
        if mask.any():
            raise InputError(source, f"column {column!r} {problem} in {_bad_rows(X, mask)}")
    return f, m


class GammaGammaModel(BaseEstimator):
    """Gamma-Gamma model of spend per purchase (Fader, Hardie & Lee 2005, "RFM and CLV", JMR;
    Fader & Hardie 2013 note). It assumes spend per purchase is independent of frequency: the fit
    reports the observed correlation as ``frequency_spend_corr_`` and logs a warning when it is
    above 0.3 in absolute value.

    Only customers with at least one repeat purchase and a positive ``monetary_value`` enter the
    fit; others are counted in ``n_excluded_`` and predicted at the population mean (or shrunk
    towards it).

    Parameters
    ----------
    penalizer : float, default=0.0
    tol : float, default=1e-7

    Attributes
    ----------
    params_ : dict
        ``p, q, v`` (``v`` is the papers' gamma).
    mean_spend_ : float
        Population mean spend per purchase, ``p v / (q - 1)``.
    """

    def __init__(self, *, penalizer: float = 0.0, tol: float = 1e-7):
        self.penalizer = penalizer
        self.tol = tol

    def fit(self, X, y=None, sample_weight=None):
        f, m = check_spend_data(X)
        keep = (f > 0) & (m > 0)
        self.n_excluded_ = int((~keep).sum())
        if keep.sum() < 3:
            raise InputError("<features>", f"Gamma-Gamma needs customers with a repeat purchase and "
                                           f"positive spend; found {int(keep.sum())}")
        weights = None if sample_weight is None else np.asarray(sample_weight, dtype=float)[keep]
        (fx, mx), w, _ = compress(f[keep], m[keep], weights=weights)
        self.frequency_spend_corr_ = float(np.corrcoef(f[keep], m[keep])[0, 1])
        if abs(self.frequency_spend_corr_) > 0.3:
            log.warning("frequency and spend per purchase are correlated (%.2f): the Gamma-Gamma "
                        "independence assumption is doubtful", self.frequency_spend_corr_)
        from autograd import value_and_grad
        nll = _lifetimes().GammaGammaFitter._negative_log_likelihood
        args = (fx, mx, w, self.penalizer)

        def make(a):
            return (lambda x: nll(x, *a)), value_and_grad(lambda x: nll(x, *a))

        with warnings.catch_warnings():
            objective, gradient = make(args)
            result = _minimise(objective, _warm_start(make, args, np.full(3, 0.1)), tol=self.tol,
                               gradient=gradient, name="Gamma-Gamma")
            self.log_likelihood_ = float(-nll(result.x, fx, mx, w, 0.0) * w.sum())
        p, q, v = map(float, np.exp(result.x))
        if q <= 1:
            raise ModelFitError(f"Gamma-Gamma fitted q = {q:.3g} <= 1: mean spend is undefined (spend "
                                "per purchase is too heavy-tailed); cap extreme amounts and refit")
        self.params_ = {"p": p, "q": q, "v": v}
        self.feature_names_in_ = np.array(SPEND_COLUMNS, dtype=object)
        self.n_features_in_ = len(SPEND_COLUMNS)
        self.mean_spend_ = p * v / (q - 1)
        self.optimiser_ = result.method
        self.fit_attempts_ = int(result.attempts)
        return self

    def expected_spend(self, X) -> np.ndarray:
        """Expected spend per purchase: eq. (5) of the JMR paper, a weighted average of the population
        mean and the customer's own mean spend (clipped at 0) with weight ``p x / (p x + q - 1)``.
        The inputs are checked as in :meth:`fit` (:func:`check_spend_data`)."""
        check_is_fitted(self, "params_")
        f, m = check_spend_data(X)
        m = np.clip(m, 0, None)
        p, q = self.params_["p"], self.params_["q"]
        own = p * f / (p * f + q - 1)
        return _finite((1 - own) * self.mean_spend_ + own * m)


__all__ = ["BetaGeoModel", "GammaGammaModel", "ModelFitError", "ModifiedBetaGeoModel", "ParetoNBDModel",
           "check_purchase_data", "check_spend_data", "compress"]
