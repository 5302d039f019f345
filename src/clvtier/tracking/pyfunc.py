"""The tiering model as an MLflow pyfunc: transactions or a feature table in, one row per
customer out (see :class:`clvtier.tiering.TieringModel`).

``predict(frame, params={"as_of": "YYYY-MM-DD", "time_unit": "weeks"})``; without ``as_of``,
transactions are scored as of their last date. A feature table must say its ``time_unit`` (the
param, or the frame's ``attrs``) and it must be the model's: recency and T in days read as weeks
would predict nonsense. The fitted parts are stored as data in the ``tiering_model`` artifact
folder (JSON and XGBoost UBJ files, see :mod:`clvtier.tiering.storage`; nothing is pickled), so
loading needs clvtier (and the versions in the model's requirements) installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import AnyType, ColSpec, ParamSchema, ParamSpec, Schema

from clvtier.churn.models import ML_FEATURES
from clvtier.tiering import OUTPUT_COLUMNS, TRANSACTION_COLUMNS
from clvtier.tiering.storage import load_model, save_model

CODE = Path(__file__).with_name("tiering_pyfunc.py")
ARTIFACT = "tiering_model"
_FEATURES = tuple(dict.fromkeys(("frequency", "recency", "T", "monetary_value", *ML_FEATURES)))


class TieringPyfunc(mlflow.pyfunc.PythonModel):
    """Loads the stored :class:`~clvtier.tiering.TieringModel` (data, no pickle) and calls its
    ``predict``."""

    def load_context(self, context):
        self.model = load_model(context.artifacts[ARTIFACT])

    def predict(
        self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        params = params or {}
        return self.model.predict(model_input, params.get("as_of") or None, params.get("time_unit") or None)


def signature() -> ModelSignature:
    """Input: transactions (customer_id, date, amount required for scoring; the optional columns
    used when present) or a feature table (customer_id plus the feature columns), so every column
    but customer_id is optional in the schema. Every input column accepts any type: ordinary data
    has integer ids, quantities and amounts, text or timestamp dates, and MLflow's strict types
    would refuse them (``Can not safely convert int64 to float64``); clvtier validates and converts
    the values itself, with its usual errors. Params: ``as_of``, ``time_unit``."""
    names = list(dict.fromkeys((*TRANSACTION_COLUMNS, *_FEATURES)))
    inputs = [ColSpec(AnyType(), name, required=name == "customer_id") for name in names]
    types = {
        "customer_id": "string",
        "as_of": "datetime",
        "rfm_cell": "string",
        "rfm_segment": "string",
        **dict.fromkeys(("recency_days", "frequency_count", "r_score", "f_score", "m_score"), "long"),
    }
    outputs = [ColSpec(types.get(name, "double"), name) for name in OUTPUT_COLUMNS]
    return ModelSignature(
        inputs=Schema(inputs),
        outputs=Schema(outputs),
        params=ParamSchema([ParamSpec("as_of", "string", ""), ParamSpec("time_unit", "string", "")]),
    )


def input_example() -> pd.DataFrame:
    """Made-up transactions of three customers: no real customer data goes into the model."""
    return pd.DataFrame(
        {
            "customer_id": ["c1", "c1", "c2", "c3", "c3", "c3"],
            "date": pd.to_datetime(
                ["1997-01-03", "1997-05-20", "1997-02-11", "1997-01-20", "1997-03-02", "1997-09-15"]
            ),
            "amount": [23.5, 41.0, 12.99, 60.0, 35.25, 18.0],
        }
    )


def log_tiering_model(model, *, name: str, folder: Path, requirements: list[str], metadata: dict):
    """Log ``model`` (a fitted TieringModel) under the active run as ``name``; returns the ModelInfo."""
    path = save_model(model, Path(folder) / ARTIFACT)
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=str(CODE),
        artifacts={ARTIFACT: str(path)},
        signature=signature(),
        input_example=(input_example(), {"as_of": "1997-12-31"}),
        pip_requirements=requirements,
        metadata=metadata,
    )
