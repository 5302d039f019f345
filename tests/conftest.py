import os
import shutil

import pandas as pd
import pytest

from clvtier.data.datasets import load_cdnow

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="session")
def cdnow() -> pd.DataFrame:
    return load_cdnow()


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory):
    """An MLflow SQLite store with its migrations run once per session (about 4 s)."""
    import mlflow

    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


def fresh_store(template, folder) -> str:
    """A copy of the migrated store in ``folder``; its tracking URI."""
    db = folder / "mlflow.db"
    shutil.copy(template, db)
    return f"sqlite:///{db}"


@pytest.fixture(scope="session")
def new_store(migrated_store):
    """``new_store(folder)``: a fresh tracking store in ``folder``, returned as its URI."""
    return lambda folder: fresh_store(migrated_store, folder)


@pytest.fixture
def tracking_uri(migrated_store, tmp_path, monkeypatch):
    """A private tracking store per test; the test runs in ``tmp_path`` (mlflow.db, models/ land there)."""
    uri = fresh_store(migrated_store, tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri
