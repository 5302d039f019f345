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

CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass(frozen=True)
class Decision:
    alias: str
    reason: str
    previous_champion: str | None = None


def decide(name: str, *, protocol: str, metric: str, value: float, higher_is_better: bool) -> Decision:
    """Champion or challenger for a new version of ``name`` with test ``metric`` = ``value``."""
    client = mlflow.MlflowClient()
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return Decision(CHAMPION, "no champion yet")
    tag = champion.tags.get(f"clvtier.test.{metric}")
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


def register(model_uri: str, name: str, decision: Decision, tags: dict[str, str]):
    """Register ``model_uri`` as a new version of ``name``, tag it and point ``decision.alias`` at it."""
    client = mlflow.MlflowClient()
    version = mlflow.register_model(model_uri, name)
    for key, value in {**tags, "clvtier.alias_reason": decision.reason}.items():
        client.set_model_version_tag(name, version.version, key, value)
    client.set_registered_model_alias(name, decision.alias, version.version)
    return version


def export(model_uri: str, target: Path, info: dict) -> Path:
    """Copy the model at ``model_uri`` to ``target`` (MLflow model format) with ``registered.json``
    beside its MLmodel; the old export is replaced only once the new one is complete."""
    target = Path(target)
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
