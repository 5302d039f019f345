"""Registry: champion or challenger, decided on test metrics under the same protocol; export.

A registered version carries tags: ``clvtier.protocol`` (a digest of the data fingerprint,
cutoffs, horizon and time unit) and ``clvtier.test.<metric>`` for every test metric. A new
version becomes ``champion`` when there is none, or when the champion was tested on the same
protocol and the new version's metric is strictly better; otherwise it is the ``challenger``.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from clvtier.config import METRIC_DIRECTIONS
from clvtier.errors import InputError, TrackingError
from clvtier.tracking.store import tracking_errors, use_tracking_uri

CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass(frozen=True)
class Decision:
    alias: str
    reason: str
    previous_champion: str | None = None


@dataclass(frozen=True)
class Retrain:
    """A retrain of the champion's config on newer data: both models' ``metric`` on the newest
    complete backtest window (``window``: its test cutoff), and how much newer the data is."""

    challenger: float
    champion: float
    window: str
    age_days: int
    tolerance: float = 0.0
    max_age_days: int | None = None

    def tags(self) -> dict[str, str]:
        return {
            "clvtier.retrain.window": self.window,
            "clvtier.retrain.challenger": str(self.challenger),
            "clvtier.retrain.champion": str(self.champion),
            "clvtier.retrain.age_days": str(self.age_days),
        }


def is_retrain(champion, *, config_digest: str, data_last_date: str, protocol: str) -> bool:
    """Whether a new version is the champion's config on newer data (a protocol of its own)."""
    tags = champion.tags
    return (
        tags.get("clvtier.protocol") != protocol
        and tags.get("clvtier.config_digest") == config_digest
        and tags.get("clvtier.data_last_date", "9999") < data_last_date
    )


def _retrain_decision(champion, metric: str, r: Retrain, higher_is_better: bool) -> Decision:
    if math.isnan(r.challenger) or math.isnan(r.champion):
        return Decision(
            CHALLENGER, f"retrain: {metric} on the window after {r.window} is not a number", champion.version
        )
    margin = r.challenger - r.champion if higher_is_better else r.champion - r.challenger
    scores = (
        f"{metric} {r.challenger:.4f} vs champion v{champion.version}'s {r.champion:.4f} on the "
        f"window after {r.window}"
    )
    if margin >= -r.tolerance:
        return Decision(
            CHAMPION,
            f"retrain on newer data: {scores}, not worse by more than {r.tolerance:g}",
            champion.version,
        )
    if r.max_age_days is not None and r.age_days > r.max_age_days:
        return Decision(
            CHAMPION,
            f"retrain on newer data: {scores} is worse, but the champion's data is "
            f"{r.age_days} days older (max_age_days {r.max_age_days})",
            champion.version,
        )
    return Decision(
        CHALLENGER, f"retrain on newer data: {scores} is worse by more than {r.tolerance:g}", champion.version
    )


def decide(
    name: str,
    *,
    protocol: str,
    metric: str,
    value: float,
    higher_is_better: bool,
    retrain: Retrain | None = None,
) -> Decision:
    """Champion or challenger for a new version of ``name`` with test ``metric`` = ``value``
    (``retrain``: this version retrains the champion's config on newer data)."""
    champion = current_champion(name)
    if champion is None:
        return Decision(CHAMPION, "no champion yet")
    tag = champion.tags.get(f"clvtier.test.{metric}")
    if retrain is not None:
        return _retrain_decision(champion, metric, retrain, higher_is_better)
    if champion.tags.get("clvtier.protocol") != protocol:
        return Decision(
            CHALLENGER,
            f"champion v{champion.version} was tested on another protocol (data, "
            "cutoffs, horizon or time unit differ): the metrics are not comparable; "
            "promote by hand if intended",
            champion.version,
        )
    if tag is None or math.isnan(float(tag)):
        return Decision(
            CHALLENGER, f"champion v{champion.version} has no test {metric} to compare with", champion.version
        )
    best = float(tag)
    if math.isnan(value):
        return Decision(CHALLENGER, f"test {metric} is not a number", champion.version)
    beats = value > best if higher_is_better else value < best
    verb = "beats" if beats else "does not beat"
    reason = f"test {metric} {value:.4f} {verb} champion v{champion.version}'s {best:.4f}"
    return Decision(CHAMPION if beats else CHALLENGER, reason, champion.version)


def current_champion(name: str):
    """The champion version of ``name``, or None when there is none yet (no such model, or no
    champion alias). Any other MLflow error (locked database, permissions, unreachable server)
    is a :class:`~clvtier.errors.TrackingError`: it must stop the run, never make the new
    version champion by default."""
    client = mlflow.MlflowClient()
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") and _not_found(exc):
            return None
        raise TrackingError(
            f"MLflow: cannot read the champion of {name!r}: {str(exc.message).splitlines()[0]}"
        ) from None


def current_champion_at(name: str, tracking_uri: str):
    """:func:`current_champion` in the store at ``tracking_uri``."""
    use_tracking_uri(tracking_uri)
    return current_champion(name)


def _not_found(exc: MlflowException) -> bool:
    text = str(exc.message).lower()
    return "not found" in text or "does not exist" in text or "no such" in text


@dataclass(frozen=True)
class Registered:
    version: str
    decision: Decision
    export_path: Path | None


def register_and_export(
    model_uri: str,
    *,
    name: str,
    metric: str,
    test_metrics: dict,
    model_info: dict,
    run_id: str,
    export_dir,
    tracking_uri: str,
    experiment: str,
    retrain: Retrain | None = None,
    description: str = "",
) -> Registered:
    """Decide champion or challenger on ``metric``, register ``model_uri`` as a new version of
    ``name`` with its test metrics, config digest and data end as tags (and ``description``, the
    model's warnings), tag the run, and export the champion to ``export_dir/name``."""
    use_tracking_uri(tracking_uri)
    with tracking_errors():
        digest = model_info["protocol"]["digest"]
        decision = decide(
            name,
            protocol=digest,
            metric=metric,
            value=test_metrics.get(metric, math.nan),
            higher_is_better=METRIC_DIRECTIONS[metric],
            retrain=retrain,
        )
        tags = {
            "clvtier.protocol": digest,
            "clvtier.config_digest": model_info["config_digest"],
            "clvtier.data_last_date": model_info["data_last_date"],
            "clvtier.experiment": experiment,
            "clvtier.run_id": run_id,
            **{f"clvtier.test.{k}": str(v) for k, v in test_metrics.items()},
            **(retrain.tags() if retrain else {}),
            **{f"clvtier.data_window.{k}": str(v) for k, v in model_info.get("data_window", {}).items()},
        }
        version = str(register(model_uri, name, decision, tags).version)
        client = mlflow.MlflowClient()
        if description:
            client.update_model_version(name, version, description=description)
        run_tags = {
            "clvtier.registry": f"{name} v{version} @{decision.alias}",
            "clvtier.registry_reason": decision.reason,
            **(retrain.tags() if retrain else {}),
        }
        for key, value in run_tags.items():
            client.set_tag(run_id, key, value)
        export_path = None
        if decision.alias == CHAMPION:
            info = {
                **model_info,
                "version": version,
                "alias": decision.alias,
                "run_id": run_id,
                "tracking_uri": tracking_uri,
            }
            export_path = export(model_uri, Path(export_dir) / name, info)
    return Registered(version, decision, export_path)


def register(model_uri: str, name: str, decision: Decision, tags: dict[str, str]):
    """Register ``model_uri`` as a new version of ``name``, tag it and point ``decision.alias`` at it."""
    client = mlflow.MlflowClient()
    version = mlflow.register_model(model_uri, name)
    for key, value in {**tags, "clvtier.alias_reason": decision.reason}.items():
        client.set_model_version_tag(name, version.version, key, value)
    client.set_registered_model_alias(name, decision.alias, version.version)
    return version


def check_export_target(target) -> Path:
    """``target`` may be replaced by an export only when it does not exist, is an empty folder, or
    holds a previous clvtier export (``registered.json`` or ``MLmodel``): a user's folder is never
    deleted."""
    target = Path(target)
    if target.exists():
        if not target.is_dir():
            raise InputError(str(target), "exists and is not a folder: refusing to replace it with a model")
        previous = (target / "registered.json").is_file() or (target / "MLmodel").is_file()
        if any(target.iterdir()) and not previous:
            raise InputError(
                str(target),
                "exists and is not a clvtier model export (no registered.json or MLmodel): refusing to "
                "replace it; choose another registry.export_dir or registry.name",
            )
    return target


def export(model_uri: str, target: Path, info: dict) -> Path:
    """Copy the model at ``model_uri`` to ``target`` (MLflow model format) with ``registered.json``
    beside its MLmodel; the old export is replaced only once the new one is complete, and only
    when it is one (:func:`check_export_target`)."""
    target = check_export_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        local = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(staging / "dl"))
        )
        (local / "registered.json").write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf-8")
        old = staging / "old"
        if target.exists():
            target.rename(old)
        local.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
