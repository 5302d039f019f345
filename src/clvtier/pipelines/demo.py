"""The demo job on CDNOW (grows with the product: features now; models, tiers later)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from clvtier.data import Accounting, load_transactions, write_frame
from clvtier.data.datasets import load_cdnow
from clvtier.features import customer_features
from clvtier.pipelines.evaluate_models import CDNOW_PROTOCOL, ModelBenchmark, evaluate_models

CDNOW_AS_OF = "1998-06-30"


@dataclass
class DemoResult:
    accounting: Accounting
    features: pd.DataFrame
    features_path: Path
    models: ModelBenchmark
    metrics_path: Path

    def format(self) -> str:
        f = self.features
        spend = f["monetary_total"].sort_values(ascending=False)
        top20 = spend.iloc[: max(1, round(0.2 * len(spend)))].sum() / spend.sum()
        lines = [
            "CDNOW demo: customer features as of " + self.features.attrs["as_of"],
            self.accounting.format(),
            "",
            f"customers                 {len(f):>10,}",
            f"repeat buyers             {(f['frequency'] > 0).mean():>10.1%}",
            f"purchases per customer    {f['frequency_count'].mean():>10.2f} (mean)",
            f"spend per customer        {f['monetary_total'].mean():>10.2f} (mean), "
            f"{f['monetary_total'].median():.2f} (median)",
            f"days since last purchase  {f['recency_days'].median():>10.0f} (median)",
            f"spend of the top 20%      {top20:>10.1%}",
            f"features ({f.shape[1] - 1} columns) -> {self.features_path}",
            "",
            self.models.format(),
            f"model metrics -> {self.metrics_path}",
        ]
        return "\n".join(lines)


def run_demo(output_dir) -> DemoResult:
    """Load CDNOW, validate it, build the feature table as of 1998-06-30 and write it; then run
    the out-of-time model benchmark (train 1997-07-01, test 1997-12-30, 26-week windows)."""
    output_dir = Path(output_dir)
    tx = load_transactions(load_cdnow())
    features = customer_features(tx, as_of=CDNOW_AS_OF)
    path = write_frame(features, output_dir / "cdnow_features.parquet")
    models = evaluate_models(tx, **CDNOW_PROTOCOL)
    metrics_path = models.write(output_dir / "cdnow_model_metrics.csv")[0]
    return DemoResult(accounting=tx.accounting(CDNOW_AS_OF), features=features, features_path=path,
                      models=models, metrics_path=metrics_path)
