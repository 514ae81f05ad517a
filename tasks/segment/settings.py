"""How segments are made: the settings of a segmentation, as the CLI, the flows and the Prefect UI show them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

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
        "auto", description="Number of segments for people (at least 2), or auto: chosen by structure"
    )
    k_min: int = Field(2, ge=2, description="Smallest K the sweep tries")
    k_max: int = Field(30, ge=2, description="Largest K the sweep tries")
    seed: int = Field(0, description="Random seed: the same seed and data give the same segments")
    n_recommendations: int = Field(100, ge=1, description="Items in each segment's top list")
    weights: InteractionWeights = Field(
        default_factory=InteractionWeights, description="Weight per event type"
    )

    min_segment_size: int | None = Field(
        None,
        ge=1,
        description="Smallest published segment; smaller ones merge into their nearest (default max(20, 1%))",
    )
    micro_k: int | Literal["auto"] = Field(
        "auto", description="Number of micro-segments for recommenders, or auto: chosen by usefulness"
    )
    n_memberships: int = Field(3, ge=1, description="Micro-segments per user, weighted, in user_memberships")
    n_user_recommendations: int = Field(20, ge=1, description="Items in each user's blended list")
    require_lift: bool = Field(
        False, description="Refuse to publish when the published lists are not more useful than popularity"
    )

    @field_validator("k", "micro_k")
    @classmethod
    def _at_least_two(cls, k: int | str, info: ValidationInfo) -> int | str:
        if k != "auto" and int(k) < 2:
            raise ValueError(f"{info.field_name} must be at least 2 or 'auto', not {k}")
        return k
