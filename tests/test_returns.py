"""Returns: netted against the order they take back and earlier purchases ('net-earlier'), and
every amount accounted for under every policy."""

import datetime as dt

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clvtier.data import RETURNS_POLICIES, load_transactions
from clvtier.errors import InputError
from clvtier.features import customer_features

# customer, date, order, amount (a worked example: see test_net_earlier_by_hand)
ROWS = [
    ("1", "2020-01-01", "A1", 100.0),
    ("1", "2020-01-05", "A2", 50.0),
    ("1", "2020-01-10", "CA1", -30.0),  # names A1: 30 off A1
    ("1", "2020-01-11", "C9", -60.0),   # names nothing: 50 off A2 (most recent), 10 off A1
    ("2", "2020-01-01", "B1", 20.0),
    ("2", "2020-06-01", "C8", -20.0),   # B1 is 152 days earlier, outside the 90-day window
    ("3", "2020-01-03", "D1", 10.0),
    ("3", "2020-01-04", "CD1", -25.0),  # takes back D1's 10; 15 left over
]


def _frame(rows=ROWS):
    return pd.DataFrame(rows, columns=["customer_id", "date", "order_id", "amount"])


def _spend(tx, as_of):
    features = customer_features(tx, as_of=as_of)
    return dict(zip(features["customer_id"], features["monetary_total"], strict=True))


def test_net_earlier_by_hand():
    tx = load_transactions(_frame(), returns="net-earlier", return_prefix="C")
    netting = tx.con.sql("SELECT source_line, date, returned, amount FROM netting "
                         "ORDER BY source_line, date DESC").fetchall()
    day = dt.date.fromisoformat
    assert netting == [(3, day("2020-01-01"), day("2020-01-10"), -30.0),
                       (4, day("2020-01-05"), day("2020-01-11"), -50.0),
                       (4, day("2020-01-01"), day("2020-01-11"), -10.0),
                       (8, day("2020-01-03"), day("2020-01-04"), -10.0)]
    # a return counts from its own date: features as of an earlier day do not see it
    assert _spend(tx, "2020-01-09") == {"1": 150.0, "2": 20.0, "3": 0.0}
    assert _spend(tx, "2020-01-10") == {"1": 120.0, "2": 20.0, "3": 0.0}
    assert _spend(tx, "2020-06-30") == {"1": 60.0, "2": 20.0, "3": 0.0}
    # the purchases stay purchases (the customer came); only their spend drops
    assert customer_features(tx, as_of="2020-06-30")["frequency_count"].tolist() == [2, 1, 1]

    rejects = tx.rejects()
    assert rejects["reason"].tolist() == ["unmatched_return", "unmatched_return"]
    assert rejects["amount_left"].tolist() == [-20.0, -15.0]
    acc = tx.accounting("2020-01-10")
    assert acc.balanced() and acc.returns_netted == 2 and acc.quarantined == {"unmatched_return": 2}
    assert acc.amounts == {"read": 45.0, "used": 180.0, "netted": -40.0, "after_as_of": -60.0,
                           "quarantined": -35.0}
    assert "40.00 of revenue taken back" in acc.format()


def test_without_a_reference_the_most_recent_purchase_goes_first():
    tx = load_transactions(_frame(), returns="net-earlier")  # CA1 no longer names A1
    netting = tx.con.sql("SELECT source_line, date, amount FROM netting WHERE source_line = 3").fetchall()
    assert netting == [(3, dt.date(2020, 1, 5), -30.0)]
    assert _spend(tx, "2020-06-30")["1"] == 60.0  # the same total, taken from other orders


def test_reference_column_and_window():
    rows = [("1", "2020-01-01", "A1", 100.0, None), ("1", "2020-03-20", "A2", 40.0, None),
            ("1", "2020-05-01", "R1", -70.0, "A1")]
    frame = pd.DataFrame(rows, columns=["customer_id", "date", "order_id", "amount", "orig"])
    # named order A1 lies outside the 90-day window, and a named order is taken back anyway
    tx = load_transactions(frame, returns="net-earlier", columns={"original_order_id": "orig"})
    assert tx.con.sql("SELECT date, amount FROM netting").fetchall() == [(dt.date(2020, 1, 1), -70.0)]
    # with a 10-day window and no reference nothing is in reach
    tx = load_transactions(frame.drop(columns="orig"), returns="net-earlier", return_window=10)
    assert tx.rejects()["reason"].tolist() == ["unmatched_return"]
    tx = load_transactions(frame.drop(columns="orig"), returns="net-earlier", return_window=60)
    assert tx.con.sql("SELECT date, amount FROM netting").fetchall() == [(dt.date(2020, 3, 20), -40.0)]
    assert tx.rejects()["amount_left"].tolist() == [-30.0]


def test_return_options_need_their_policy_and_orders():
    with pytest.raises(InputError, match="only with returns='net-earlier'"):
        load_transactions(_frame(), returns="net", return_prefix="C")
    with pytest.raises(InputError, match="no order_id column"):
        load_transactions(_frame().drop(columns="order_id"), returns="net-earlier", return_prefix="C")


_row = st.tuples(st.sampled_from("abc"), st.integers(0, 60),
                 st.sampled_from(["o1", "o2", "o3", "Co1", "Co2", "x"]),
                 st.one_of(st.integers(-5000, 5000).map(lambda c: c / 100),
                           st.sampled_from([float("nan"), 1e300, 0.0])),
                 st.sampled_from([None, "POST"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(_row, min_size=1, max_size=40), policy=st.sampled_from(RETURNS_POLICIES),
       as_of_day=st.integers(0, 60), window=st.integers(0, 30))
def test_every_amount_is_accounted_for(rows, policy, as_of_day, window):
    start = dt.date(2020, 1, 1)
    frame = pd.DataFrame({"customer_id": [r[0] for r in rows],
                          "date": [(start + dt.timedelta(days=r[1])).isoformat() for r in rows],
                          "order_id": [r[2] for r in rows], "amount": [r[3] for r in rows],
                          "code": [r[4] or "item" for r in rows]})
    extra = {"return_prefix": "C", "return_window": window} if policy == "net-earlier" else {}
    try:
        tx = load_transactions(frame, returns=policy, exclude={"code": ["POST"]}, **extra)
    except InputError:  # every row quarantined
        return
    as_of = start + dt.timedelta(days=as_of_day)
    acc = tx.accounting(as_of)
    assert acc.balanced()
    a = acc.amounts
    valid = frame["amount"].where(frame["amount"].abs() <= 1e15).sum()
    assert a["read"] == pytest.approx(valid, abs=1e-6)
    assert a["used"] + a["netted"] + a["after_as_of"] + a["quarantined"] == pytest.approx(a["read"], abs=1e-6)
    # the features see exactly the used purchases less the returns netted by as_of
    if as_of >= tx.first_date:
        features = customer_features(tx, as_of=as_of)
        assert features["monetary_total"].sum() == pytest.approx(a["used"] + a["netted"], abs=1e-6)
    # every valid return line is netted (a used row) or quarantined, never lost
    returns = tx.con.sql("SELECT count(*) FILTER (WHERE status = 'ok'), "
                         "count(*) FILTER (WHERE status <> 'ok') "
                         "FROM tx WHERE amount < 0 AND abs(amount) <= 1e15").fetchall()[0]
    assert sum(returns) == int((frame["amount"] < 0).sum())
    if policy in ("net", "net-earlier"):
        assert returns[0] == tx.returns_netted


# Hostile rows for reading a Parquet file in place: bad values, returns netted and not, exact
# copies, rows after as_of and an excluded postage line.
_HOSTILE = [
    *ROWS,
    ("1", "2020-01-05", "A2", 50.0),     # an exact copy of a purchase
    ("4", "2020-02-01", "E1", float("nan")),
    ("", "2020-02-01", "E2", 5.0),
    ("5", "2020-02-02", "E3", 1e300),
    ("5", "2020-02-03", "E4", 7.0),
    ("5", "2020-02-03", "E4", 7.0),
    ("5", "2020-02-03", "CE4", -7.0),
    ("6", "2020-09-01", "F1", 3.0),      # after as_of
]


@pytest.mark.parametrize("policy", RETURNS_POLICIES)
@pytest.mark.parametrize("drop_duplicates", [False, True])
def test_a_parquet_file_read_in_place_gives_what_a_copy_gives(tmp_path, policy, drop_duplicates):
    frame = _frame(_HOSTILE)
    frame["code"] = ["POST" if i == 2 else "item" for i in range(len(frame))]
    path = tmp_path / "tx.parquet"
    frame.to_parquet(path, index=False)
    extra = {"return_prefix": "C"} if policy == "net-earlier" else {}
    loads = [load_transactions(path, returns=policy, drop_duplicates=drop_duplicates,
                               exclude={"code": ["POST"]}, in_place=in_place, **extra)
             for in_place in (False, True)]
    copy, in_place = loads
    kind = in_place.con.sql("SELECT count(*) FROM duckdb_views() WHERE view_name = 'tx'").fetchall()[0][0]
    # a view until a policy changes some row's status (here: any netting or duplicate flag)
    assert kind == (policy in ("keep", "quarantine") and not drop_duplicates)
    assert in_place.accounting("2020-06-30").as_dict() == copy.accounting("2020-06-30").as_dict()
    pd.testing.assert_frame_equal(in_place.rejects(), copy.rejects())
    for sql in ("SELECT * FROM day ORDER BY ALL", "SELECT * FROM netting ORDER BY ALL",
                "SELECT * EXCLUDE (_row_hash) FROM tx ORDER BY source_line"):
        pd.testing.assert_frame_equal(in_place.query(sql), copy.query(sql))
    pd.testing.assert_frame_equal(customer_features(in_place, as_of="2020-06-30"),
                                  customer_features(copy, as_of="2020-06-30"))
    assert in_place.fingerprint() == copy.fingerprint()


def test_only_parquet_is_read_in_place(tmp_path):
    path = tmp_path / "tx.csv"
    _frame().to_csv(path, index=False)
    tx = load_transactions(path, returns="keep", in_place=True)
    assert tx.con.sql("SELECT count(*) FROM duckdb_views() WHERE view_name = 'tx'").fetchall()[0][0] == 0
