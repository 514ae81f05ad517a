"""`sequence`: a small causal Transformer (SASRec-like) over each user's most recent items, trained on
next-item prediction (models/sequence.py); the user's vector is the output at the last position.

A user's items are their events ordered by time (ties by item and event type); consecutive events on the same
item are one step (a view, add-to-cart and purchase of one item is one step, typed by its last event). The
item vocabulary (the `max_items` most frequent items of the fit) and the event types are fitted: any user, old
or new, is embedded by the same forward pass over their latest `max_len` steps, and an item or event type
the fit never saw maps to the unknown token. Rows are L2-normalised.
"""

from __future__ import annotations

import time
from typing import Self

import numpy as np
import polars as pl
import pyarrow as pa
import torch
from pydantic import Field
from pytorch_lightning.loggers import Logger

from models.common import copy_state, make_trainer, torch_threads, training_scope
from models.sequence import (
    FIRST_ITEM,
    UNKNOWN,
    SequenceConfig,
    SequenceData,
    SequenceEncoder,
    SequenceModule,
    last_windows,
)
from tasks.embed.base import Embedding, FitOptions, LearnedSettings
from tasks.features.user_features import UserFeatures
from tasks.fitted import Saveable

ENCODE_BATCH = 1024


class SequenceSettings(LearnedSettings):
    """The sequence model's sizes and training budget; the defaults are sized for a CPU."""

    max_len: int = Field(50, ge=2, description="Latest steps a user's vector reads")
    dim: int = Field(64, ge=2, description="Width of the item vectors and of the user's vector")
    n_layers: int = Field(2, ge=1, description="Transformer blocks")
    n_heads: int = Field(2, ge=1, description="Attention heads (dim must divide by them)")
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout in training")
    use_event_types: bool = Field(True, description="Add an event-type embedding to each step")
    n_negatives: int = Field(128, ge=1, description="Sampled negative items per batch (sampled softmax)")
    max_items: int = Field(100_000, ge=1, description="Item vocabulary: the most frequent items of the fit")
    max_windows_per_user: int = Field(
        20, ge=1, description="Training windows of max_len per user, latest first"
    )
    tokens_per_epoch: int = Field(
        100_000,
        ge=1,
        description="Most items in an epoch's windows (an epoch then costs about 3 s on 2 cores)",
    )
    windows_per_epoch: int = Field(
        10_000, ge=1, description="Most training windows per epoch (small data: whole passes, 8+ batches)"
    )
    val_fraction: float = Field(
        0.1, ge=0, lt=1, description="Share of users whose latest item is val/loss (500 to 1,000 users)"
    )
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    batch_size: int = Field(128, ge=1, description="Windows per batch")
    max_epochs: int = Field(8, ge=1, description="Most epochs (on 2 cores an epoch takes about 3 s)")


class SequenceEmbedder(Saveable):
    name = "sequence"

    def __init__(
        self, seed: int = 0, settings: SequenceSettings | None = None, logger: Logger | None = None
    ) -> None:
        self.seed = seed
        self.settings = settings or SequenceSettings()
        self.logger = logger  # e.g. an MLFlowLogger for train/loss and val/loss per epoch; never saved

    def configure(self, options: FitOptions) -> Self:
        """Train as the run says (epochs, time budget, accelerator, processes, logger)."""
        self.settings = self.settings.model_copy(update=options.train_overrides())
        self.logger = options.logger
        return self

    def fit(self, features: UserFeatures, logger: Logger | None = None) -> Self:
        """Train on the sequences of `features`' users. `logger` (e.g. an MLFlowLogger; default: the
        one given at construction) gets train/loss and val/loss per epoch."""
        started = time.perf_counter()
        with training_scope(self.seed, self.settings.n_threads):
            data, module = self.training_parts(features)
            trainer, keep_best = make_trainer(
                self.settings.train_settings(), logger or self.logger, validate=data.has_validation
            )
            trainer.fit(module, datamodule=data)
        self.state = copy_state(module.model)
        self.training = {
            "epochs": float(trainer.current_epoch),
            "seconds": time.perf_counter() - started,
            "best_val_loss": keep_best.best,
            "n_windows": float(len(data.train_windows[0])),
        }
        return self

    def training_parts(self, features: UserFeatures) -> tuple[SequenceData, SequenceModule]:
        """The first step of a fit: the item and event-type vocabularies (kept), then the DataModule and the
        LightningModule to train. benchmarks/train.py times these with and without Lightning."""
        settings = self.settings
        steps = item_steps(features.events)
        counts = steps.group_by("item_id").len().sort(["len", "item_id"], descending=[True, False])
        self.items = np.array(sorted(counts["item_id"].head(settings.max_items).to_list()), dtype=object)
        self.event_types = np.array(sorted(steps["event_type"].unique().to_list()), dtype=object)
        users = np.asarray(features.users, dtype=object)
        user_codes, items, types = self._tokens(steps, users)
        self.config = SequenceConfig(
            n_tokens=len(self.items) + FIRST_ITEM, n_event_types=len(self.event_types) + 1,
            max_len=settings.max_len, dim=settings.dim, n_layers=settings.n_layers, n_heads=settings.n_heads,
            dropout=settings.dropout, use_event_types=settings.use_event_types,
        )  # fmt: skip
        data = SequenceData(
            user_codes, items, types, len(users), self.config.n_tokens, max_len=settings.max_len,
            max_windows_per_user=settings.max_windows_per_user, windows_per_epoch=settings.windows_per_epoch,
            tokens_per_epoch=settings.tokens_per_epoch,
            batch_size=settings.batch_size, val_fraction=settings.val_fraction,
            n_negatives=settings.n_negatives, seed=self.seed,
        )  # fmt: skip
        data.setup("fit")
        module = SequenceModule(
            SequenceEncoder(self.config), settings.lr, settings.n_negatives, settings.weight_decay
        )
        return data, module

    def transform(self, features: UserFeatures) -> Embedding:
        users = np.asarray(features.users, dtype=object)
        user_codes, items, types = self._tokens(item_steps(features.events), users)
        window_items, window_types = last_windows(user_codes, items, types, len(users), self.config.max_len)
        model = self.module()
        vectors = np.zeros((len(users), self.config.dim), dtype=np.float32)
        with torch.no_grad(), torch_threads(self.settings.n_threads):
            for start in range(0, len(users), ENCODE_BATCH):
                rows = slice(start, start + ENCODE_BATCH)
                batch = torch.from_numpy(window_items[rows]), torch.from_numpy(window_types[rows])
                vectors[rows] = model.encode(*batch).numpy()
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return Embedding(self.name, features.users, (vectors / np.maximum(norms, 1e-12)).astype(np.float32))

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "logger"} | {"logger": None}

    def module(self) -> SequenceEncoder:
        """The trained network, rebuilt from its weights (the fitted object pickles weights, not modules)."""
        model = SequenceEncoder(self.config)
        model.load_state_dict(self.state)
        return model.eval()

    def _tokens(self, steps: pl.DataFrame, users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Steps of `users` as (user code, item token, event-type token) arrays, grouped by user in time order."""
        coded = (
            steps.join(
                pl.DataFrame({"user_id": users.astype(str), "user": np.arange(len(users))}), on="user_id"
            )
            .join(
                pl.DataFrame(
                    {"item_id": self.items.astype(str), "item": np.arange(len(self.items)) + FIRST_ITEM}
                ),
                on="item_id",
                how="left",
            )
            .join(
                pl.DataFrame(
                    {"event_type": self.event_types.astype(str), "type": np.arange(len(self.event_types)) + 1}
                ),
                on="event_type",
                how="left",
            )
            .sort("user", "step")
        )
        return (
            coded["user"].to_numpy().astype(np.int64),
            coded["item"].fill_null(UNKNOWN).to_numpy().astype(np.int64),
            coded["type"].fill_null(0).to_numpy().astype(np.int64),
        )


def item_steps(events: pa.Table) -> pl.DataFrame:
    """`user_id, item_id, event_type, step`: each user's events in time order with runs on one item collapsed
    into their last event; `step` orders a user's steps."""
    frame = (
        pl.from_arrow(events.select(["user_id", "item_id", "event_type", "ts"]))
        .with_columns(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String))
        .sort("user_id", "ts", "item_id", "event_type", nulls_last=True)
    )
    last_of_run = (
        (pl.col("item_id") != pl.col("item_id").shift(-1))
        | (pl.col("user_id") != pl.col("user_id").shift(-1))
    ).fill_null(True)
    return (
        frame.filter(last_of_run)
        .with_columns(pl.int_range(pl.len()).alias("step"))
        .select("user_id", "item_id", "event_type", "step")
    )
