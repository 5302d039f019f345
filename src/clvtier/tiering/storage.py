"""Store a tiering model as data, and load it without running code from the folder.

A stored model is a folder with ``model.json`` (the structure and every number: BTYD and
Gamma-Gamma parameters, hyperparameters, calibration maps, the hybrid's scale, the metadata) and
one XGBoost UBJ file per booster. Loading rebuilds the objects from that data: it only
instantiates clvtier's own model classes (dataclasses and scikit-learn estimators defined in the
``clvtier`` package), scikit-learn's logistic and isotonic calibrators and XGBoost boosters from
their native format. Nothing is unpickled, so a crafted folder cannot run a command; a damaged
one (truncated, invalid JSON, a missing part) is a one-line :class:`~clvtier.errors.InputError`.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from clvtier.errors import InputError

FORMAT = "clvtier-tiering-model/1"
MODEL_FILE = "model.json"
#: scikit-learn classes a stored model may contain besides clvtier's own.
_SKLEARN = {"LogisticRegression": LogisticRegression}


class _Writer:
    def __init__(self, folder: Path):
        self.folder, self.parts = folder, 0

    def encode(self, obj):
        if obj is None or isinstance(obj, bool | int | str):
            return obj
        if isinstance(obj, float | np.floating):
            return float(obj)
        if isinstance(obj, np.integer | np.bool_):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return {
                "__array__": [self.encode(v) for v in obj.tolist()],
                "dtype": str(obj.dtype),
                "shape": list(obj.shape),
            }
        if isinstance(obj, list | tuple):
            return {"__list__": [self.encode(v) for v in obj], "tuple": isinstance(obj, tuple)}
        if isinstance(obj, dict):
            if not all(isinstance(k, str) for k in obj):
                raise InputError("model", f"cannot store a dict with non-text keys: {list(obj)[:3]}")
            return {"__dict__": {k: self.encode(v) for k, v in obj.items()}}
        if _is_xgboost(obj):
            self.parts += 1
            name = f"part{self.parts}.ubj"
            obj.save_model(self.folder / name)
            return {"__xgboost__": type(obj).__name__, "file": name}
        if isinstance(obj, IsotonicRegression):
            return {
                "__isotonic__": self.encode(obj.get_params()),
                "x": self.encode(obj.X_thresholds_),
                "y": self.encode(obj.y_thresholds_),
            }
        kind = _own_class(type(obj)) or (type(obj).__name__ if type(obj).__name__ in _SKLEARN else None)
        if kind is None:
            raise InputError("model", f"cannot store {type(obj).__module__}.{type(obj).__name__} as data")
        if dataclasses.is_dataclass(obj):
            fields = {f.name: self.encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
            return {"__dataclass__": kind, "fields": fields}
        state = {k: self.encode(v) for k, v in vars(obj).items() if k.endswith("_") and not k.startswith("_")}
        return {"__estimator__": kind, "params": self.encode(obj.get_params(deep=False)), "state": state}


def _is_xgboost(obj) -> bool:
    return type(obj).__module__.startswith("xgboost") and hasattr(obj, "save_model")


def _own_class(cls) -> str | None:
    """``module:qualname`` of a clvtier dataclass or estimator class, else None."""
    if not isinstance(cls, type) or not cls.__module__.startswith("clvtier."):
        return None
    if not (dataclasses.is_dataclass(cls) or issubclass(cls, BaseEstimator)):
        return None
    return f"{cls.__module__}:{cls.__qualname__}"


def save_model(model, folder) -> Path:
    """Write ``model`` (a :class:`~clvtier.tiering.TieringModel`) into ``folder`` as data."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tree = {"format": FORMAT, "model": _Writer(folder).encode(model)}
    # key order is kept: a policy's score inputs are explained (and digested) in their order
    (folder / MODEL_FILE).write_text(json.dumps(tree, indent=1), encoding="utf-8")
    return folder


class _Reader:
    def __init__(self, folder: Path):
        self.folder = folder

    def decode(self, node):
        if node is None or isinstance(node, bool | int | float | str):
            return node
        if not isinstance(node, dict):
            raise ValueError(f"unexpected {type(node).__name__}")
        if "__array__" in node:
            return np.array([self.decode(v) for v in node["__array__"]], dtype=node["dtype"]).reshape(
                node["shape"]
            )
        if "__list__" in node:
            items = [self.decode(v) for v in node["__list__"]]
            return tuple(items) if node.get("tuple") else items
        if "__dict__" in node:
            return {k: self.decode(v) for k, v in node["__dict__"].items()}
        if "__xgboost__" in node:
            import xgboost

            cls = {"XGBClassifier": xgboost.XGBClassifier, "XGBRegressor": xgboost.XGBRegressor}[
                node["__xgboost__"]
            ]
            path = (self.folder / node["file"]).resolve()
            if path.parent != self.folder.resolve():
                raise ValueError(f"part {node['file']!r} is outside the model folder")
            if not path.is_file():
                raise ValueError(f"part {node['file']!r} is missing")
            model = cls()
            model.load_model(path)
            return model
        if "__isotonic__" in node:
            iso = IsotonicRegression(**self.decode(node["__isotonic__"]))
            return iso.fit(self.decode(node["x"]), self.decode(node["y"]))
        if "__dataclass__" in node:
            cls = _resolve(node["__dataclass__"])
            return cls(**{k: self.decode(v) for k, v in node["fields"].items()})
        if "__estimator__" in node:
            kind = node["__estimator__"]
            cls = _SKLEARN[kind] if kind in _SKLEARN else _resolve(kind)
            est = cls(**self.decode(node["params"]))
            for key, value in node["state"].items():
                setattr(est, key, self.decode(value))
            return est
        raise ValueError(f"unknown node with keys {sorted(node)[:4]}")


def _resolve(kind: str):
    """A clvtier class named ``module:qualname``; nothing outside the package."""
    module, _, name = str(kind).partition(":")
    if not module.startswith("clvtier.") or not name.isidentifier():
        raise ValueError(f"class {kind!r} is not one of clvtier's")
    cls = getattr(importlib.import_module(module), name, None)
    if cls is None or _own_class(cls) is None:
        raise ValueError(f"class {kind!r} is not a clvtier model class")
    return cls


def load_model(folder, *, source: str | None = None):
    """The model stored in ``folder`` by :func:`save_model`; a damaged folder is an InputError."""
    folder = Path(folder)
    where = source or str(folder)
    path = folder / MODEL_FILE
    if not path.is_file():
        raise InputError(
            where,
            f"the model has no {MODEL_FILE}: not a clvtier tiering model (or made by an older "
            "version: train it again)",
        )
    try:
        tree = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(tree, dict) or tree.get("format") != FORMAT:
            found = tree.get("format") if isinstance(tree, dict) else None
            raise ValueError(f"format is {found!r}, not {FORMAT!r}")
        return _Reader(folder).decode(tree["model"])
    except Exception as exc:  # noqa: BLE001 - JSON, XGBoost and scikit-learn each raise their own types
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise InputError(where, f"the stored model is damaged ({type(exc).__name__}: {first})") from None


__all__ = ["FORMAT", "MODEL_FILE", "load_model", "save_model"]
