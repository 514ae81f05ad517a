"""MLflow tracking in the workspace's SQLite store: one parent run per pipeline run, a nested run for the
embedding and clusterer, with the whole config as params, every metric, and the charts and tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

EXPERIMENT = "segflow"
PUBLISHED_TAG = "segflow.published"


def metric_key(name: str) -> str:
    """MLflow keys allow letters, digits, _ - . / and spaces: 'recall@10' becomes 'recall_at_10'."""
    return name.replace("@", "_at_")


def flatten(config: dict, prefix: str = "") -> dict[str, str]:
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = str(value)
    return flat


def log_run(
    tracking_uri: str,
    artifact_dir: Path,
    run_name: str,
    params: dict,
    metrics: dict[str, float],
    nested_name: str,
    artifacts: dict[str, bytes | str],
    segmenter_path: str | None = None,
    input_example=None,
) -> str:
    """Log a pipeline run (and its segmenter as a pyfunc model, tagged unpublished until `mark_published`);
    returns the parent MLflow run id."""
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per artifact is noise
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.get_experiment_by_name(EXPERIMENT)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else mlflow.create_experiment(EXPERIMENT, artifact_location=artifact_dir.resolve().as_uri())
    )
    clean = {
        metric_key(k): float(v) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)
    }
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as parent:
        mlflow.set_tag(PUBLISHED_TAG, "false")
        mlflow.log_params(flatten(params))
        mlflow.log_metrics(clean)
        with mlflow.start_run(experiment_id=experiment_id, run_name=nested_name, nested=True):
            mlflow.log_params(flatten(params))
            mlflow.log_metrics(clean)
            for name, content in artifacts.items():
                if isinstance(content, bytes):
                    mlflow.log_image(_image(content), name)
                else:
                    mlflow.log_text(content, name)
        mlflow.log_text(json.dumps(metrics, indent=2, default=float), "evaluation.json")
        if segmenter_path is not None:
            from tasks.track.pyfunc import log_segmenter

            log_segmenter(segmenter_path, input_example)
        return parent.info.run_id


def mark_published(tracking_uri: str, mlflow_run_id: str) -> None:
    """Tag the run as published: a run that crashed between tracking and publishing stays `false`."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.MlflowClient().set_tag(mlflow_run_id, PUBLISHED_TAG, "true")


def _image(content: bytes):
    import io

    from PIL import Image

    return Image.open(io.BytesIO(content))
