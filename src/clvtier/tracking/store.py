"""Where runs go: an explicit tracking URI, experiments with their artifact folder, run metadata."""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path

from clvtier.errors import TrackingError

DEFAULT_STORE = "mlflow.db"
#: Distributions clvtier runs on: recorded with every run, pinned in every logged model.
RUNTIME = (
    "pandas",
    "numpy",
    "scikit-learn",
    "scipy",
    "Lifetimes",
    "xgboost-cpu",
    "xgboost",
    "mlflow",
    "duckdb",
    "pyarrow",
    "pydantic",
    "PyYAML",
)


def resolve_tracking_uri(uri: str | None = None, project_dir=None) -> str:
    """``uri`` if given, else ``MLFLOW_TRACKING_URI``, else the SQLite store ``mlflow.db`` in
    ``project_dir`` (default: the working directory), as an absolute ``sqlite:///`` URI."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(Path(project_dir or Path.cwd()) / DEFAULT_STORE).resolve()}"


def telemetry_off() -> None:
    """MLflow telemetry off, unless the user set ``MLFLOW_DISABLE_TELEMETRY`` themselves."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def quiet_mlflow() -> None:
    """Telemetry off (:func:`telemetry_off`) and MLflow's INFO logs off, for command-line use.
    MLflow configures its loggers when it is imported, so it is imported first."""
    import logging

    telemetry_off()
    import mlflow  # noqa: F401

    logging.getLogger("mlflow").setLevel(logging.WARNING)


#: Seconds a command waits for a tracking server before it gives up (MLflow's own default retries
#: for minutes).
SERVER_TIMEOUT = 5


def check_tracking_store(uri: str) -> str:
    """Check, quickly and before any work, that the tracking store at ``uri`` can be used: a SQLite
    store's folder must exist and be writable (MLflow would silently create missing folders), a
    server must answer within :data:`SERVER_TIMEOUT` seconds. Raises TrackingError naming the URI."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        folder = db.parent
        if not folder.is_dir():
            raise TrackingError(f"{uri}: the folder {folder} does not exist; create it or choose another")
        writable = os.access(db if db.exists() else folder, os.W_OK) and os.access(folder, os.W_OK)
        if not writable:
            raise TrackingError(f"{uri}: {db if db.exists() else folder} is not writable")
    elif uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=SERVER_TIMEOUT).close()
        except urllib.error.HTTPError:
            pass  # it answered: MLflow servers without /health still work
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(f"{uri}: the tracking server does not answer ({reason})") from None
    return uri


@contextlib.contextmanager
def tracking_errors():
    """MLflow's own errors as clvtier's :class:`~clvtier.errors.TrackingError`, one line."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        raise TrackingError(f"MLflow: {str(exc.message).splitlines()[0]}") from None


@contextlib.contextmanager
def _store_lock(uri: str):
    """An exclusive lock beside a SQLite store while MLflow creates its schema, so that several
    processes starting on a new store do not run the migrations at once."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = Path(uri.removeprefix("sqlite:///"))
    with open(db.with_name(db.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def use_tracking_uri(uri: str) -> str:
    """Point MLflow at ``uri`` (telemetry off unless the user turned it on) and return it."""
    import mlflow

    telemetry_off()
    check_tracking_store(uri)
    with _store_lock(uri), tracking_errors():
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        mlflow.MlflowClient(uri).search_experiments(max_results=1)  # creates (migrates) a new store
    return uri


def _artifact_root(uri: str, name: str) -> str | None:
    """For a local SQLite store, artifacts live next to the database (``mlartifacts/<name>``),
    not in whatever folder the process started in; a server decides for itself."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri.removeprefix("sqlite:///"))
    return (db.parent / "mlartifacts" / re.sub(r"[^A-Za-z0-9_.-]+", "_", name)).resolve().as_uri()


def experiment_id(name: str) -> str:
    """The id of experiment ``name``, created on first use."""
    import mlflow

    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=_artifact_root(mlflow.get_tracking_uri(), name))


def git_commit(folder=None) -> str:
    """HEAD of the git checkout around ``folder`` (``+dirty`` with uncommitted changes), or "unknown"."""
    try:
        run = dict(cwd=folder or Path.cwd(), capture_output=True, text=True, timeout=10, check=True)
        head = subprocess.run(["git", "rev-parse", "HEAD"], **run).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], **run).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def package_versions(names=RUNTIME) -> dict[str, str]:
    """Installed versions of the distributions ``names`` (those not installed are left out)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def pinned_requirements() -> list[str]:
    """``name==version`` of the runtime distributions, for a logged model's requirements.txt."""
    return [f"{name}=={version}" for name, version in package_versions().items()]


def environment_tags() -> dict[str, str]:
    """Package versions, Python and the git commit of the code (of clvtier's checkout when it
    is installed from one, else of the working directory)."""
    tags = {"clvtier.python": platform.python_version()}
    tags.update(
        {f"clvtier.version.{name.lower()}": v for name, v in package_versions(("clvtier", *RUNTIME)).items()}
    )
    tags["clvtier.git_commit"] = git_commit(Path(__file__).resolve().parent)
    return tags
