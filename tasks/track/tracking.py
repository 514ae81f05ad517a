"""MLflow tracking in the workspace's SQLite store: one parent run per pipeline run, a nested run for the
embedding and clusterer, with the whole config as params, every metric, and the charts and tables."""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

EXPERIMENT = "segflow"
PUBLISHED_TAG = "segflow.published"


@dataclass(frozen=True)
class FamilyRun:
    """One embedding family as the run trained it: its nested MLflow run `family/<name>`."""

    family: str
    metrics: dict[str, float]
    epochs: list[dict[str, float]] = field(default_factory=list)  # train/loss, val/loss per epoch
    embedding: object = None  # tasks.embed.base.Embedding of the training part's users
    model: object = None  # tasks.track.pyfunc.FamilyModel: the fitted embedder and its feature statistics


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


def hyperparameters(embedder: object, prefix: str = "") -> dict[str, str]:
    """What a fitted embedder (or clusterer) was built and trained with, flattened for MLflow params: its
    configs and settings (dataclasses, pydantic models), its plain options, and those of the embedders it
    holds (an autoencoder's behaviour and svd parts under their attribute's name, a fusion's parts under
    theirs: `lightgcn.settings.n_layers`). Counts of what the fit did (`n_epochs`, `n_encoded`) are metrics, not
    params; the run's options (`segments.*`), the logger and the vector store are not the family's."""
    from pydantic import BaseModel

    params: dict[str, str] = {}
    for name, value in vars(embedder).items():
        if name.startswith(("_", "n_")) or name in ("logger", "store", "options"):
            continue
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            params |= flatten(dataclasses.asdict(value), f"{prefix}{name}.")
        elif isinstance(value, BaseModel):
            params |= flatten(value.model_dump(), f"{prefix}{name}.")
        elif isinstance(value, bool | int | float | str) or (
            isinstance(value, tuple) and all(isinstance(v, int | float | str) for v in value)
        ):
            params[f"{prefix}{name}"] = str(value)
        elif not prefix and _is_embedder(value):
            params |= hyperparameters(value, f"{name}.")
        elif not prefix and isinstance(value, list) and value and all(map(_is_embedder, value)):
            for part in value:
                params |= hyperparameters(part, f"{part.name}.")
    return params


def _is_embedder(value: object) -> bool:
    return hasattr(value, "fit") and hasattr(value, "transform") and hasattr(value, "name")


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
    families: list[FamilyRun] = (),
    clusterer_epochs: list[dict[str, float]] = (),
) -> str:
    """Log a pipeline run (and its segmenter as a pyfunc model, tagged unpublished until `mark_published`);
    returns the parent MLflow run id. `clusterer_epochs`: a clusterer's training per epoch (DEC's), logged in
    the nested embedding/clusterer run as `clusterer/<metric>`, step = epoch."""
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
        with mlflow.start_run(experiment_id=experiment_id, run_name=nested_name, nested=True) as nested:
            mlflow.log_params(flatten(params))
            mlflow.log_metrics(clean)
            _log_epochs(mlflow, nested.info.run_id, clusterer_epochs, "clusterer/")
            for name, content in artifacts.items():
                if isinstance(content, bytes):
                    mlflow.log_image(_image(content), name)
                else:
                    mlflow.log_text(content, name)
        for family in families:
            _log_family(mlflow, experiment_id, family, params, input_example)
        mlflow.log_text(json.dumps(metrics, indent=2, default=float), "evaluation.json")
        if segmenter_path is not None:
            from tasks.track.pyfunc import log_segmenter

            log_segmenter(segmenter_path, input_example)
        return parent.info.run_id


def _log_family(mlflow, experiment_id: str, family: FamilyRun, params: dict, input_example=None) -> None:
    """A nested run per family: what it was trained with, its loss per epoch (step = epoch), how it scored
    on the holdout, the training part's embedding (`embedding.parquet`: user_id, dim_0, ...) and the family's
    model (`embedder`, a pyfunc from events to vectors, with its signature and an input example)."""
    from tasks.embed.base import embedding_frame

    segments = params.get("segments", {})
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"family/{family.family}", nested=True
    ) as run:
        mlflow.set_tag("segflow.family", family.family)
        mlflow.log_params(
            {"family": family.family}
            | {
                f"segments.{k}": str(segments.get(k))
                for k in ("max_epochs", "time_budget_s", "accelerator", "seed")
            }
            | (hyperparameters(family.model.embedder) if family.model is not None else {})
        )
        _log_epochs(mlflow, run.info.run_id, family.epochs)
        mlflow.log_metrics(
            {metric_key(f"holdout/{k}"): float(v) for k, v in family.metrics.items() if math.isfinite(v)}
        )
        if family.embedding is not None:
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "embedding.parquet"
                embedding_frame(family.embedding).write_parquet(path)
                mlflow.log_artifact(str(path))
                if family.model is not None and input_example is not None:
                    from tasks.track.pyfunc import log_family_model

                    dimensions = family.embedding.vectors.shape[1]
                    log_family_model(family.model, dimensions, input_example, Path(folder))


def _log_epochs(mlflow, run_id: str, epochs: list[dict[str, float]], prefix: str = "") -> None:
    """Each epoch's metrics (step = epoch) in one call: one log_metric per value took 3 s for five families'
    100 epochs."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    history = [
        Metric(metric_key(prefix + key), value, now, int(row["epoch"]))
        for row in epochs
        for key, value in row.items()
        if key != "epoch" and math.isfinite(value)
    ]
    if history:
        mlflow.MlflowClient().log_batch(run_id, metrics=history)


def mark_published(tracking_uri: str, mlflow_run_id: str) -> None:
    """Tag the run as published: a run that crashed between tracking and publishing stays `false`."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.MlflowClient().set_tag(mlflow_run_id, PUBLISHED_TAG, "true")


def _image(content: bytes):
    import io

    from PIL import Image

    return Image.open(io.BytesIO(content))
