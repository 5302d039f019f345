"""Demo data: CDNOW from the installed ``lifetimes`` package, and a BTYD simulator."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

from clvtier.errors import InputError

#: Published CDNOW estimates (Fader, Hardie & Lee 2005), per week: defaults of the simulator.
BGNBD_CDNOW = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PARETO_CDNOW = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}
GAMMA_GAMMA_CDNOW = {"p": 6.25, "q": 3.74, "gamma": 15.44}
#: Purchase processes, named as the model catalogue names the BTYD models fitted to them.
MODELS = ("bgnbd_gg", "mbgnbd_gg", "pareto_nbd_gg")


def cdnow_path(sample: bool = False) -> Path:
    """Path of the CDNOW file shipped with ``lifetimes`` (found without importing lifetimes,
    whose import changes pandas options and warning filters)."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("lifetimes", "package not installed; CDNOW ships inside it")
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "datasets" / ("CDNOW_sample.txt" if sample else "CDNOW_master.txt")
    if not path.exists():
        raise InputError(str(path), "CDNOW file missing from the lifetimes installation")
    return path


def load_cdnow(sample: bool = False) -> pd.DataFrame:
    """CDNOW transactions: ``customer_id, date, quantity, amount``.

    Parameters
    ----------
    sample : bool, default=False
        False: the full cohort of 23,570 customers who first bought in Q1 1997 (69,659 rows,
        to 1998-06-30). True: the 2,357-customer sample of Fader, Hardie & Lee (2005) (6,919
        rows); ``customer_id`` is then the master id of each sampled customer.
    """
    path = cdnow_path(sample)
    if sample:
        names = ["customer_id", "sample_id", "date", "quantity", "amount"]
        frame = pd.read_csv(path, sep=r"\s+", header=None, names=names,
                            dtype={"date": str}).drop(columns="sample_id")
    else:
        frame = pd.read_csv(path, sep=r"\s+", dtype={"date": str})
        frame.columns = ["customer_id", "date", "quantity", "amount"]
    frame["date"] = pd.to_datetime(frame["date"], format="%Y%m%d")
    frame["customer_id"] = frame["customer_id"].astype("int64")
    frame["quantity"] = frame["quantity"].astype("int64")
    frame["amount"] = frame["amount"].astype("float64")
    return frame


def synthetic_transactions(n_customers: int, *, model: str = "bgnbd_gg",
                           params: dict | None = None, spend_params: dict | None = None,
                           start: str = "2020-01-01", acquisition_weeks: float = 12,
                           observation_weeks: float = 78, with_profit: bool = False,
                           with_satisfaction: bool = False, seed: int = 0,
                           id_offset: int = 0, return_truth: bool = False):
    """Draw transactions from a BTYD purchase process with Gamma-Gamma spend.

    Each customer makes a first purchase on a day drawn uniformly in the first
    ``acquisition_weeks``, then buys as a Poisson process with rate ``lambda ~ Gamma(r, alpha)``
    (per week) while alive. Death: BG/NBD, after each repeat purchase with probability
    ``p ~ Beta(a, b)`` (Fader, Hardie & Lee 2005, eq. 1-2); MBG/NBD, also right after the first
    purchase (Batislam et al. 2007); Pareto/NBD, after an exponential lifetime with rate
    ``mu ~ Gamma(s, beta)`` (Schmittlein et al. 1987). Each purchase's spend is
    ``Gamma(p, nu)`` with ``nu ~ Gamma(q, gamma)`` per customer (Fader, Hardie & Lee 2005, JMR).
    Observation ends ``observation_weeks`` after ``start``.

    Parameters
    ----------
    n_customers : int
    model : {"bgnbd_gg", "mbgnbd_gg", "pareto_nbd_gg"}, default="bgnbd_gg"
    params, spend_params : dict, optional
        Purchase and spend parameters; default the published CDNOW estimates.
    with_profit : bool
        Add ``profit`` (amount times a per-customer margin ~ Beta(2, 5)).
    with_satisfaction : bool
        Add ``satisfaction`` (1-5 per customer, higher for customers less likely to leave).
    seed : int
    return_truth : bool
        Also return the per-customer latent parameters (``lambda``, ``p`` or ``mu``, ``nu``).

    Returns
    -------
    DataFrame ``customer_id, date, amount[, profit][, satisfaction]`` sorted by customer and
    date; with ``return_truth``, a tuple ``(transactions, truth)``.
    """
    if model not in MODELS:
        raise InputError("model", f"valid options are {', '.join(MODELS)}; got {model!r}")
    if n_customers < 1:
        raise InputError("n_customers", f"must be at least 1; got {n_customers}")
    if observation_weeks <= acquisition_weeks:
        raise InputError("observation_weeks", "must exceed acquisition_weeks")
    params = {**(PARETO_CDNOW if model == "pareto_nbd_gg" else BGNBD_CDNOW), **(params or {})}
    spend = {**GAMMA_GAMMA_CDNOW, **(spend_params or {})}
    rng = np.random.default_rng(seed)
    n = int(n_customers)

    lam = rng.gamma(params["r"], 1.0 / params["alpha"], n)
    birth_day = rng.integers(0, max(1, int(acquisition_weeks * 7)), n)
    horizon = (observation_weeks * 7 - birth_day) / 7.0  # weeks from first purchase to the end
    max_repeats = np.full(n, np.iinfo(np.int64).max)
    if model == "pareto_nbd_gg":
        mu = rng.gamma(params["s"], 1.0 / params["beta"], n)
        with np.errstate(divide="ignore"):
            horizon = np.minimum(horizon, rng.standard_exponential(n) / mu)
        churn = mu
    else:
        p = rng.beta(params["a"], params["b"], n)
        # Number of repeat purchases before death: BG/NBD may die after each repeat purchase
        # (1, 2, ...); MBG/NBD also right after the first purchase (0, 1, ...).
        # p can underflow to 0 with a tiny `a` (no dropout): such a customer never dies
        alive = p > 1e-12
        max_repeats[alive] = rng.geometric(p[alive]) - (1 if model == "mbgnbd_gg" else 0)
        churn = p
    nu = rng.gamma(spend["q"], 1.0 / spend["gamma"], n)

    who = [np.arange(n)]
    when = [np.zeros(n)]
    active = np.flatnonzero(max_repeats > 0)
    t = np.zeros(active.size)
    done = np.zeros(active.size, dtype=np.int64)
    with np.errstate(divide="ignore"):
        while active.size:
            t = t + rng.standard_exponential(active.size) / lam[active]
            keep = (t <= horizon[active]) & (done < max_repeats[active])
            active, t, done = active[keep], t[keep], done[keep] + 1
            who.append(active)
            when.append(t)
            more = done < max_repeats[active]
            active, t, done = active[more], t[more], done[more]
    who = np.concatenate(who)
    days = birth_day[who] + np.floor(np.concatenate(when) * 7).astype(np.int64)
    order = np.lexsort((days, who))
    who, days = who[order], days[order]

    amount = np.maximum(np.round(rng.gamma(spend["p"], 1.0 / nu[who]), 2), 0.01)
    frame = pd.DataFrame({
        "customer_id": who.astype(np.int64) + 1 + id_offset,
        "date": pd.Timestamp(start) + pd.to_timedelta(days, unit="D"),
        "amount": amount,
    })
    if with_profit:
        margin = rng.beta(2.0, 5.0, n)
        frame["profit"] = np.round(amount * margin[who], 2)
    if with_satisfaction:
        rank = pd.Series(churn).rank(pct=True).to_numpy()
        score = np.clip(np.round(5 - 4 * rank + rng.normal(0, 0.8, n)), 1, 5).astype(np.int64)
        frame["satisfaction"] = score[who]
    if not return_truth:
        return frame
    truth = pd.DataFrame({"customer_id": np.arange(n, dtype=np.int64) + 1 + id_offset,
                          "lambda": lam, "p" if model != "pareto_nbd_gg" else "mu": churn, "nu": nu})
    return frame, truth


def write_synthetic(path, n_customers: int, *, chunk_customers: int = 500_000, seed: int = 0,
                    **kwargs) -> dict:
    """Write synthetic transactions to CSV or Parquet in chunks of customers, atomically.

    Chunk ``i`` draws from ``SeedSequence(seed).spawn(...)[i]``, so a given seed and chunk size
    give the same file. Memory is bounded by one chunk. Returns counts of customers and rows.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from clvtier.data.io import atomic_output, output_format

    fmt = output_format(path)
    n_chunks = -(-int(n_customers) // chunk_customers)
    seeds = np.random.SeedSequence(seed).spawn(n_chunks)
    rows = 0
    with atomic_output(path) as tmp:
        writer = None
        try:
            for i, child in enumerate(seeds):
                size = min(chunk_customers, n_customers - i * chunk_customers)
                frame = synthetic_transactions(size, seed=int(child.generate_state(1)[0]),
                                               id_offset=i * chunk_customers, **kwargs)
                table = pa.Table.from_pandas(frame, preserve_index=False)
                table = table.set_column(1, "date", table["date"].cast(pa.date32()))
                if writer is None:
                    writer = (pq.ParquetWriter(tmp, table.schema) if fmt == "parquet"
                              else pacsv.CSVWriter(tmp, table.schema))
                writer.write_table(table)
                rows += len(frame)
        finally:
            if writer is not None:
                writer.close()
    return {"customers": int(n_customers), "rows": rows, "path": str(path)}


#: Non-product codes of the line-item generator: exclude them (``exclude={"StockCode": [...]}``).
FEE_CODES = ("POST", "BANK CHARGES")


def synthetic_line_items(n_customers: int, *, seed: int = 0, start: str = "2010-12-01",
                         acquisition_weeks: float = 12, observation_weeks: float = 52,
                         guest_share: float = 0.25, postage_share: float = 0.15,
                         fee_share: float = 0.01, cancel_share: float = 0.1,
                         duplicate_share: float = 0.01, return_truth: bool = False):
    """A line-item export like an online retailer's: one row per product line, as text.

    Orders come from :func:`synthetic_transactions` (BG/NBD purchase occasions, one order each).
    Every order has 1-6 product lines (distinct codes, a quantity and the code's unit price);
    ``postage_share`` of orders also carry a ``POST`` line and ``fee_share`` a ``BANK CHARGES``
    line (see :data:`FEE_CODES`). ``cancel_share`` of orders are cancelled in part 0-30 days later
    by an invoice ``C`` + the order's number with a negative quantity of one line; a few returns
    of customers with no purchase at all ("orphans") reference orders outside the file.
    ``guest_share`` more orders have no customer id, and ``duplicate_share`` of product lines are
    exported twice. Customer ids are written like ``17850.0``; dates like ``12/1/2010 8:26``
    (``date_format="%m/%d/%Y %H:%M"``).

    Columns: ``InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID,
    Country``, in invoice order.

    With ``return_truth``, also returns ``(customers, counts)``: per customer id (as the integer
    text) the ``orders`` and the net ``revenue`` (product lines less cancellations, duplicates
    counted once), and the expected row counts: ``lines``, ``duplicate``, ``excluded``,
    ``missing_customer_id``, ``returns``, ``returns_netted``, ``unmatched_return``, and
    ``unmatched_amount``.
    """
    orders = synthetic_transactions(n_customers, seed=seed, start=start,
                                    acquisition_weeks=acquisition_weeks,
                                    observation_weeks=observation_weeks)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    n_guest = int(round(len(orders) * guest_share))
    customer = np.concatenate([orders["customer_id"].to_numpy() + 12345, np.zeros(n_guest, np.int64)])
    day = np.concatenate([orders["date"].to_numpy(),
                          rng.choice(orders["date"].to_numpy(), n_guest)]).astype("datetime64[m]")
    day = day + rng.integers(8 * 60, 19 * 60, day.size).astype("timedelta64[m]")
    by_time = np.argsort(day, kind="stable")
    customer, day = customer[by_time], day[by_time]
    n_orders = day.size
    invoice = 536365 + np.arange(n_orders)

    codes = np.array([f"{20000 + 37 * i}" for i in range(300)])
    prices = np.round(rng.gamma(2.0, 2.0, codes.size) + 0.29, 2)
    k = rng.integers(1, 7, n_orders)
    line_order = np.repeat(np.arange(n_orders), k)
    within = np.arange(line_order.size) - np.repeat(np.cumsum(k) - k, k)
    code = (rng.integers(0, codes.size, n_orders)[line_order] + within) % codes.size
    lines = pd.DataFrame({"order": line_order, "code": codes[code], "price": prices[code],
                          "quantity": rng.choice([1, 2, 3, 4, 6, 12, 24], line_order.size),
                          "kind": "product", "shift": 0})
    buyers = np.flatnonzero(customer > 0)

    def extra(share, stock, price, kind):
        chosen = buyers[rng.random(buyers.size) < share]
        return pd.DataFrame({"order": chosen, "code": stock, "price": price,
                             "quantity": rng.integers(1, 4, chosen.size), "kind": kind, "shift": 0})

    # cancellations: one line of an order, part or all of its quantity, 0-30 days later
    cancelled = buyers[rng.random(buyers.size) < cancel_share]
    products = lines[lines["order"].isin(cancelled)].groupby("order").head(1)
    cancels = products.assign(quantity=-rng.integers(1, products["quantity"].to_numpy() + 1),
                              kind="return", shift=rng.integers(0, 31, len(products)))
    copies = lines[(rng.random(len(lines)) < duplicate_share)
                   & (customer[lines["order"]] > 0)].assign(kind="copy")
    lines = pd.concat([lines, extra(postage_share, "POST", 18.0, "fee"),
                       extra(fee_share, "BANK CHARGES", 15.0, "fee"), cancels, copies],
                      ignore_index=True)
    lines = lines.sort_values(["order", "shift"], kind="stable").reset_index(drop=True)

    when = day[lines["order"]] + lines["shift"].to_numpy().astype("timedelta64[D]")
    number = invoice[lines["order"]].astype(str)
    who = customer[lines["order"]]
    n_orphans = max(1, n_customers // 200)  # returns of orders outside the file
    orphan_ids = 12345 + n_customers + 1 + np.arange(n_orphans)
    export = pd.DataFrame({
        "InvoiceNo": np.where(lines["kind"] == "return", np.char.add("C", number), number),
        "StockCode": lines["code"].to_numpy(),
        "Description": np.where(lines["code"] == "POST", "POSTAGE",
                                np.char.add("ITEM ", lines["code"].to_numpy().astype(str))),
        "Quantity": lines["quantity"].to_numpy(),
        "InvoiceDate": pd.DatetimeIndex(when),
        "UnitPrice": lines["price"].to_numpy(),
        "CustomerID": np.where(who > 0, np.char.add(who.astype(str), ".0"), ""),
        "Country": "United Kingdom",
    })
    orphans = pd.DataFrame({
        "InvoiceNo": [f"C{400000 + i}" for i in range(n_orphans)],
        "StockCode": codes[np.arange(n_orphans) % codes.size],
        "Description": "ITEM RETURNED", "Quantity": -rng.integers(1, 6, n_orphans),
        "InvoiceDate": pd.DatetimeIndex(day[rng.integers(0, n_orders, n_orphans)]),
        "UnitPrice": prices[np.arange(n_orphans) % codes.size],
        "CustomerID": [f"{i}.0" for i in orphan_ids],
        "Country": "United Kingdom"})
    export = pd.concat([export, orphans], ignore_index=True)
    export = export.sort_values("InvoiceDate", kind="stable").reset_index(drop=True)
    stamp = export["InvoiceDate"]
    export["InvoiceDate"] = (stamp.dt.month.astype(str) + "/" + stamp.dt.day.astype(str) + "/"
                             + stamp.dt.year.astype(str) + " " + stamp.dt.hour.astype(str) + ":"
                             + stamp.dt.strftime("%M"))
    if not return_truth:
        return export

    kind = lines["kind"].to_numpy()
    counted = np.isin(kind, ["product", "return"]) & (who > 0)
    truth = pd.DataFrame({"customer_id": who[counted].astype(str), "invoice": number[counted],
                          "purchase": kind[counted] == "product",
                          "amount": (lines["quantity"] * lines["price"]).to_numpy()[counted]})
    customers = pd.DataFrame({
        "orders": truth[truth["purchase"]].groupby("customer_id")["invoice"].nunique(),
        "revenue": truth.groupby("customer_id")["amount"].sum()}).reset_index()
    orphan_amount = float((orphans["Quantity"] * orphans["UnitPrice"]).sum())
    counts = {"lines": len(export), "duplicate": int((kind == "copy").sum()),
              "excluded": int((kind == "fee").sum()),
              "missing_customer_id": int(((who == 0) & (kind != "fee")).sum()),
              "returns": int((kind == "return").sum()) + n_orphans,
              "returns_netted": int((kind == "return").sum()), "unmatched_return": n_orphans,
              "unmatched_amount": orphan_amount}
    return export, customers, counts
