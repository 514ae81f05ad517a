"""The Embedder protocol and the Embedding it produces."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol, Self

import numpy as np
import polars as pl
from pydantic import BaseModel, Field

from tasks.features.user_features import UserFeatures

if TYPE_CHECKING:
    from models.common import TrainSettings

# A learned family's `max_time_s`: off unless asked for, since a cap that stops a fit makes its vectors depend
# on the machine's speed (models/common.py, TrainSettings).
WallClockCap = Annotated[
    float | None,
    Field(gt=0, description="Wall-clock cap per fit, in seconds (None: none; a cap that stops a fit makes its "
          "vectors depend on the machine's speed)"),
]  # fmt: skip


class LearnedSettings(BaseModel):
    """How a learned family with settings of its own (lightgcn, sequence) trains besides its sizes: the budget,
    the device, the processes and the threads. A family's settings add `max_epochs`, `lr` and `batch_size`,
    with defaults of its own."""

    max_time_s: WallClockCap = None
    patience: int = Field(3, ge=1, description="Epochs without a better val/loss before stopping")
    accelerator: str = Field("auto", description="Lightning accelerator: auto, cpu, gpu")
    # One thread: at these sizes threads mostly wait for each other, and on busy cores (other processes, other
    # fits) torch's default of one per core made a 300-user shop's fit 4x slower (lightgcn, 0.8 s against 0.2
    # s) and its epoch 9x slower (sequence, 30 s against 3.5 s).
    n_threads: int | None = Field(
        1, ge=1, description="torch CPU threads while training (None: torch's default, one per core)"
    )
    devices: int = Field(
        1, ge=1, description="Processes (CPU) or GPUs per node; more than one trains with DDP"
    )
    num_nodes: int = Field(1, ge=1, description="Machines training together (DDP)")

    def train_settings(self) -> TrainSettings:
        from models.common import TrainSettings  # torch: not for a CLI that only checks its options

        return TrainSettings(
            max_epochs=self.max_epochs, max_time_s=self.max_time_s, patience=self.patience, lr=self.lr,
            batch_size=self.batch_size, accelerator=self.accelerator, n_threads=self.n_threads,
            devices=self.devices, num_nodes=self.num_nodes,
        )  # fmt: skip


@dataclass(frozen=True)
class Embedding:
    name: str
    user_ids: np.ndarray
    vectors: np.ndarray  # (n_users, dim), float32; row i is user_ids[i]


@dataclass(frozen=True)
class FitOptions:
    """How a run trains its learned families (None: the family's own default). Families without training
    ignore them; a learned family takes them in `configure`."""

    max_epochs: int | None = None
    time_budget_s: float | None = None
    accelerator: str = "auto"
    devices: int = 1  # processes (CPU) or GPUs per node; more than one trains with Lightning's DDP
    num_nodes: int = 1
    logger: Any = (
        None  # a Lightning Logger for train/loss and val/loss per epoch (e.g. models.common.EpochLog)
    )
    text_cache: Path | None = None  # the text family's item vectors, kept across fits (a Parquet file)

    def train_overrides(self) -> dict[str, Any]:
        """The fields of a models.common.TrainSettings these options set."""
        overrides: dict[str, Any] = {
            "accelerator": self.accelerator, "devices": self.devices, "num_nodes": self.num_nodes,
        }  # fmt: skip
        if self.max_epochs is not None:
            overrides["max_epochs"] = self.max_epochs
        if self.time_budget_s is not None:
            overrides["max_time_s"] = self.time_budget_s
        return overrides


class Embedder(Protocol):
    """Learns from the features of the fit's users; embeds any users' features, old or new."""

    name: str

    def fit(self, features: UserFeatures) -> Self: ...

    def transform(self, features: UserFeatures) -> Embedding: ...

    def save(self, path: Path | str) -> Path: ...

    @classmethod
    def load(cls, path: Path | str) -> Self: ...


def embedding_frame(embedding: Embedding) -> pl.DataFrame:
    """`user_id, dim_0, dim_1, ...`: the embedding as a table."""
    return pl.DataFrame({"user_id": embedding.user_ids.astype(str)}).with_columns(
        [pl.Series(f"dim_{i}", embedding.vectors[:, i]) for i in range(embedding.vectors.shape[1])]
    )
