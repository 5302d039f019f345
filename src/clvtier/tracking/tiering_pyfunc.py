"""MLflow "models from code" definition of the tiering model: MLflow copies this file into
the logged model and runs it on load. The fitted parts are the model's ``tiering_model``
artifact."""

from mlflow.models import set_model

from clvtier.tracking.pyfunc import TieringPyfunc

set_model(TieringPyfunc())
