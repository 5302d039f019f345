"""Command-line interface. Each command parses options, calls one library function, prints.

Errors the user can fix (bad file, missing column, bad option) print one line on stderr and
exit with code 2; nothing else is caught, so a real bug still shows its traceback.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="clvtier",
    help="Customer value analysis and tiering: features, CLV and churn models, segmentations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_INPUT = 2


#: Library names of options (an InputError's source) and the flags that set them.
_FLAGS = {
    "as_of": "--as-of", "columns": "--columns", "delimiter": "--delimiter", "decimal": "--decimal",
    "encoding": "--encoding", "sheet": "--sheet", "date_format": "--date-format", "returns": "--returns",
    "return_window": "--return-window", "return_prefix": "--return-prefix",
    "drop_duplicates": "--drop-duplicates", "max_amount": "--max-amount", "method": "--method",
    "map_path": "--map", "time_unit": "--time-unit", "chunk_size": "--chunk-size",
    "memory_limit": "--memory-limit", "drift_threshold": "--drift-threshold", "output": "--output",
}


@contextlib.contextmanager
def _clean_errors():
    from clvtier.errors import ClvtierError, InputError

    try:
        yield
    except InputError as exc:
        typer.echo(f"clvtier: error: {_FLAGS.get(exc.source, exc.source)}: {exc.problem}", err=True)
        raise typer.Exit(EXIT_INPUT) from None
    except ClvtierError as exc:
        typer.echo(f"clvtier: error: {exc}", err=True)
        raise typer.Exit(EXIT_INPUT) from None
    except OSError as exc:  # permission denied, disk full, ... on a user-named path
        where = f"{exc.filename}: " if exc.filename else ""
        typer.echo(f"clvtier: error: {where}{exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_INPUT) from None


class _Stopped(BaseException):
    """SIGTERM turned into an exception, so open outputs are removed on the way out (Ctrl-C's
    KeyboardInterrupt already is one)."""


@contextlib.contextmanager
def _stop_on_sigterm():
    import signal

    received = []

    def stop(signum, frame):
        received.append(signum)
        raise _Stopped(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except _Stopped as exc:
        typer.echo(f"clvtier: stopped by signal {exc.args[0]}", err=True)
        raise typer.Exit(128 + exc.args[0]) from None
    except Exception:  # noqa: BLE001 - DuckDB turns our signal into its own "Query interrupted"
        if not received:
            raise
        typer.echo(f"clvtier: stopped by signal {received[0]}", err=True)
        raise typer.Exit(128 + received[0]) from None
    except KeyboardInterrupt:
        typer.echo("clvtier: interrupted", err=True)
        raise typer.Exit(128 + signal.SIGINT) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


InputOpt = Annotated[str, typer.Option("--input", "-i", help="Transactions: .csv/.txt/.tsv, "
                                       ".parquet or .xlsx; with --engine spark a Parquet or CSV path or URI "
                                       "(file, folder, hdfs://, s3a://...) or table:<db.table>.",
                                       show_default=False)]

EngineOpt = Annotated[str, typer.Option(
    help="duckdb: this machine (default). spark: Apache Spark (pip install 'clvtier\\[spark]', Java 17), "
         "same answers; outputs are Parquet datasets (folders).")]
MasterOpt = Annotated[str | None, typer.Option(
    "--spark-master", help="Spark master URL for --engine spark (spark://host:7077, yarn, local[4]). "
                           "Default: the one spark-submit gives, else local[*].")]

RawCsvOpt = Annotated[bool, typer.Option(
    "--raw-csv",
    help="Write CSV text cells as they are; by default a text cell starting with = + - @ tab or CR "
         "gets a leading ' so spreadsheets show it instead of running it (Parquet keeps raw values).")]

#: The reader options of every command that reads transactions, declared once (the fields of
#: clvtier.data.LoadSpec; --keep-ids sets normalize_ids=False); :func:`_load_options` adds them
#: to a command as its ``spec``.
LOAD_OPTIONS = {
    "columns": (str | None, typer.Option(
        help="Map clvtier names to your columns, e.g. 'customer_id=客户ID,date=交易日期,"
             "amount=交易金额'. Required: customer_id, date, amount (default: columns of those names). "
             "Line items without an amount: map quantity and unit_price (and discount) and amount = "
             "quantity x unit_price - discount. Optional: order_id (lines of one order are one "
             "purchase), quantity, profit, satisfaction; any other name=column adds a numeric "
             "covariate."), None),
    "delimiter": (str | None, typer.Option(help="CSV delimiter (default: detected)."), None),
    "decimal": (str, typer.Option(
        help="Decimal mark of numbers in text files: auto, '.' or ','. 'auto' picks ',' only when "
             "the delimiter is not ',' and amounts have commas but no dots."), "auto"),
    "encoding": (str | None, typer.Option(
        help="Text encoding, e.g. gb18030 or latin-1 (default: UTF-8, with or without BOM; other "
             "encodings are not guessed)."), None),
    "sheet": (str | None, typer.Option(help="Excel sheet name or 0-based index (default: the first "
                                            "sheet)."), None),
    "date_format": (str | None, typer.Option(
        "--date-format", help="strftime format of dates, e.g. '%d/%m/%Y' or '%Y%m%d', or 'excel' for "
                              "Excel serial numbers in a text file (default: ISO dates/times; serials "
                              "only in .xlsx cells)."), None),
    "returns": (str, typer.Option(
        help="Negative amounts are returns. 'net': subtract them from the customer's purchases "
             "that day (unmatched or excess returns are quarantined). 'net-earlier': subtract each "
             "from the order it takes back (--return-prefix or an original_order_id column), then "
             "from the customer's purchases of the --return-window days before it, most recent "
             "first, from the return's date on; what is left is quarantined as unmatched_return "
             "with the amount left over. 'keep': use them as they are. 'quarantine': quarantine "
             "them."), "net"),
    "return_window": (int, typer.Option(
        "--return-window", metavar="DAYS",
        help="With --returns net-earlier: days before a return in which it reduces purchases."), 90),
    "return_prefix": (str | None, typer.Option(
        "--return-prefix",
        help="With --returns net-earlier and order_id mapped: a return whose order id is this prefix "
             "plus an order's id takes back that order first, e.g. C for C536379 -> 536379."), None),
    "drop_duplicates": (bool, typer.Option(
        "--drop-duplicates", help="Quarantine exact duplicate rows (they are always counted)."), False),
    "max_amount": (float | None, typer.Option(
        help="Quarantine rows whose absolute amount exceeds this (a positive number)."), None),
    "exclude": (list[str] | None, typer.Option(
        metavar="COLUMN=VALUES",
        help="COLUMN=VALUE[,VALUE...]: rows whose column holds one of the values are no purchases "
             "(postage, fees, adjustments) and are quarantined as 'excluded'; repeatable; the column "
             "need not be mapped, e.g. --exclude StockCode=POST,M,BANK CHARGES."), None),
    "keep_ids": (bool, typer.Option(
        "--keep-ids",
        help="Keep customer ids as written; by default ids exported as 17850.0 (every id integral "
             "with a trailing .0) are read as 17850."), False),
}


def _load_options(command):
    """Give ``command`` the reader options of :data:`LOAD_OPTIONS`; it receives them as one
    ``spec`` argument (a dict, turned into a LoadSpec by :func:`_spec` inside its error handling)."""
    signature = inspect.signature(command, eval_str=True)
    kept = [p for p in signature.parameters.values() if p.name != "spec"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                          annotation=Annotated[kind, option])
        for name, (kind, option, default) in LOAD_OPTIONS.items()
    ]

    @functools.wraps(command)
    def wrapper(**kwargs):
        kwargs["spec"] = {name: kwargs.pop(name) for name in LOAD_OPTIONS}
        return command(**kwargs)

    wrapper.__signature__ = signature.replace(parameters=kept + added)
    return wrapper


def _spec(options: dict):
    """The LoadSpec of a command's reader options."""
    from clvtier.data import LoadSpec

    fields = {k: v for k, v in options.items() if k != "keep_ids"}
    return LoadSpec.of(**fields, normalize_ids=not options.get("keep_ids", False))


@app.command()
@_load_options
def features(
    input: InputOpt,
    as_of: Annotated[str, typer.Option("--as-of", help="Last day of history, inclusive "
                                       "(YYYY-MM-DD). Later rows are counted, not used.",
                                       show_default=False)],
    output: Annotated[str, typer.Option("--output", "-o", help="Feature table: .csv or "
                                         ".parquet.", show_default=False)],
    time_unit: Annotated[str, typer.Option(help="Unit of recency and T: days or weeks "
                                           "(7 days of the daily clock).")] = "days",
    rejects: Annotated[Path | None, typer.Option(
        help="Where to write quarantined rows (.csv or .parquet). Default: next to the "
             "output as <output>.rejects.csv, written only when rows were quarantined.")] = None,
    raw_csv: RawCsvOpt = False,
    engine: EngineOpt = "duckdb",
    spark_master: MasterOpt = None,
    spec: dict | None = None,
):
    """Compute the per-customer feature table as of a date, with the row accounting."""
    with _stop_on_sigterm(), _clean_errors():
        from clvtier.spark.session import check_engine

        if check_engine(engine) == "spark":
            from clvtier.pipelines.spark import build_features_spark

            result = build_features_spark(input, as_of=as_of, output=output, time_unit=time_unit,
                                          spec=_spec(spec), rejects=rejects, master=spark_master)
        else:
            from clvtier.pipelines.features import build_features

            result = build_features(input, as_of=as_of, output=output, time_unit=time_unit, spec=_spec(spec),
                                    rejects=rejects, escape_formulas=not raw_csv)
        typer.echo(result.format())


@app.command()
def synth(
    customers: Annotated[int, typer.Option(help="Number of customers.", min=1,
                                           show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Transactions file: .csv or "
                                         ".parquet.", show_default=False)],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same "
                                      "file.")] = 0,
    model: Annotated[str, typer.Option(help="Purchase process, named as the model fitted to it: "
                                       "bgnbd_gg, mbgnbd_gg or pareto_nbd_gg.")] = "bgnbd_gg",
    start: Annotated[str, typer.Option(help="Date of the first possible purchase.")]
    = "2020-01-01",
    acquisition_weeks: Annotated[float, typer.Option(help="Weeks over which first purchases "
                                                     "are spread.")] = 12,
    observation_weeks: Annotated[float, typer.Option(help="Weeks from start to the end of "
                                                     "the data.")] = 78,
    with_profit: Annotated[bool, typer.Option(help="Add a profit column.")] = False,
    with_satisfaction: Annotated[bool, typer.Option(help="Add a satisfaction column "
                                                    "(1-5).")] = False,
):
    """Write synthetic transactions drawn from a BTYD process with Gamma-Gamma spend
    (CDNOW's published parameters), deterministic by seed."""
    with _clean_errors():
        from clvtier.data.datasets import write_synthetic

        info = write_synthetic(output, customers, seed=seed, model=model, start=start,
                               acquisition_weeks=acquisition_weeks,
                               observation_weeks=observation_weeks, with_profit=with_profit,
                               with_satisfaction=with_satisfaction)
        typer.echo(f"{info['rows']:,} transactions of {info['customers']:,} customers "
                   f"-> {info['path']}")


@app.command("evaluate-models")
@_load_options
def evaluate_models(
    dataset: Annotated[str | None, typer.Option(
        help="Built-in data: 'cdnow' (the CDNOW master file shipped with lifetimes). Its protocol: "
             "train 1997-07-01, test 1997-12-30, 26-week windows.")] = None,
    input: Annotated[Path | None, typer.Option("--input", "-i", help="Your transactions instead of "
                                               "--dataset (.csv/.parquet/.xlsx).")] = None,
    train_cutoff: Annotated[str | None, typer.Option(help="Features for training as of this date "
                                                     "(YYYY-MM-DD); targets in the next horizon.")] = None,
    test_cutoff: Annotated[str | None, typer.Option(help="Features for testing as of this date; at "
                                                    "least train cutoff + horizon.")] = None,
    horizon: Annotated[float | None, typer.Option(help="Window length, in --time-unit "
                                                  "(default 26 weeks).")] = None,
    time_unit: Annotated[str, typer.Option(help="days or weeks.")] = "weeks",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the table (.csv or "
                                                ".parquet) and <name>_calibration next to it.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the ML models.")] = 0,
    spec: dict | None = None,
):
    """Benchmark CLV and churn models out of time: naive, BTYD + Gamma-Gamma, XGBoost, hybrid."""
    with _clean_errors():
        from clvtier.data import load_transactions
        from clvtier.data.datasets import load_cdnow
        from clvtier.data.io import output_format
        from clvtier.errors import InputError
        from clvtier.pipelines.evaluate_models import CDNOW_PROTOCOL, evaluate_models

        if (dataset is None) == (input is None):
            raise InputError("evaluate-models", "give exactly one of --dataset cdnow or --input FILE")
        if output is not None:
            output_format(output)
        protocol = dict(CDNOW_PROTOCOL) if dataset is not None else {"horizon": 26}
        if dataset is not None and dataset != "cdnow":
            raise InputError("--dataset", f"valid options are 'cdnow'; got {dataset!r}")
        given = {"train_cutoff": train_cutoff, "test_cutoff": test_cutoff, "horizon": horizon}
        protocol.update({k: v for k, v in given.items() if v is not None})
        missing = [f"--{k.replace('_', '-')}" for k in ("train_cutoff", "test_cutoff") if k not in protocol]
        if missing:
            raise InputError("evaluate-models", f"{' and '.join(missing)} required with --input")
        tx = load_transactions(load_cdnow() if dataset else input, _spec(spec))
        result = evaluate_models(tx, time_unit=time_unit, random_state=seed, **protocol)
        typer.echo(result.format())
        if output is not None:
            for path in result.write(output):
                typer.echo(f"-> {path}")


def _numbers(text: str | None, option: str) -> list[float] | None:
    from clvtier.errors import InputError

    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise InputError(option, f"give numbers separated by commas; got {text!r}") from None


def _pairs(text: str, option: str, default: str | None = None) -> dict[str, str]:
    """'a:x,b' -> {'a': 'x', 'b': default} (for --indicators; '=' also separates)."""
    from clvtier.errors import InputError

    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, val = part.replace("=", ":").partition(":")
        if not sep and default is None:
            raise InputError(option, f"write name=value pairs separated by commas; got {part!r}")
        out[name.strip()] = val.strip() if sep else default
    return out


def _float_pairs(text: str, option: str) -> dict[str, float]:
    """'a=1,b=2.5' -> {'a': 1.0, 'b': 2.5}, or an InputError naming the option and the pair."""
    from clvtier.errors import InputError

    out = {}
    for name, value in _pairs(text, option).items():
        try:
            out[name] = float(value)
        except ValueError:
            raise InputError(option, f"{name}: expected a number; got {value!r}") from None
    return out


def _ahp_matrix(path: Path) -> list[list[float]]:
    """A pairwise matrix from YAML (a list of rows); entries may be fractions such as 1/3."""
    from fractions import Fraction

    import yaml

    from clvtier.errors import InputError

    try:
        rows = yaml.safe_load(path.read_text(encoding="utf-8"))
        return [[float(Fraction(str(v))) for v in row] for row in rows]
    except (yaml.YAMLError, TypeError, ValueError, ZeroDivisionError):
        raise InputError(str(path), "expected a YAML list of rows of numbers, e.g. "
                                    "[[1, 3], [1/3, 1]]") from None


@app.command()
@_load_options
def segment(
    input: InputOpt,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Last day of history, inclusive (YYYY-MM-DD; "
                                              "default: the last transaction date).")] = None,
    method: Annotated[str, typer.Option(help="rfm (scores), rfm8, rfm10, rfm-map, abc, abc4, pyramid, "
                                             "value-matrix, weighted, clv-cs, kmeans or gmm.",
                                        show_default=False)] = ...,
    output: Annotated[Path, typer.Option("--output", "-o", help="One row per customer (.csv or .parquet): "
                                         "label, the inputs that decided it, strategy.",
                                         show_default=False)] = ...,
    lang: Annotated[str, typer.Option(help="Labels and strategies in 'en' or 'zh'.")] = "en",
    profile: Annotated[Path | None, typer.Option(help="Also write the profile table (.csv or .parquet).")]
    = None,
    bins: Annotated[int, typer.Option(help="rfm: scores per dimension.")] = 5,
    threshold: Annotated[str, typer.Option(
        help="rfm8: high/low against the median, the mean, the score (RFM score 4-5), or auto: the "
             "median unless it is degenerate (the smallest or largest value), then the score.")] = "auto",
    ties: Annotated[str, typer.Option(
        help="rfm, rfm8, rfm10, rfm-map: customers with equal values 'share' a score, or 'spread' "
             "them over the scores (equal-sized groups, ties broken by spend, then id).")] = "share",
    rules: Annotated[str | None, typer.Option(
        help="rfm8: business rules per dimension, e.g. 'recency_days=90,frequency_count=3': R high "
             "within 90 days, F high from 3 purchases (overrides --threshold there).")] = None,
    map: Annotated[Path | None, typer.Option("--map", help="rfm-map: YAML map on RFM scores "
                                             "(see README).")] = None,
    shares: Annotated[str | None, typer.Option(help="abc, pyramid, weighted: level shares, best first, e.g. "
                                               "'0.2,0.3,0.5' (abc by value: value shares, e.g. "
                                               "'0.5,0.3,0.15,0.05').")] = None,
    by: Annotated[str, typer.Option(help="abc: cut on customer 'count' shares or cumulative 'value' "
                                         "shares.")] = "count",
    value: Annotated[str | None, typer.Option(help="abc, abc4, pyramid: feature to rank on; kmeans/gmm: "
                                              "feature that orders clusters (default profit_total when "
                                              "profit is mapped, else monetary_total).")] = None,
    frequency_cut: Annotated[float | None, typer.Option(help="value-matrix: purchases above this are high "
                                                        "(default: the median).")] = None,
    order_value_cut: Annotated[float | None, typer.Option(help="value-matrix: average order value above this "
                                                          "is high (default: the median).")] = None,
    indicators: Annotated[str, typer.Option(help="weighted: feature columns, each ':higher' or ':lower' is "
                                                 "better.")]
    = "recency_days:lower,frequency_count,monetary_total",
    normalise: Annotated[str, typer.Option(help="weighted: minmax, rank or z.")] = "minmax",
    weights: Annotated[str, typer.Option(help="weighted: 'equal', 'entropy', 'ahp' (with --ahp) or expert "
                                              "weights 'column=weight,...'.")] = "equal",
    ahp: Annotated[Path | None, typer.Option(help="weighted: YAML pairwise comparison matrix, rows and "
                                             "columns "
                                             "in the order of --indicators.")] = None,
    allow_inconsistent: Annotated[bool, typer.Option(
        "--allow-inconsistent",
        help="weighted: accept an AHP matrix with consistency ratio >= 0.1.")] = False,
    cutoffs: Annotated[str | None, typer.Option(help="weighted: score cut-offs, highest first, instead of "
                                                "--shares.")] = None,
    k: Annotated[int | None, typer.Option("--k", help="kmeans/gmm: number of clusters (default: chosen).")]
    = None,
    k_range: Annotated[str, typer.Option(help="kmeans/gmm: k tried, 'smallest-largest'.")] = "2-8",
    selection: Annotated[str | None, typer.Option(help="kmeans/gmm: 'silhouette' or 'bic' (gmm only; its "
                                                  "default).")] = None,
    features: Annotated[str | None, typer.Option(help="kmeans/gmm: feature columns (default recency_days, "
                                                 "frequency_count, monetary_total).")] = None,
    horizon: Annotated[float, typer.Option(help="clv-cs: CLV horizon in weeks (BG/NBD + Gamma-Gamma fitted "
                                                "on the history).")] = 52,
    seed: Annotated[int, typer.Option(help="kmeans/gmm: random seed.")] = 0,
    spec: dict | None = None,
):
    """Segment customers by one method; print the diagnosis and the profile of each segment."""
    with _clean_errors():
        from clvtier.data import load_transactions, write_frame
        from clvtier.data.io import output_format
        from clvtier.errors import InputError
        from clvtier.pipelines.segment import SegmentOptions, check_method, format_profile, run_segment
        from clvtier.segment.labels import check_lang

        check_lang(lang)
        check_method(method)
        output_format(output)
        if profile is not None:
            output_format(profile)
        lo, sep, hi = k_range.partition("-")
        if not (sep and lo.strip().isdigit() and hi.strip().isdigit()):
            raise InputError("--k-range", f"write it as 'smallest-largest', e.g. '2-8'; got {k_range!r}")
        if weights not in ("equal", "entropy", "ahp"):
            weights = {c: float(w) for c, w in _pairs(weights, "--weights").items()}
        options = SegmentOptions(
            bins=bins, threshold=threshold, map_path=map, ties=ties,
            rules=_float_pairs(rules, "--rules") if rules else None, shares=_numbers(shares, "--shares"),
            by=by,
            value=value, frequency_cut=frequency_cut, order_value_cut=order_value_cut,
            indicators=_pairs(indicators, "--indicators", default="higher"), normalise=normalise,
            weights=weights, ahp_matrix=_ahp_matrix(ahp) if ahp else None,
            allow_inconsistent=allow_inconsistent, cutoffs=_numbers(cutoffs, "--cutoffs"), n_clusters=k,
            k_range=(int(lo), int(hi)), selection=selection,
            cluster_features=features.split(",") if features else None, horizon_weeks=horizon,
            random_state=seed)
        tx = load_transactions(input, _spec(spec))
        result = run_segment(tx, as_of=as_of, method=method, options=options, lang=lang)
        write_frame(result.segmentation.table, output)
        typer.echo(result.accounting.format())
        typer.echo(result.diagnosis.format(lang))
        typer.echo("")
        typer.echo(format_profile(result.segmentation))
        for warning in result.label_warnings:
            typer.echo(f"label check: {warning}", err=True)
        typer.echo(f"-> {output}")
        if profile is not None:
            write_frame(result.segmentation.profile, profile)
            typer.echo(f"-> {profile}")


ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Experiment config (YAML), e.g. "
                                          "experiments/cdnow.yaml; schema in the README.")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a config value, e.g. --set models.xgboost.max_depth=4 (repeatable; the value is "
                  "read as YAML).")]
TrackingOpt = Annotated[str | None, typer.Option(
    "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in "
                           "the working directory).")]


def _quiet_tracking() -> None:
    """MLflow's INFO logs off (the progress lines say what happens) and telemetry off unless the
    user turned it on."""
    from clvtier.tracking.store import quiet_mlflow

    quiet_mlflow()


def _progress():
    """A spinner while a step runs and a line with its time when it ends."""
    from rich.console import Console

    console, live = Console(highlight=False), {}

    def report(step: str, seconds: float | None) -> None:
        if seconds is None:
            live["status"] = console.status(f"{step} ...")
            live["status"].start()
        else:
            live.pop("status").stop()
            console.print(f"[green]done[/green] {step:<24} {seconds:7.1f} s")

    return report


def _train(config_path, overrides, tracking_uri, log_data):
    _quiet_tracking()
    from clvtier.config import load_config
    from clvtier.pipelines.train import train

    config = load_config(config_path, overrides or ())
    return train(config, tracking_uri=tracking_uri, log_data=log_data, progress=_progress())


@app.command("train")
def train_command(
    config: ConfigOpt,
    set_: SetOpt = None,
    tracking_uri: TrackingOpt = None,
    log_data: Annotated[bool, typer.Option(
        help="Also log the transactions and feature tables (customer rows and ids) as run artifacts. Off: "
             "only fingerprints and schemas are logged.")] = False,
):
    """Fit, evaluate out of time, log to MLflow and register the models of an experiment config."""
    with _clean_errors():
        typer.echo(_train(config, set_, tracking_uri, log_data).format())


@app.command("compare")
def compare_command(
    config: ConfigOpt,
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="The HTML report; <stem>_summary.csv and <stem>_segments.csv go beside "
                               "it.")] = Path("reports/compare.html"),
    lang: Annotated[str, typer.Option(help="Report and labels: en or zh.")] = "en",
    origins: Annotated[int | None, typer.Option(
        help="Repeat at this many test cutoffs (split.step apart) and show mean and range; default: "
             "the config's split.origins.")] = None,
    set_: SetOpt = None,
    tracking_uri: TrackingOpt = None,
    no_tracking: Annotated[bool, typer.Option("--no-tracking", help="Do not log a compare run to "
                                                                      "MLflow.")] = False,
    engine: Annotated[str, typer.Option(
        help="Where the data are read and the feature tables computed: duckdb (this machine) or spark "
             "(the tables are then collected; segmentations and models run on them here).")] = "duckdb",
):
    """Judge rule-based, learned and model-based segmentations on what happened next: holdout
    revenue captured (with bootstrap intervals), churn per segment, agreement and stability."""
    with _clean_errors():
        _quiet_tracking()
        from clvtier.config import load_config
        from clvtier.pipelines.compare import compare
        from clvtier.report.compare import verdict
        from clvtier.segment.labels import check_lang
        from clvtier.spark.session import check_engine

        check_lang(lang)
        check_engine(engine)
        overrides = list(set_ or ()) + ([f"split.origins={origins}"] if origins is not None else [])
        cfg = load_config(config, overrides)
        result = compare(cfg, output=output, lang=lang, tracking_uri=tracking_uri,
                         log_to_mlflow=not no_tracking, progress=_progress(), engine=engine)
        for warning in result.label_warnings:
            typer.echo(f"label check: {warning}", err=True)
        typer.echo("")
        for line in verdict(result, lang):
            typer.echo(line.replace("<b>", "").replace("</b>", ""))
        stem = output.with_suffix("")
        typer.echo(f"report  -> {output}\nsummary -> {stem}_summary.csv\nsegments -> {stem}_segments.csv")
        if result.run_id:
            typer.echo(f"run {result.run_id} (compare) in experiment {cfg.experiment!r}")


@app.command("score")
@_load_options
def score_command(
    model: Annotated[str, typer.Option(
        "--model", "-m", help="Exported model folder (models/<name>) or registry URI "
                              "(models:/<name>@champion).", show_default=False)],
    input: InputOpt,
    as_of: Annotated[str, typer.Option(help="Last day of history, inclusive (YYYY-MM-DD).",
                                       show_default=False)],
    output: Annotated[str, typer.Option("--output", "-o", help="Tiers file: .parquet or .csv (with "
                                        "--engine spark: a Parquet dataset path or URI).",
                                         show_default=False)],
    previous: Annotated[Path | None, typer.Option(
        help="An earlier tiers file (same policy): print and log the tier migration matrix, warn on size "
             "drift.")] = None,
    allow_policy_change: Annotated[bool, typer.Option(
        "--allow-policy-change",
        help="Accept a --previous file scored with another policy: the migration is labelled a policy "
             "change and no drift warning fires.")] = False,
    policy: Annotated[str | None, typer.Option(
        help="Tier policy: corporate4, abc4_clv, clv_cs or a YAML file (default: the model's).")] = None,
    drift_threshold: Annotated[float, typer.Option(
        help="Warn when a tier's size changes by more than this share of its previous size.")] = 0.2,
    pseudonymize_ids: Annotated[bool, typer.Option(
        "--pseudonymize-ids",
        help="Write salted hashes instead of customer ids (salt: env CLVTIER_ID_SALT).")] = False,
    lang: Annotated[str, typer.Option(help="Language of labels and actions: en or zh.")] = "en",
    chunk_size: Annotated[int, typer.Option(help="Customers per batch.")] = 250_000,
    memory_limit: Annotated[str | None, typer.Option(
        help="DuckDB memory limit; past it DuckDB spills to a scratch folder beside the output.")] = "6GB",
    tracking_uri: TrackingOpt = None,
    no_tracking: Annotated[bool, typer.Option(
        "--no-tracking", help="Do not log the run to MLflow (for batch jobs that must not depend on "
                              "it; a models:/ URI still needs the registry).")] = False,
    raw_csv: RawCsvOpt = False,
    engine: EngineOpt = "duckdb",
    spark_master: MasterOpt = None,
    spec: dict | None = None,
):
    """Score every customer as of a date with a trained model and a tier policy: tier, at-risk flag,
    reason and action per customer, written atomically; the run is logged to MLflow."""
    _quiet_tracking()
    with _stop_on_sigterm(), _clean_errors():
        from clvtier.errors import InputError
        from clvtier.pipelines.score import score
        from clvtier.segment.labels import check_lang
        from clvtier.spark.session import check_engine

        check_lang(lang)
        if check_engine(engine) == "spark":
            from clvtier.pipelines.spark import score_spark

            if previous is not None or pseudonymize_ids:
                raise InputError("--engine spark", "--previous and --pseudonymize-ids are not supported by "
                                                   "the Spark engine yet; use --engine duckdb")
            result = score_spark(model, input, as_of=as_of, output=output, spec=_spec(spec), policy=policy,
                                 lang=lang, log_to_mlflow=not no_tracking, tracking_uri=tracking_uri,
                                 master=spark_master, progress=_progress())
            typer.echo(result.format())
            return
        result = score(model, input, as_of=as_of, output=output, spec=_spec(spec), policy=policy,
                       previous=previous, allow_policy_change=allow_policy_change,
                       drift_threshold=drift_threshold, pseudonymize_ids=pseudonymize_ids,
                       chunk_size=chunk_size, memory_limit=memory_limit, lang=lang,
                       escape_formulas=not raw_csv, log_to_mlflow=not no_tracking,
                       tracking_uri=tracking_uri, progress=_progress())
        typer.echo(result.format())


@app.command()
def demo(
    output_dir: Annotated[Path, typer.Option(help="Folder for the demo's outputs.")]
    = Path("out"),
    config: Annotated[Path, typer.Option("--config", "-c", help="The training config.")]
    = Path("experiments/cdnow.yaml"),
    tracking_uri: TrackingOpt = None,
):
    """Run the main job end to end on the CDNOW data shipped with lifetimes: features, segments,
    training with MLflow tracking, batch scoring, and the comparison of segmentations (HTML report)."""
    _quiet_tracking()
    with _clean_errors():
        from clvtier.config import load_config
        from clvtier.pipelines.demo import demo as run

        result = run(load_config(config), output_dir, tracking_uri=tracking_uri, progress=_progress())
        typer.echo(result.format())


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    sys.exit(main())
