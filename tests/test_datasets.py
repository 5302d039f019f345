import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from clvtier.data.datasets import load_cdnow, synthetic_transactions, write_synthetic
from clvtier.errors import InputError


def test_cdnow_master_and_sample(cdnow):
    assert cdnow.shape == (69_659, 4) and cdnow["customer_id"].nunique() == 23_570
    assert list(cdnow.columns) == ["customer_id", "date", "quantity", "amount"]
    assert (cdnow["date"].min(), cdnow["date"].max()) == (pd.Timestamp("1997-01-01"),
                                                         pd.Timestamp("1998-06-30"))
    sample = load_cdnow(sample=True)
    assert sample.shape == (6_919, 4) and sample["customer_id"].nunique() == 2_357
    assert set(sample["customer_id"]) <= set(cdnow["customer_id"])


def test_loading_cdnow_does_not_import_lifetimes():
    # lifetimes changes pandas options and warning filters on import.
    code = ("import sys; from clvtier.data.datasets import load_cdnow; load_cdnow(); "
            "print('lifetimes' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("model", ["bgnbd_gg", "mbgnbd_gg", "pareto_nbd_gg"])
def test_synthetic_is_deterministic_and_sane(model):
    one = synthetic_transactions(2_000, model=model, seed=7, with_profit=True,
                                 with_satisfaction=True)
    two = synthetic_transactions(2_000, model=model, seed=7, with_profit=True,
                                 with_satisfaction=True)
    pd.testing.assert_frame_equal(one, two)
    assert not one.equals(synthetic_transactions(2_000, model=model, seed=8, with_profit=True,
                                                 with_satisfaction=True))
    assert one["customer_id"].nunique() == 2_000  # everyone makes a first purchase
    assert one["date"].min() >= pd.Timestamp("2020-01-01")
    assert one["date"].max() < pd.Timestamp("2020-01-01") + pd.Timedelta(weeks=78)
    assert (one["amount"] > 0).all() and (one["profit"] <= one["amount"]).all()
    assert one["satisfaction"].between(1, 5).all()
    assert one.groupby("customer_id")["date"].is_monotonic_increasing.all()


def test_synthetic_recovers_its_spend_and_rate_parameters():
    tx, truth = synthetic_transactions(50_000, seed=3, return_truth=True)
    # Gamma-Gamma: E[spend] = p * gamma / (q - 1) = 6.25 * 15.44 / 2.74 = 35.2
    assert tx["amount"].mean() == pytest.approx(6.25 * 15.44 / 2.74, rel=0.05)
    # BG/NBD draws: lambda ~ Gamma(0.243, 4.414) has mean 0.0551 per week
    assert truth["lambda"].mean() == pytest.approx(0.243 / 4.414, rel=0.05)
    # MBG/NBD lets customers die right after their first purchase: fewer repeat purchases
    mbg = synthetic_transactions(50_000, model="mbgnbd_gg", seed=3)
    assert len(mbg) < len(tx)


def test_write_synthetic_in_chunks_is_deterministic(tmp_path):
    a = write_synthetic(tmp_path / "a.parquet", 2_500, chunk_customers=1_000, seed=1)
    b = write_synthetic(tmp_path / "b.csv", 2_500, chunk_customers=1_000, seed=1)
    pa_, pb = pd.read_parquet(tmp_path / "a.parquet"), pd.read_csv(tmp_path / "b.csv")
    assert a["rows"] == b["rows"] == len(pa_) == len(pb)
    assert pa_["customer_id"].nunique() == 2_500 and pa_["customer_id"].max() == 2_500
    np.testing.assert_allclose(pa_["amount"], pb["amount"])
    assert list(tmp_path.iterdir()) and not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize("kwargs, message", [
    ({"model": "nbd"}, "valid options are bgnbd_gg, mbgnbd_gg, pareto_nbd_gg; got 'nbd'"),
    ({"n_customers": 0}, "must be at least 1"),
    ({"observation_weeks": 5}, "must exceed acquisition_weeks"),
])
def test_synthetic_bad_arguments(kwargs, message):
    kwargs = {"n_customers": 10, **kwargs}
    n = kwargs.pop("n_customers")
    with pytest.raises(InputError, match=message):
        synthetic_transactions(n, **kwargs)
