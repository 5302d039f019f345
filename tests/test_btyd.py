import pickle

import numpy as np
import pandas as pd
import pytest

from clvtier.clv import BetaGeoModel, GammaGammaModel, ModelFitError, ModifiedBetaGeoModel, ParetoNBDModel
from clvtier.clv.btyd import _minimise, compress
from clvtier.data.datasets import BGNBD_CDNOW, GAMMA_GAMMA_CDNOW, load_cdnow, synthetic_transactions
from clvtier.errors import InputError
from clvtier.features import btyd_summary

PURCHASE_MODELS = [BetaGeoModel, ParetoNBDModel, ModifiedBetaGeoModel]


@pytest.fixture(scope="module")
def sample_summary() -> pd.DataFrame:
    """The papers' setting: 2,357-customer sample, calibration to 1997-09-30, weeks = days / 7."""
    return btyd_summary(load_cdnow(sample=True), as_of="1997-09-30", time_unit="weeks")


@pytest.fixture(scope="module")
def fitted(sample_summary):
    return {m: m().fit(sample_summary) for m in PURCHASE_MODELS}


@pytest.mark.parametrize(("model", "published", "loglik"), [
    (BetaGeoModel, {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}, -9582.4),
    (ParetoNBDModel, {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}, -9595.0),
])
def test_published_cdnow_estimates(fitted, model, published, loglik):
    # Fader, Hardie & Lee (2005), Marketing Science, Table 2
    m = fitted[model]
    assert {k: round(v, 3) for k, v in m.params_.items()} == published
    assert round(m.log_likelihood_, 1) == loglik


def test_published_gamma_gamma_estimates(sample_summary):
    # Fader, Hardie & Lee (2005), JMR: p = 6.25, q = 3.74, gamma = 15.44
    gg = GammaGammaModel().fit(sample_summary)
    assert {k: round(v, 2) for k, v in gg.params_.items()} == {"p": 6.25, "q": 3.74, "v": 15.44}
    assert gg.n_excluded_ == int((sample_summary["frequency"] == 0).sum())
    p, q, v = gg.params_.values()
    assert gg.mean_spend_ == pytest.approx(p * v / (q - 1))


@pytest.mark.parametrize("model", PURCHASE_MODELS)
def test_same_parameters_as_plain_lifetimes(sample_summary, fitted, model):
    from clvtier.clv.btyd import _lifetimes

    lifetimes = _lifetimes()
    plain = {BetaGeoModel: lifetimes.BetaGeoFitter, ParetoNBDModel: lifetimes.ParetoNBDFitter,
             ModifiedBetaGeoModel: lifetimes.ModifiedBetaGeoFitter}[model]()
    plain.fit(sample_summary["frequency"], sample_summary["recency"], sample_summary["T"])
    ours = fitted[model]
    # the compressed fit sees 1,016 distinct rows instead of 2,357 customers
    assert ours.n_distinct_rows_ < ours.n_customers_ == len(sample_summary)
    rtol = 1e-6 if model is not ParetoNBDModel else 1e-3  # lifetimes fits Pareto/NBD by Nelder-Mead
    np.testing.assert_allclose(list(ours.params_.values()), plain.params_.to_numpy(), rtol=rtol)


@pytest.mark.parametrize("model", PURCHASE_MODELS)
def test_predictions_match_lifetimes_formulas(sample_summary, fitted, model):
    from clvtier.clv.btyd import _lifetimes

    lifetimes = _lifetimes()
    ours = fitted[model]
    plain = {BetaGeoModel: lifetimes.BetaGeoFitter, ParetoNBDModel: lifetimes.ParetoNBDFitter,
             ModifiedBetaGeoModel: lifetimes.ModifiedBetaGeoFitter}[model]()
    plain.params_ = pd.Series(ours.params_)
    f, r, T = (sample_summary[c] for c in ("frequency", "recency", "T"))
    np.testing.assert_allclose(ours.expected_purchases(sample_summary, 26),
                               plain.conditional_expected_number_of_purchases_up_to_time(26, f, r, T),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.probability_alive(sample_summary),
                               plain.conditional_probability_alive(f, r, T), rtol=1e-9)
    if model is ParetoNBDModel:
        none = plain.conditional_probability_of_n_purchases_up_to_time(0, 26, f.to_numpy(), r.to_numpy(),
                                                                       T.to_numpy())
        np.testing.assert_allclose(ours.probability_any_purchase(sample_summary, 26), 1 - none, atol=1e-9)


@pytest.mark.parametrize("model", PURCHASE_MODELS)
def test_probability_any_purchase_by_simulation(fitted, model):
    """P(any purchase in t) against a Monte Carlo draw from the posterior of one customer."""
    m = fitted[model]
    p = m.params_
    x, tx, T, t, n = 3, 20.0, 38.0, 26.0, 400_000
    row = pd.DataFrame({"frequency": [x], "recency": [tx], "T": [T]})
    rng = np.random.default_rng(7)
    alive = rng.random(n) < m.probability_alive(row)[0]
    lam = rng.gamma(p["r"] + x, 1 / (p["alpha"] + T), n)
    first = rng.exponential(1 / lam)
    if model is ParetoNBDModel:  # alive customers may still die before buying
        death = rng.exponential(1 / rng.gamma(p["s"], 1 / (p["beta"] + T), n))
        bought = alive & (first < np.minimum(death, t))
    else:  # BG: death only happens right after a purchase
        bought = alive & (first < t)
    assert m.probability_any_purchase(row, t)[0] == pytest.approx(bought.mean(), abs=3e-3)


EXTREME = pd.DataFrame({
    "frequency": [0, 0, 5000, 3000, 1, 50, 0, 2, 10_000],
    "recency": [0, 0, 70, 0.01, 0.01, 80, 0, 1e-9, 1e-3],
    "T": [0, 1e-6, 70, 0.01, 0.01, 80, 1e4, 1e-9, 1e6],
    "monetary_value": [0, 0, 10, 10, -5, 1e7, 0, 5, 3],
})


@pytest.mark.parametrize("model", PURCHASE_MODELS)
def test_extreme_customers_give_finite_outputs(fitted, sample_summary, model):
    m = fitted[model]
    gg = GammaGammaModel().fit(sample_summary)
    outputs = [m.expected_purchases(EXTREME, 26), m.probability_alive(EXTREME),
               m.probability_any_purchase(EXTREME, 26), gg.expected_spend(EXTREME),
               m.customer_lifetime_value(EXTREME, gg, horizon=52, discount_rate=0.1)]
    for values in outputs:
        assert np.all(np.isfinite(values)) and np.all(values >= 0)
    alive, any_buy = outputs[1], outputs[2]
    assert np.all((alive <= 1) & (any_buy <= alive + 1e-12))
    # recency == T (just bought) with many purchases: almost surely alive and buying again
    assert alive[2] > 0.99 and any_buy[2] > 0.99


@pytest.mark.parametrize("model", PURCHASE_MODELS)
def test_estimator_contract(fitted, sample_summary, model):
    m = fitted[model]
    assert model(time_unit="weeks").fit(sample_summary).params_ == m.params_  # fit returns self
    clone = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(clone.expected_purchases(sample_summary, 10),
                                  m.expected_purchases(sample_summary, 10))
    assert len(pickle.dumps(m)) < 2_000  # no training data on the model
    assert "params_=" in repr(m)
    with pytest.raises(TypeError):
        model("weeks")  # keyword-only hyperparameters


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s.assign(recency=s["T"] + 1), "column 'recency' is larger than T in 2357 rows"),
    (lambda s: s.drop(columns="T"), "required column 'T' is missing"),
    (lambda s: s.assign(frequency=s["frequency"] + 0.5), "column 'frequency' is not a non-negative integer"),
    (lambda s: s.assign(T=np.nan), "column 'T' is missing or negative"),
])
def test_bad_summaries_are_named(sample_summary, change, message):
    with pytest.raises(InputError, match=message):
        BetaGeoModel().fit(change(sample_summary.copy()))


def test_time_unit_mismatch_is_refused(sample_summary):
    with pytest.raises(InputError, match="features are in 'weeks' but the model uses 'days'"):
        BetaGeoModel(time_unit="days").fit(sample_summary)
    with pytest.raises(InputError, match="valid options are 'days', 'weeks'; got 'months'"):
        BetaGeoModel(time_unit="months").fit(sample_summary)


def test_unfitted_model_refuses_to_predict(sample_summary):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        BetaGeoModel().expected_purchases(sample_summary, 4)


def test_compressed_fit_equals_weighted_rows():
    f = np.array([0, 0, 1, 1, 1, 2.0])
    r = np.array([0, 0, 3, 3, 4, 5.0])
    T = np.array([9, 9, 9, 9, 9, 9.0])
    (fd, rd, Td), w, codes = compress(f, r, T)
    assert w.tolist() == [2, 2, 1, 1] and fd.tolist() == [0, 1, 1, 2] and rd.tolist() == [0, 3, 4, 5]
    np.testing.assert_array_equal(fd[codes], f)


def test_parameter_recovery_on_simulated_data():
    """With known truth, 20,000 simulated BG/NBD customers give back the parameters."""
    tx = synthetic_transactions(20_000, seed=3)
    summary = btyd_summary(tx, as_of="2021-06-30", time_unit="weeks")
    m = BetaGeoModel().fit(summary)
    for name, truth in BGNBD_CDNOW.items():
        assert m.params_[name] == pytest.approx(truth, rel=0.25), name
    gg = GammaGammaModel().fit(summary)
    assert gg.params_["p"] == pytest.approx(GAMMA_GAMMA_CDNOW["p"], rel=0.25)


def test_retry_falls_back_to_another_optimiser():
    # BFGS starts at 0.1, where this objective is not finite; Nelder-Mead from 0 succeeds.
    def objective(x):
        return np.inf if x[0] > 0.05 else float(((x + 1) ** 2).sum())

    result = _minimise(objective, np.full(2, 0.1), tol=1e-8, name="test")
    assert result.method != "BFGS" and result.attempts >= 2
    np.testing.assert_allclose(result.x, [-1, -1], atol=1e-4)


def test_no_convergence_is_a_clear_error():
    with pytest.raises(ModelFitError, match="test did not converge after 3 attempts"):
        _minimise(lambda x: np.nan, np.full(2, 0.1), tol=1e-8, name="test")


def test_gamma_gamma_handles_zero_and_negative_spend(sample_summary):
    spoiled = sample_summary.copy()
    repeaters = spoiled.index[spoiled["frequency"] > 0]
    spoiled.loc[repeaters[:40], "monetary_value"] = 0.0
    spoiled.loc[repeaters[40:80], "monetary_value"] = -12.5
    gg = GammaGammaModel().fit(spoiled)
    assert gg.n_excluded_ == int((sample_summary["frequency"] == 0).sum()) + 80
    spend = gg.expected_spend(spoiled)
    assert np.all(np.isfinite(spend)) and np.all(spend > 0)
    assert abs(gg.frequency_spend_corr_) < 0.3


def test_gamma_gamma_refuses_q_at_most_one():
    # Spend per purchase with an infinite mean (Pareto tail index 0.6) cannot give q > 1.
    rng = np.random.default_rng(0)
    n = 800
    frame = pd.DataFrame({"frequency": rng.integers(1, 5, n).astype(float),
                          "monetary_value": (rng.pareto(0.6, n) + 1) * 10})
    with pytest.raises(ModelFitError, match="q = .* <= 1: mean spend is undefined"):
        GammaGammaModel().fit(frame)


def test_customer_lifetime_value(fitted, sample_summary):
    m = fitted[BetaGeoModel]
    spend = np.full(len(sample_summary), 20.0)
    undiscounted = m.customer_lifetime_value(sample_summary, spend, horizon=52, margin=0.5)
    np.testing.assert_allclose(undiscounted, m.expected_purchases(sample_summary, 52) * 20 * 0.5)
    discounted = m.customer_lifetime_value(sample_summary, spend, horizon=52, margin=0.5, discount_rate=0.2)
    assert np.all(discounted <= undiscounted) and np.all(discounted > undiscounted / 1.2 - 1e-9)
    longer = m.customer_lifetime_value(sample_summary, spend, horizon=104, margin=0.5, discount_rate=0.2)
    assert np.all(longer >= discounted)
    with pytest.raises(InputError, match="must be a finite number >= 0"):
        m.customer_lifetime_value(sample_summary, spend, horizon=-1)
