"""The architecture's rules, checked on the source: one model catalogue that everything derives
from, imports that flow one way, MLflow only in tracking/, no private names across modules."""

import ast
from pathlib import Path

import pytest

from clvtier.clv.catalogue import CATALOGUE, names
from clvtier.config import CLV_MODELS, PURCHASE_MODELS, ModelsConfig, TieringConfig, parse_config
from clvtier.data.datasets import MODELS as SYNTHETIC_MODELS

SRC = Path(__file__).parents[1] / "src" / "clvtier"

#: Layers, top to bottom: a module may import its own layer's modules and any layer below.
LAYERS = [
    {"cli", "__main__"},
    {"pipelines"},
    {"tracking", "report", "spark"},
    {"config"},
    {"tiering"},
    {"clv", "churn"},
    {"segment"},
    {"evaluate", "features"},
    {"data"},
    {"settings", "errors"},
]


def _layer(package: str) -> int:
    return next(i for i, group in enumerate(LAYERS) if package in group)


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        package = rel.parts[0].removesuffix(".py")
        if package == "__init__":
            continue
        yield path, package, ast.parse(path.read_text(encoding="utf-8"))


def _imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


def test_imports_flow_one_way():
    wrong = []
    for path, package, tree in _modules():
        for module, _ in _imports(tree):
            if not module.startswith("clvtier."):
                continue
            target = module.split(".")[1]
            if _layer(target) < _layer(package):
                wrong.append(f"{path.relative_to(SRC)} imports {module}")
    assert wrong == []


def test_only_tracking_imports_mlflow_and_only_cli_imports_typer():
    found = {"mlflow": set(), "typer": set()}
    for _path, package, tree in _modules():
        for module, _ in _imports(tree):
            top = module.split(".")[0]
            if top in found:
                found[top].add(package)
    assert found["mlflow"] == {"tracking"}
    assert found["typer"] == {"cli"}


def test_churn_does_not_import_evaluate_and_no_private_names_cross_modules():
    private, churn = [], []
    for path, package, tree in _modules():
        for module, imported in _imports(tree):
            if module.startswith("clvtier."):
                private += [f"{path.relative_to(SRC)}: {module}.{n}" for n in imported if n.startswith("_")]
                if package == "churn" and module.startswith("clvtier.evaluate"):
                    churn.append(str(path.relative_to(SRC)))
    assert private == [] and churn == []


def test_pipelines_are_thin():
    """Orchestration only: no function in pipelines/ longer than about 60 lines (docstring aside)."""
    long = []
    for path in sorted((SRC / "pipelines").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef):
                continue
            body = node.body[1:] if ast.get_docstring(node) else node.body
            lines = node.end_lineno - (body[0].lineno if body else node.lineno) + 1
            if lines > 60:
                long.append(f"{path.name}:{node.name} ({lines} lines)")
    assert long == []


def test_config_and_generator_are_derived_from_the_catalogue():
    assert set(ModelsConfig.model_fields) == set(CATALOGUE)
    for name, entry in CATALOGUE.items():
        assert ModelsConfig.model_fields[name].annotation == entry.settings | None
    assert CLV_MODELS == names("clv") and PURCHASE_MODELS == names("purchase")
    assert set(SYNTHETIC_MODELS) == set(names("purchase"))
    with pytest.raises(ValueError):
        TieringConfig(btyd_model="xgboost")  # a CLV model without the purchase role


def test_hybrid_base_must_be_a_purchase_model():
    tree = {
        "experiment": "x",
        "data": {"dataset": "cdnow_sample"},
        "split": {"holdout_last": 26},
        "models": {"bgnbd_gg": {}, "hybrid": {"base": "xgboost"}},
    }
    with pytest.raises(ValueError, match="models.hybrid.base: valid options are 'bgnbd_gg'"):
        parse_config(tree)
