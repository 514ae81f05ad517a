"""The segmenter as an MLflow pyfunc model: `mlflow.pyfunc.load_model("runs:/<id>/segmenter").predict(events)`
takes a pandas frame of events in the canonical columns and returns `user_id, segment_id, distance` per user.
Loading it needs segflow installed (the model unpickles segflow's classes)."""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from tasks.segment.segmenter import Segmenter

ARTIFACT_PATH = "segmenter"
SIGNATURE = ModelSignature(
    inputs=Schema(
        [
            ColSpec("string", "user_id"),
            ColSpec("string", "item_id"),
            ColSpec("string", "event_type"),
            ColSpec("datetime", "ts"),
            ColSpec("double", "value", required=False),
            ColSpec("double", "quantity", required=False),
            ColSpec("string", "session_id", required=False),
            ColSpec("string", "item_category", required=False),
        ]
    ),
    outputs=Schema(
        [ColSpec("string", "user_id"), ColSpec("long", "segment_id"), ColSpec("double", "distance")]
    ),
)


class SegmenterModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.segmenter = Segmenter.load(context.artifacts[ARTIFACT_PATH])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.segmenter.assign(model_input).to_pandas()


MODEL_URI_TAG = "segflow.model_uri"


def log_segmenter(segmenter_path: str, input_example: pd.DataFrame) -> str:
    """Log the saved segmenter to the active MLflow run under the artifact path `segmenter`; returns the
    logged model's URI (`models:/<model id>`, what the registry registers), also kept as a run tag."""
    info = mlflow.pyfunc.log_model(
        name=ARTIFACT_PATH,
        python_model=str(Path(__file__).with_name("segmenter_model.py")),
        artifacts={ARTIFACT_PATH: segmenter_path},
        signature=SIGNATURE,
        input_example=input_example,
    )
    mlflow.set_tag(MODEL_URI_TAG, info.model_uri)
    return info.model_uri
