"""The demo job on CDNOW: features, segments, training with MLflow, batch scoring into tiers, then the
comparison of segmentations on what happened next."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from clvtier.data import Accounting, load_transactions, write_frame
from clvtier.features import customer_features
from clvtier.pipelines.compare import CompareResult, compare
from clvtier.pipelines.score import ScoreResult, score
from clvtier.pipelines.segment import format_profile
from clvtier.pipelines.train import TrainResult, data_source, train
from clvtier.segment import Segmentation, diagnose, rfm_map

CDNOW_AS_OF = "1998-06-30"
#: The earlier scoring date the demo compares with (tier migration, drift warnings).
PREVIOUS_AS_OF = "1998-03-31"


@dataclass
class DemoResult:
    accounting: Accounting
    features: pd.DataFrame
    features_path: Path
    trained: TrainResult
    metrics_path: Path
    segments: Segmentation
    segments_path: Path
    tiers: ScoreResult | None = None
    comparison: CompareResult | None = None

    def format(self) -> str:
        f = self.features
        lines = [
            f"{self.trained.config.experiment.upper()} demo: customer features as of "
            + self.features.attrs["as_of"],
            self.accounting.format(),
            "",
            f"purchases per customer    {f['frequency_count'].mean():>10.2f} (mean)",
            f"spend per customer        {f['monetary_total'].mean():>10.2f} (mean), "
            f"{f['monetary_total'].median():.2f} (median)",
            f"days since last purchase  {f['recency_days'].median():>10.0f} (median)",
            diagnose(f).format(),
            f"features ({f.shape[1] - 1} columns) -> {self.features_path}",
            "",
            format_profile(self.segments),
            f"segments -> {self.segments_path}",
            "",
            self.trained.format(),
            f"model metrics -> {self.metrics_path}",
        ]
        if self.tiers is not None:
            lines += ["", f"Tiers as of {CDNOW_AS_OF}, compared with {PREVIOUS_AS_OF} "
                          f"(the champion {self.tiers.model.uri})", self.tiers.format()]
        if self.comparison is not None:
            from clvtier.report.compare import verdict

            lines += ["", "Which segmentation finds the most future value? (clvtier compare)"]
            lines += [line.replace("<b>", "").replace("</b>", "") for line in verdict(self.comparison)]
            lines += [f"label check: {w}" for w in self.comparison.label_warnings]
            lines.append(f"report -> {self.comparison.output}")
        return "\n".join(lines)


def demo(config, output_dir, *, tracking_uri=None, progress=None) -> DemoResult:
    """Train ``config`` (an :class:`~clvtier.config.ExperimentConfig`, normally
    ``experiments/cdnow.yaml``), then run the rest of the demo (:func:`run_demo`)."""
    trained = train(config, tracking_uri=tracking_uri, progress=progress)
    result = run_demo(output_dir, trained)
    name = config.experiment
    result.comparison = compare(config, output=Path(output_dir) / f"{name}-compare.html",
                                tracking_uri=trained.tracking_uri, progress=progress)
    return result


def run_demo(output_dir, trained: TrainResult) -> DemoResult:
    """On the data of ``trained``'s config (CDNOW for ``experiments/cdnow.yaml``): validate it, build
    the feature table as of 1998-06-30 and write it; segment the customers with the ten-segment RFM
    map; write the metrics of ``trained`` (train 1997-07-01, test 1997-12-30, 26-week windows);
    then score every customer from a file with the champion as of 1998-03-31 and 1998-06-30
    (tiers, migration, drift). Outputs are named after the experiment (``cdnow_*``)."""
    output_dir, config = Path(output_dir), trained.config
    name = config.experiment
    source = data_source(config.data)
    if isinstance(source, pd.DataFrame):  # scoring reads a file, as a batch job would
        source = write_frame(source, output_dir / f"{name}_transactions.csv")
    tx = load_transactions(source, config.data.spec)
    features = customer_features(tx, as_of=CDNOW_AS_OF)
    path = write_frame(features, output_dir / f"{name}_features.parquet")
    metrics_path = write_frame(trained.table, output_dir / f"{name}_model_metrics.csv")
    segments = rfm_map(features)
    segments_path = write_frame(segments.table, output_dir / f"{name}_segments_rfm10.csv")
    champion = Path(config.registry.export_dir) / trained.model_name
    earlier = output_dir / f"{name}_tiers_{PREVIOUS_AS_OF}.parquet"
    common = {"spec": config.data.spec, "tracking_uri": trained.tracking_uri}
    score(str(champion), source, as_of=PREVIOUS_AS_OF, output=earlier, **common)
    tiers = score(str(champion), source, as_of=CDNOW_AS_OF, output=output_dir / f"{name}_tiers.parquet",
                  previous=earlier, **common)
    return DemoResult(accounting=tx.accounting(CDNOW_AS_OF), features=features, features_path=path,
                      trained=trained, metrics_path=metrics_path, segments=segments,
                      segments_path=segments_path, tiers=tiers)
