"""Loading a registered tiering model: from an exported folder or a ``models:/`` registry URI."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from clvtier.errors import InputError
from clvtier.tiering import TieringModel
from clvtier.tiering.storage import load_model as load_stored
from clvtier.tracking.pyfunc import ARTIFACT


@dataclass
class LoadedModel:
    model: TieringModel
    name: str
    version: str
    uri: str


def load_model(ref: str) -> LoadedModel:
    """A tiering model from an exported folder (``models/<name>``, with ``registered.json``) or a
    registry URI (``models:/<name>@champion``, ``models:/<name>/3``; the tracking URI must be set).

    A registry model is downloaded into a temporary folder that is removed once it is loaded;
    nothing is written into the artifact store.
    """
    if str(ref).startswith("models:/"):
        name, _, which = str(ref).removeprefix("models:/").partition("@")
        client = mlflow.MlflowClient()
        with tempfile.TemporaryDirectory(prefix="clvtier-model-") as scratch:
            try:
                if which:
                    version = client.get_model_version_by_alias(name, which).version
                else:
                    name, _, version = name.partition("/")
                path = mlflow.artifacts.download_artifacts(artifact_uri=str(ref), dst_path=scratch)
            except MlflowException as exc:
                raise InputError(
                    str(ref), f"cannot load from the registry: {str(exc).splitlines()[0]}"
                ) from None
            model = _stored(Path(path), ref)
        return LoadedModel(model=model, name=name, version=str(version), uri=str(ref))
    folder = Path(ref)
    info = folder / "registered.json"
    if not (folder / "MLmodel").is_file() or not info.is_file():
        raise InputError(
            str(ref),
            "not an exported tiering model (expected MLmodel and registered.json; "
            "train one with clvtier train)",
        )
    try:
        meta = json.loads(info.read_text(encoding="utf-8"))
        name, version = str(meta["registered_model"]), str(meta["version"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise InputError(str(info), f"is damaged ({type(exc).__name__}: {str(exc)[:120]})") from None
    return LoadedModel(model=_stored(folder, ref), name=name, version=version, uri=str(ref))


def _stored(folder: Path, ref) -> TieringModel:
    """The tiering model stored as data in the model's ``artifacts/tiering_model`` folder."""
    return load_stored(folder / "artifacts" / ARTIFACT, source=str(ref))


__all__ = ["LoadedModel", "load_model"]
