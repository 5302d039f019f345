"""MLflow helpers: the tracking store, run metadata, the tiering pyfunc model and the registry.

The only package that imports mlflow.
"""

from clvtier.tracking.store import environment_tags, experiment_id, resolve_tracking_uri, use_tracking_uri

__all__ = ["environment_tags", "experiment_id", "resolve_tracking_uri", "use_tracking_uri"]
