"""The run's models as MLflow pyfunc models, each taking a pandas frame of events in the canonical columns:

- the segmenter, `mlflow.pyfunc.load_model("runs:/<id>/segmenter").predict(events)`: `user_id, segment_id,
  distance, placed_by` per user (tasks/segment/reach.py);
- each embedding family the run trained, in its nested run `family/<name>`, artifact path `embedder`: the
  family's fitted embedder with the feature statistics it reads (fit on the training part), returning
  `user_id, dim_0, dim_1, ...` per user, the vectors its segments were scored on.

Both take one parameter, `as_of` (`predict(events, params={"as_of": "2024-06-01T00:00:00"})`, UTC; an ISO
offset is converted, a date is its midnight): when the users are measured (recency, and frequency over their
span). By default, and when it is earlier, the fit's end, as the published segments were (the signature shows
that default as 1970-01-01); `segflow score` measures as of where the warehouse's events end. Events after
`as_of` are not dropped: pass the events up to it.

Loading them needs segflow installed (they unpickle segflow's classes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
import polars as pl
import polars.selectors  # noqa: F401  (pl.selectors)
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from mlflow.types.schema import ParamSchema, ParamSpec

from tasks.embed.base import Embedder, embedding_frame
from tasks.features.user_features import FeatureModel
from tasks.fitted import Saveable
from tasks.segment.segmenter import Segmenter

# What the models need, as installed here: given, MLflow does not start a process per model to infer them.
REQUIRED_PACKAGES = (
    "mlflow", "torch", "pytorch-lightning", "scikit-learn", "scipy", "numpy", "pandas", "polars", "pyarrow",
    "duckdb", "pydantic", "sentence-transformers",
)  # fmt: skip
ARTIFACT_PATH = "segmenter"
EMBEDDER_PATH = "embedder"
EVENTS_SCHEMA = Schema(
    [
        ColSpec("string", "user_id"),
        ColSpec("string", "item_id"),
        ColSpec("string", "event_type"),
        ColSpec("datetime", "ts"),
        ColSpec("double", "value", required=False),
        ColSpec("double", "quantity", required=False),
        ColSpec("string", "session_id", required=False),
        ColSpec("string", "item_category", required=False),
        ColSpec("string", "timezone", required=False),
    ]
)
# The default `as_of`, before any fit: FeatureModel.transform then measures as of the fit's end. (A default of
# None cannot be logged: MLflow 3.17 writes a datetime parameter's default with isoformat().)
FIT_END = datetime(1970, 1, 1)
PARAMS = ParamSchema([ParamSpec("as_of", "datetime", FIT_END)])
SIGNATURE = ModelSignature(
    inputs=EVENTS_SCHEMA,
    outputs=Schema(
        [
            ColSpec("string", "user_id"),
            ColSpec("long", "segment_id"),
            ColSpec("double", "distance"),
            ColSpec("string", "placed_by"),
        ]
    ),  # fmt: skip
    params=PARAMS,
)


class SegmenterModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.segmenter = Segmenter.load(context.artifacts[ARTIFACT_PATH])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.segmenter.assign(model_input, as_of=as_of_param(params)).to_pandas()


def as_of_param(params: dict | None) -> datetime | None:
    """The `as_of` parameter as MLflow hands it over (a naive UTC datetime, checked against PARAMS)."""
    return (params or {}).get("as_of")


MODEL_URI_TAG = "segflow.model_uri"


def _in_schema(events: pd.DataFrame) -> pd.DataFrame:
    """The input example without the columns the models do not read (MLflow warns of each one)."""
    return events[[name for name in EVENTS_SCHEMA.input_names() if name in events.columns]]


def pip_requirements() -> list[str]:
    """REQUIRED_PACKAGES pinned at their installed versions (those not installed left out)."""
    from importlib.metadata import PackageNotFoundError, version

    pinned = []
    for name in REQUIRED_PACKAGES:
        try:
            pinned.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return pinned


def log_segmenter(segmenter_path: str, input_example: pd.DataFrame) -> str:
    """Log the saved segmenter to the active MLflow run under the artifact path `segmenter`; returns the
    logged model's URI (`models:/<model id>`, what the registry registers), also kept as a run tag."""
    info = mlflow.pyfunc.log_model(
        name=ARTIFACT_PATH,
        python_model=str(Path(__file__).with_name("segmenter_model.py")),
        artifacts={ARTIFACT_PATH: segmenter_path},
        signature=SIGNATURE,
        input_example=_in_schema(input_example),
        pip_requirements=pip_requirements(),
    )
    mlflow.set_tag(MODEL_URI_TAG, info.model_uri)
    return info.model_uri


@dataclass(frozen=True)
class FamilyModel(Saveable):
    """One family's fitted embedder with the fitted feature statistics it reads: events in, vectors out."""

    features: FeatureModel
    embedder: Embedder

    def embed(self, events, as_of: datetime | None = None) -> pd.DataFrame:
        vectors = self.embedder.transform(self.features.transform(events, as_of))
        return (
            embedding_frame(vectors)
            .with_columns(pl.selectors.starts_with("dim_").cast(pl.Float64))
            .to_pandas()
        )


class FamilyEmbedderModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.model = FamilyModel.load(context.artifacts[EMBEDDER_PATH])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.model.embed(model_input, as_of_param(params))


def log_family_model(model: FamilyModel, dimensions: int, input_example: pd.DataFrame, folder: Path) -> str:
    """Log a family's model to the active (nested) MLflow run under `embedder`; returns the model's URI."""
    path = folder / "family_model.pkl"
    model.save(path)
    outputs = Schema(
        [ColSpec("string", "user_id"), *(ColSpec("double", f"dim_{i}") for i in range(dimensions))]
    )
    info = mlflow.pyfunc.log_model(
        name=EMBEDDER_PATH,
        python_model=str(Path(__file__).with_name("embedder_model.py")),
        artifacts={EMBEDDER_PATH: str(path)},
        signature=ModelSignature(inputs=EVENTS_SCHEMA, outputs=outputs, params=PARAMS),
        input_example=_in_schema(input_example),
        pip_requirements=pip_requirements(),
    )
    return info.model_uri
