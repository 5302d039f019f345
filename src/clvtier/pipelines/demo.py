"""The demo job on CDNOW (grows with the product: features, segments, training now; tiers later)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from clvtier.data import Accounting, load_transactions, write_frame
from clvtier.data.datasets import load_cdnow
from clvtier.features import customer_features
from clvtier.pipelines.segment import format_profile
from clvtier.pipelines.train import TrainResult
from clvtier.segment import Segmentation, diagnose, rfm_map

CDNOW_AS_OF = "1998-06-30"


@dataclass
class DemoResult:
    accounting: Accounting
    features: pd.DataFrame
    features_path: Path
    trained: TrainResult
    metrics_path: Path
    segments: Segmentation
    segments_path: Path

    def format(self) -> str:
        f = self.features
        lines = [
            "CDNOW demo: customer features as of " + self.features.attrs["as_of"],
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
        return "\n".join(lines)


def run_demo(output_dir, trained: TrainResult) -> DemoResult:
    """Load CDNOW, validate it, build the feature table as of 1998-06-30 and write it; segment the
    customers with the ten-segment RFM map; write the metrics of ``trained`` (the training run of
    ``experiments/cdnow.yaml``: train 1997-07-01, test 1997-12-30, 26-week windows)."""
    output_dir = Path(output_dir)
    tx = load_transactions(load_cdnow())
    features = customer_features(tx, as_of=CDNOW_AS_OF)
    path = write_frame(features, output_dir / "cdnow_features.parquet")
    metrics_path = write_frame(trained.table, output_dir / "cdnow_model_metrics.csv")
    segments = rfm_map(features)
    segments_path = write_frame(segments.table, output_dir / "cdnow_segments_rfm10.csv")
    return DemoResult(accounting=tx.accounting(CDNOW_AS_OF), features=features, features_path=path,
                      trained=trained, metrics_path=metrics_path, segments=segments,
                      segments_path=segments_path)
