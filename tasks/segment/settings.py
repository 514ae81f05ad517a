"""How segments are made: the settings of a segmentation, as the CLI, the flows and the Prefect UI show them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from tasks.cluster.registry import CLUSTERERS
from tasks.embed.registry import EMBEDDERS
from tasks.features.interactions import InteractionWeights

EmbeddingName = Literal[tuple(EMBEDDERS)]  # type: ignore[valid-type]
ClustererName = Literal[tuple(CLUSTERERS)]  # type: ignore[valid-type]


class SegmentSettings(BaseModel):
    """How segments are made. The defaults are what `segflow run` uses."""

    embedding: EmbeddingName = Field(
        "combined", description="How users become vectors: " + ", ".join(EMBEDDERS)
    )
    clusterer: ClustererName = Field(
        "kmeans", description="How vectors become segments: " + ", ".join(CLUSTERERS)
    )
    k: int | Literal["auto"] = Field(
        "auto", description="Number of segments (at least 2), or auto (the K rule)"
    )
    k_min: int = Field(2, ge=2, description="Smallest K the sweep tries")
    k_max: int = Field(30, ge=2, description="Largest K the sweep tries")
    seed: int = Field(0, description="Random seed: the same seed and data give the same segments")
    n_recommendations: int = Field(100, ge=1, description="Items in each segment's top list")
    weights: InteractionWeights = Field(
        default_factory=InteractionWeights, description="Weight per event type"
    )

    @field_validator("k")
    @classmethod
    def _at_least_two(cls, k: int | str) -> int | str:
        if k != "auto" and int(k) < 2:
            raise ValueError(f"k must be at least 2 or 'auto', not {k}")
        return k
