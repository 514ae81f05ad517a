"""How segments are made: the settings of a segmentation, as the CLI, the flows and the Prefect UI show them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from tasks.clock import check_timezone
from tasks.cluster.registry import CLUSTERERS
from tasks.embed.registry import EMBEDDERS
from tasks.engine import EngineName
from tasks.features.interactions import InteractionWeights
from tasks.publish.publish import DEFAULT_KEEP_EXPORTS

# What `--embedding auto` trains, where the data support it (tasks/segment/families.py).
# svd is left out: combined is behaviour + svd, which is what svd is for segments of people.
AUTO_FAMILIES = ("combined", "autoencoder", "lightgcn", "sequence", "text")
ClustererName = Literal[tuple(CLUSTERERS)]  # type: ignore[valid-type]


class SegmentSettings(BaseModel):
    """How segments are made. The defaults are what `segflow run` uses."""

    embedding: str = Field(
        "auto",
        description="How users become vectors: auto (train the families the data support, "
        f"{', '.join(AUTO_FAMILIES)}, and publish the best on the holdout), one family, or several "
        "separated by commas; families: " + ", ".join(EMBEDDERS),
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
    timezone: str | None = Field(
        None,
        description="The users' clock for day parts and weekends, an IANA time zone (America/New_York); "
        "none: the source's (its spec's timezone), else UTC",
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
    personal_weight: float | Literal["auto"] = Field(
        "auto",
        description="How much a user's own taste reorders their blended list (0: the micro-segments' lists "
        "alone, 1: only the user's taste), or auto: chosen by usefulness",
    )
    require_lift: bool = Field(
        False, description="Refuse to publish when the published lists are not more useful than popularity"
    )

    max_epochs: int | None = Field(
        None, ge=1, description="Most epochs per learned family fit and DEC fit (default: each one's own)"
    )
    time_budget_s: float | None = Field(
        None,
        gt=0,
        description="A wall-clock cap per learned family fit and DEC fit, in seconds (none: a fit is bounded by its epochs; "
        "a cap that stops one makes its vectors depend on the machine's speed)",
    )
    accelerator: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="Where learned families and DEC train: auto (a GPU when present), cpu or gpu"
    )
    engine: EngineName = Field(
        "duckdb",
        description="Where the feature SQL runs: duckdb (in this process) or spark (the same sql/features "
        "files, transpiled; the rest of the run is the same)",
    )
    spark_master: str | None = Field(
        None,
        description="With engine spark: a Spark master (local[*], spark://host:7077) or a Spark Connect URL "
        "(sc://host:15002); none: env SPARK_REMOTE when set, else local[*]",
    )
    devices: int = Field(
        1,
        ge=1,
        description="Processes (CPU) or GPUs per machine a learned family trains on; more than one: DDP",
    )
    num_nodes: int = Field(1, ge=1, description="Machines a learned family trains on together (DDP)")
    task_runner: Literal["thread", "dask", "ray"] = Field(
        "thread",
        description="Where the flow's independent tasks run: thread (one after another in the flow's "
        "process), dask or ray (in parallel on a cluster: a local one, or the one at cluster_address)",
    )
    cluster_address: str | None = Field(
        None,
        description="The Dask scheduler (tcp://host:8786) or Ray cluster (ray://host:10001, auto) the dask or "
        "ray task runner uses; none: a local cluster started for the run",
    )
    drift_max_psi: float = Field(
        0.25, ge=0, description="Warn when segment sizes shift more than this PSI from the published run"
    )
    drift_max_changed_share: float = Field(
        0.3, ge=0, le=1, description="Warn when more than this share of users changed segment since then"
    )
    keep_exports: int = Field(
        DEFAULT_KEEP_EXPORTS,
        ge=1,
        description="Export folders kept under exports/ (the current one and the newest others), and as many "
        "run segmenters under segmenters/",
    )
    force: bool = Field(
        False,
        description="Publish and make champion even when the champion scores better on this run's holdout",
    )

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Settings saved before a field existed (in an older run's segmenter) load with its default: reading
        `timezone` of a segmenter saved before it raised AttributeError (helper 35)."""
        defaults = {
            name: field.get_default(call_default_factory=True)
            for name, field in type(self).model_fields.items()
        }
        super().__setstate__({**state, "__dict__": defaults | state["__dict__"]})

    @property
    def families(self) -> tuple[str, ...]:
        """The families named (auto: every family auto may train; which it does depends on the data)."""
        if self.embedding == "auto":
            return AUTO_FAMILIES
        return tuple(name.strip() for name in self.embedding.split(","))

    @property
    def reference_embedding(self) -> str:
        """The embedding the K sweep runs on: the family named, or combined when several may compete."""
        return self.families[0] if len(self.families) == 1 and self.embedding != "auto" else "combined"

    @field_validator("embedding")
    @classmethod
    def _known_families(cls, embedding: str) -> str:
        embedding = embedding.strip()
        if embedding == "auto":
            return embedding
        names = [name.strip() for name in embedding.split(",")]
        unknown = [name for name in names if name not in EMBEDDERS]
        if unknown or not names:
            raise ValueError(
                f"unknown embedding {', '.join(unknown) or embedding!r}; "
                f"choose auto or one or more of {', '.join(EMBEDDERS)}"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"a family is named twice in {embedding!r}")
        return ",".join(names)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str | None) -> str | None:
        return None if name is None else check_timezone(name)

    @field_validator("personal_weight")
    @classmethod
    def _a_share(cls, weight: float | str) -> float | str:
        if weight != "auto" and not 0 <= float(weight) <= 1:
            raise ValueError(f"personal_weight must be between 0 and 1 or 'auto', not {weight}")
        return weight

    @field_validator("k", "micro_k")
    @classmethod
    def _at_least_two(cls, k: int | str, info: ValidationInfo) -> int | str:
        if k != "auto" and int(k) < 2:
            raise ValueError(f"{info.field_name} must be at least 2 or 'auto', not {k}")
        return k
