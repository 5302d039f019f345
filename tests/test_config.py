import datetime as dt
import re
from pathlib import Path

import pytest

from clvtier.config import load_config, parse_config
from clvtier.errors import InputError
from clvtier.pipelines.evaluate_models import CDNOW_PROTOCOL
from clvtier.pipelines.train import load_data, protocol

EXPERIMENTS = Path(__file__).parents[1] / "experiments"


def _tree(**changes):
    tree = {
        "experiment": "t",
        "data": {"dataset": "cdnow_sample"},
        "split": {"train_cutoff": "1997-07-01", "test_cutoff": "1997-12-30", "horizon": 26},
        "models": {"bgnbd_gg": {}, "hybrid": {}},
    }
    tree.update(changes)
    return tree


def test_shipped_configs_validate():
    cdnow = load_config(EXPERIMENTS / "cdnow.yaml")
    assert cdnow.split.train_cutoff.isoformat() == CDNOW_PROTOCOL["train_cutoff"]
    assert cdnow.split.test_cutoff.isoformat() == CDNOW_PROTOCOL["test_cutoff"]
    assert cdnow.split.horizon == CDNOW_PROTOCOL["horizon"]
    assert cdnow.models.fitted() == [
        "bgnbd_gg",
        "pareto_nbd_gg",
        "mbgnbd_gg",
        "xgboost",
        "hybrid",
        "clusters",
    ]
    synthetic = load_config(EXPERIMENTS / "synthetic.yaml")
    assert synthetic.split.holdout_last == 26 and synthetic.data.synthetic.with_profit


def test_overrides_set_nested_values_parsed_as_yaml():
    config = load_config(
        EXPERIMENTS / "cdnow.yaml",
        [
            "models.xgboost.max_depth=4",
            "models.clusters.k_range=[2, 5]",
            "models.pareto_nbd_gg=null",
            "seed=7",
        ],
    )
    assert config.models.xgboost.max_depth == 4 and config.models.clusters.k_range == (2, 5)
    assert config.models.pareto_nbd_gg is None and config.seed == 7
    assert config.flat()["models.xgboost.max_depth"] == "4"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["models.xgboost.max_dept=4"], "models.xgboost.max_dept: unknown key"),
        (["colour=red"], "colour: unknown key"),
        (["split.horizon=-1"], "split.horizon: Input should be greater than 0"),
        (["models.xgboost.subsample=2"], "models.xgboost.subsample: Input should be less than or equal to 1"),
        (["data.path=tx.csv"], "data: give exactly one of dataset, path or synthetic"),
        (["split.holdout_last=26"], "split: give either holdout_last or train_cutoff and test_cutoff"),
        (["split.train_cutoff=null"], "split: give train_cutoff and test_cutoff"),
        (["models.hybrid=null"], "tiering.clv_model is 'hybrid', which is not under models"),
        (["tiering.clv_model=gbm"], "tiering.clv_model: Input should be"),
        (["registry.metric=accuracy"], "registry.metric: Input should be"),
        (["models.xgboost=3"], "models.xgboost: Input should be a valid dictionary"),
        (["seed.x=1"], "--set: seed is a value, not a section"),
        (["seed"], "--set: write path.to.key=value"),
        (["seed=[1"], "--set: seed: value '[1' is not valid YAML"),
    ],
)
def test_config_errors_name_the_key(overrides, message):
    expected = message if message.startswith("--set") else f"{EXPERIMENTS / 'cdnow.yaml'}: {message}"
    with pytest.raises(InputError, match="^" + re.escape(expected)):
        load_config(EXPERIMENTS / "cdnow.yaml", overrides)


def test_config_file_errors(tmp_path):
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: x\ndata: [\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.yaml: line \d+: not valid YAML"):
        load_config(bad)
    bad.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(InputError, match="expected a mapping"):
        load_config(bad)


def test_holdout_last_counts_back_from_the_last_date():
    config = parse_config(
        _tree(
            split={"holdout_last": 10, "time_unit": "weeks"},
            data={"synthetic": {"customers": 300, "seed": 3}},
        )
    )
    tx = load_data(config.data)
    proto = protocol(config.split, tx)
    assert proto["horizon"] == 10
    assert dt.date.fromisoformat(proto["test_cutoff"]) == tx.last_date - dt.timedelta(days=70)
    assert dt.date.fromisoformat(proto["train_cutoff"]) == tx.last_date - dt.timedelta(days=140)
    with pytest.raises(InputError, match="with holdout_last the horizon is the holdout"):
        parse_config(_tree(split={"holdout_last": 10, "horizon": 5}))


def test_data_from_a_file_with_mapped_columns(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_text(
        "客户ID;交易日期;交易金额\nA;2021-01-01;10,5\nA;2021-02-01;4,5\nB;2021-01-15;7\n", encoding="utf-8"
    )
    config = parse_config(
        _tree(
            data={
                "path": str(path),
                "columns": {"customer_id": "客户ID", "date": "交易日期", "amount": "交易金额"},
            }
        )
    )
    tx = load_data(config.data)
    assert tx.accounting().rows_used == 3
