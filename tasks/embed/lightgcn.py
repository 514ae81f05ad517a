"""`lightgcn`: LightGCN on the weighted user-item graph (`fct_interactions`, positive weights, log-damped),
trained with BPR on sampled negatives (models/lightgcn.py).

A user of the fit gets their own final (propagated) vector. A user the fit never saw is folded in from the
fitted items' final vectors: the mean of their items' vectors weighted as one propagation step would weigh
them (log1p(weight) / sqrt(item degree)); items the fit never saw are ignored, and a user with none of the
fitted items gets the zero vector, as does a fit's user without a positive-weight item. Rows are L2-normalised.
"""

from __future__ import annotations

import time
from typing import Self

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch
from pydantic import Field
from pytorch_lightning.loggers import Logger

from models.common import copy_state, make_trainer, training_scope
from models.lightgcn import LightGCN, LightGCNConfig, LightGCNData, LightGCNModule
from tasks.embed.base import Embedding, FitOptions, LearnedSettings
from tasks.features.user_features import UserFeatures
from tasks.fitted import Saveable


class LightGCNSettings(LearnedSettings):
    """LightGCN's sizes and training budget; the defaults are sized for a CPU."""

    dim: int = Field(64, ge=1, description="Width of the user and item vectors")
    n_layers: int = Field(2, ge=0, description="Propagation layers; 0 is plain matrix factorisation (BPR)")
    reg: float = Field(1e-4, ge=0, description="L2 weight on a batch's base embeddings")
    lr: float = Field(1e-2, gt=0, description="Adam learning rate")
    batch_size: int = Field(2048, ge=1, description="Edges per batch")
    edges_per_epoch: int = Field(200_000, ge=1, description="Training edges drawn per epoch (at most all)")
    graph_edges_per_epoch: int = Field(
        4_000_000,
        ge=1,
        description="Most steps x training edges per epoch: every step propagates over the whole graph, so a "
        "large graph's epoch comes in fewer, larger batches and costs about the same as a small one's",
    )
    val_fraction: float = Field(0.05, ge=0, lt=1, description="Share of edges held out for val/loss")
    max_epochs: int = Field(12, ge=1, description="Most epochs (on 2 cores an epoch takes about 2 s)")


class LightGCNEmbedder(Saveable):
    name = "lightgcn"

    def __init__(
        self, seed: int = 0, settings: LightGCNSettings | None = None, logger: Logger | None = None
    ) -> None:
        self.seed = seed
        self.settings = settings or LightGCNSettings()
        self.logger = logger  # e.g. an MLFlowLogger for train/loss and val/loss per epoch; never saved

    def configure(self, options: FitOptions) -> Self:
        """Train as the run says (epochs, time budget, accelerator, processes, logger)."""
        self.settings = self.settings.model_copy(update=options.train_overrides())
        self.logger = options.logger
        return self

    def fit(self, features: UserFeatures, logger: Logger | None = None) -> Self:
        """Train on the graph of `features`' users and items. `logger` (e.g. an MLFlowLogger; default: the
        one given at construction) gets train/loss and val/loss per epoch."""
        started = time.perf_counter()
        with training_scope(self.seed, self.settings.n_threads):
            data, module = self.training_parts(features)
            trainer, keep_best = make_trainer(
                self.settings.train_settings(), logger or self.logger, validate=data.has_validation
            )
            trainer.fit(module, datamodule=data)
            model = module.model.cpu().eval()
            with torch.no_grad():
                final = model(data.full_adjacency()).numpy()
        n_users, n_items = self.config.n_users, self.config.n_items
        self.state = copy_state(model)
        self.training = {
            "epochs": float(trainer.current_epoch),
            "seconds": time.perf_counter() - started,
            "best_val_loss": keep_best.best,
            "n_edges": float(len(data.users)),
        }
        self.user_vectors = final[:n_users].astype(np.float32)
        # A user without a positive edge (e.g. only returns) is no node of the graph: their row is still its
        # random start. Zero, as a new user with that history is folded in: no taste, not a random one.
        self.user_vectors[np.bincount(data.users, minlength=n_users) == 0] = 0.0
        self.item_vectors = final[n_users:].astype(np.float32)
        degree = np.bincount(data.items, data.weights, n_items)
        self.item_scale = (1.0 / np.sqrt(np.maximum(degree, 1e-12))).astype(np.float32)
        return self

    def training_parts(self, features: UserFeatures) -> tuple[LightGCNData, LightGCNModule]:
        """The first step of a fit: the user and item vocabularies (kept), then the DataModule and the
        LightningModule to train. benchmarks/train.py times these with and without Lightning."""
        settings = self.settings
        self.users = np.asarray(features.users, dtype=object)
        edges = _edges(features.interactions)
        self.items = np.array(sorted(edges["item_id"].unique().to_list()), dtype=object)
        users, items, weights = _coded(edges, self.users, self.items)
        self.fingerprints = _fingerprints(edges, self.users)
        self.config = LightGCNConfig(
            len(self.users), len(self.items), settings.dim, settings.n_layers, settings.reg
        )
        data = LightGCNData(
            self.config.n_users, self.config.n_items, users, items, weights,
            batch_size=settings.batch_size, edges_per_epoch=settings.edges_per_epoch,
            val_fraction=settings.val_fraction, seed=self.seed,
            graph_edges_per_epoch=settings.graph_edges_per_epoch,
        )  # fmt: skip
        data.setup("fit")
        return data, LightGCNModule(LightGCN(self.config), data.train_adjacency, settings.lr)

    def transform(self, features: UserFeatures) -> Embedding:
        users = np.asarray(features.users, dtype=object)
        known = pl.DataFrame({"user_id": users.astype(str)}).join(
            pl.DataFrame({"user_id": self.users.astype(str), "row": np.arange(len(self.users))}),
            on="user_id",
            how="left",
            maintain_order="left",
        )["row"]
        rows = known.fill_null(-1).to_numpy()
        is_known = rows >= 0
        fitted = getattr(self, "fingerprints", None)  # None: an embedder saved before they were kept
        if fitted is not None and is_known.any():  # a fit's user with other items since is folded in too
            now = _fingerprints(_edges(features.interactions), users[is_known])
            is_known[is_known] = now == fitted[rows[is_known]]
        vectors = np.zeros((len(users), self.item_vectors.shape[1]), dtype=np.float32)
        vectors[is_known] = self.user_vectors[rows[is_known]]
        if not is_known.all():  # the users the fit never saw, or saw with other items (helper 38), folded in
            vectors[~is_known] = self.fold_in(features, users[~is_known])
        return Embedding(self.name, features.users, _normalized(vectors))

    def fold_in(self, features: UserFeatures, users: np.ndarray | None = None) -> np.ndarray:
        """Users of `features` (default: all) from the fitted item vectors, as if the fit had never seen them:
        one sparse product (users x items) @ (items x dim), never an array of edges x dim."""
        users = np.asarray(features.users if users is None else users, dtype=object)
        rows, items, weights = _coded(_edges(features.interactions), users, self.items)
        mixing = sp.csr_matrix(
            (weights * self.item_scale[items], (rows, items)), shape=(len(users), len(self.items))
        )
        return np.asarray(mixing @ self.item_vectors.astype(np.float64), dtype=np.float32)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "logger"} | {"logger": None}

    def module(self) -> LightGCN:
        """The trained network, rebuilt from its weights."""
        model = LightGCN(self.config)
        model.load_state_dict(self.state)
        return model.eval()


def _edges(interactions: pl.DataFrame) -> pl.DataFrame:
    """Positive-weight user-item pairs, weights damped by log1p (a heavy repeat is not a stronger tie in kind)."""
    return interactions.select(
        pl.col("user_id").cast(pl.String),
        pl.col("item_id").cast(pl.String),
        pl.col("weight").cast(pl.Float64).clip(lower_bound=0).log1p().alias("weight"),
    ).filter(pl.col("weight") > 0)


def _fingerprints(edges: pl.DataFrame, users: np.ndarray) -> np.ndarray:
    """A hash of each user's positive edges (items and damped weights), in the order of `users` (0 for a user
    without one): equal when the graph holds the same edges of theirs."""
    hashed = (
        edges.select("user_id", pl.struct("item_id", pl.col("weight").round(9)).hash(seed=0).alias("h"))
        .group_by("user_id")
        .agg(pl.col("h").sort())
        .select("user_id", pl.col("h").hash(seed=0))
    )
    return (
        pl.DataFrame({"user_id": users.astype(str)})
        .join(hashed, on="user_id", how="left", maintain_order="left")["h"]
        .fill_null(0)
        .to_numpy()
    )


def _coded(
    edges: pl.DataFrame, users: np.ndarray, items: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges as (user row, item column, weight) arrays, sorted by row then column; pairs outside `users` x
    `items` are dropped. Rows and columns are the ids' positions in `users` and `items` (each without
    repeats), found as codes of an Enum over them: no join of string columns (at 14M edges: 1.5 GB)."""
    coded = (
        edges.select(
            pl.col("user_id")
            .cast(pl.Enum(users.astype(str).tolist()), strict=False)
            .to_physical()
            .alias("u"),
            pl.col("item_id")
            .cast(pl.Enum(items.astype(str).tolist()), strict=False)
            .to_physical()
            .alias("i"),
            "weight",
        )
        .drop_nulls(["u", "i"])
        .sort("u", "i")
    )
    return (
        coded["u"].to_numpy().astype(np.int64),
        coded["i"].to_numpy().astype(np.int64),
        coded["weight"].to_numpy(),
    )


def _normalized(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)
