"""`text`: what items are, from their words. Each item's text (title, category and any longer text) is encoded
by all-MiniLM-L6-v2 (tasks/embed/item_text.py: the texts, the encoder, the cache of vectors); a user's
vector is the mean of their items' vectors, weighted by the interaction weight and halved every
`half_life_days` before the fit's last event, then L2-normalised.

Item vectors are cached by the hash of their text: the fitted embedder keeps those of its items, and an
optional `store` (anything with `load_cache()` and `store_cache(new)`, e.g. `ParquetVectorStore` or the
warehouse table `item_text_vectors(text_hash, vector)`) keeps them across fits, so only new or changed items
are encoded. A new user is the same weighted mean; their unseen items are encoded on the way. The encoder is
never pickled: a loaded embedder loads it again when it first meets an unseen text."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Self

import numpy as np
import polars as pl
import pyarrow as pa
import scipy.sparse as sp
import torch
from pytorch_lightning.loggers import Logger
from sklearn.preprocessing import normalize

from models.autoencoder import one_thread
from models.common import TrainSettings, make_trainer, training_scope
from models.text_head import NextItemDataModule, NextItemModule, ProjectionHead
from tasks.embed.base import Embedding, FitOptions
from tasks.embed.item_text import (
    ENCODER_DIM,
    ParquetVectorStore,
    SentenceEncoder,
    VectorStore,
    encode_missing,
    encoder_device,
    item_texts,
    text_hash,
)
from tasks.features.user_features import UserFeatures
from tasks.fitted import Saveable

HEAD_TRAIN = TrainSettings(max_epochs=20, patience=3, lr=1e-3, batch_size=256)
SAMPLES_PER_USER = 5  # next-item steps drawn per user for the head
MAX_HISTORY = 50  # items before a step that make its history
MAX_SAMPLES = 50_000


class TextEmbedder(Saveable):
    name = "text"

    def __init__(
        self,
        seed: int = 0,
        half_life_days: float | None = 90.0,
        store: VectorStore | None = None,
        head: bool = False,
        head_train: TrainSettings = HEAD_TRAIN,
        logger: Logger | None = None,
    ) -> None:
        self.seed = seed
        self.half_life_days = half_life_days
        self.store = store  # never saved: it may hold a connection
        self.use_head = head
        self.head_train = head_train
        self.logger = logger  # never saved
        self.vectors: dict[str, np.ndarray] = {}  # text hash -> item vector, for the fit's items
        self.encoder = SentenceEncoder()

    def configure(self, options: FitOptions) -> Self:
        """Train the head as the run says; keep item vectors in the run's text cache, when it has one."""
        self.head_train = replace(self.head_train, **options.train_overrides())
        self.logger = options.logger
        # Texts the cache lacks are encoded where the head trains (a reloaded embedder encodes on the CPU).
        self.encoder = SentenceEncoder(encoder_device(options.accelerator, torch.cuda.is_available()))
        if options.text_cache is not None:
            self.store = ParquetVectorStore(options.text_cache)
        return self

    def fit(self, features: UserFeatures) -> Self:
        texts = item_texts(features.items)
        if not texts:
            raise ValueError(
                "the text embedding needs items with a title, a category or a text; these have none"
            )
        self.end_ts = pa.compute.max(features.events.column("ts")).as_py()
        before = self.encoder.n_encoded
        known = self.vectors | (self.store.load_cache() if self.store is not None else {})
        self.vectors = self._item_vectors(texts, known)
        self.n_encoded = self.encoder.n_encoded - before  # what this fit had to encode
        self.centre = np.mean(list(self.vectors.values()), axis=0).astype(np.float32)
        self.head = self._fit_head(features, texts) if self.use_head else None
        return self

    def transform(self, features: UserFeatures) -> Embedding:
        texts = item_texts(features.items)
        vectors = self._item_vectors(texts, self.vectors)
        items = np.array(sorted(texts), dtype=object)
        matrix = (
            np.vstack([vectors[text_hash(texts[i])] for i in items])
            if len(items)
            else np.zeros((0, ENCODER_DIM))
        )
        users = user_item_weights(features, items, self.end_ts, self.half_life_days) @ matrix
        has_words = np.abs(users).sum(axis=1, keepdims=True) > 0
        centre = self.centre[None, :]
        if self.head is not None:
            with one_thread():
                users, centre = self.head.project(users), self.head.project(centre)
        # Centred on the catalogue: what every item's words share (most of a sentence vector) says nothing
        # about a user, and left in, it shrinks the differences between users next to other blocks of a fusion.
        # A user none of whose items has words has no taste to tell them apart by: a zero vector.
        users = np.where(has_words, users - centre, 0.0)
        vectors = normalize(users) if len(users) else np.zeros((0, users.shape[1]))  # no users: no rows
        return Embedding(self.name, features.users, vectors.astype(np.float32))

    def _fit_head(self, features: UserFeatures, texts: dict[str, str]) -> ProjectionHead:
        with training_scope(self.seed), one_thread():
            data, module = self.head_parts(features, texts)
            trainer, _ = make_trainer(self.head_train, self.logger)
            trainer.fit(module, datamodule=data)
        self.head_epochs = trainer.current_epoch
        return module.head.cpu().eval()

    def head_parts(
        self, features: UserFeatures, texts: dict[str, str]
    ) -> tuple[NextItemDataModule, NextItemModule]:
        """The head's DataModule and LightningModule, over the item vectors of the fit (`self.vectors`).
        benchmarks/train.py times these with and without Lightning."""
        items = np.array(sorted(texts), dtype=object)
        matrix = np.vstack([self.vectors[text_hash(texts[i])] for i in items])
        history, targets, is_val = next_item_steps(features, items, np.random.default_rng(self.seed))
        head = ProjectionHead(matrix.shape[1])
        data = NextItemDataModule(history @ matrix, targets, is_val, self.head_train.batch_size, self.seed)
        return data, NextItemModule(head, torch.as_tensor(matrix), lr=self.head_train.lr)

    def _item_vectors(self, texts: dict[str, str], known: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """text hash -> vector for the items' texts: known ones looked up, the rest encoded (and stored)."""
        by_hash = {text_hash(t): t for t in texts.values()}
        new = encode_missing(self.encoder, by_hash, known)
        if new and self.store is not None:
            self.store.store_cache(new)
        return {h: known[h] if h in known else new[h] for h in by_hash}

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("store", "encoder", "logger")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.store = self.logger = None
        self.encoder = SentenceEncoder()


def user_item_weights(
    features: UserFeatures, items: np.ndarray, end_ts, half_life_days: float | None
) -> sp.csr_matrix:
    """(users, items): each user's interaction weights times 2^(-days before `end_ts` / half-life), rows
    summing to 1. Computed in logs and shifted by each user's largest, so old histories do not underflow."""
    frame = features.interactions.select(
        "user_id", "item_id", pl.col("weight").cast(pl.Float64), pl.col("last_ts")
    ).filter(pl.col("weight") > 0)
    log_weight = pl.col("weight").log()
    if half_life_days is not None:
        age_days = ((pl.lit(end_ts) - pl.col("last_ts")).dt.total_seconds() / 86_400).clip(lower_bound=0)
        log_weight = log_weight - age_days * (math.log(2) / half_life_days)
    coded = (
        frame.with_columns(log_weight.alias("log_weight"))
        .join(
            pl.DataFrame({"user_id": features.users.astype(str), "u": np.arange(len(features.users))}),
            on="user_id",
        )
        .join(pl.DataFrame({"item_id": items.astype(str), "i": np.arange(len(items))}), on="item_id")
        .with_columns((pl.col("log_weight") - pl.col("log_weight").max().over("u")).exp().alias("w"))
        .with_columns(pl.col("w") / pl.col("w").sum().over("u"))
    )
    shape = (len(features.users), len(items))
    return sp.csr_matrix((coded["w"].to_numpy(), (coded["u"].to_numpy(), coded["i"].to_numpy())), shape=shape)


def next_item_steps(
    features: UserFeatures, items: np.ndarray, rng: np.random.Generator
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Next-item steps for the head: up to SAMPLES_PER_USER random steps per user (by first interaction), each
    the weighted mean of the MAX_HISTORY items before it (as weights over `items`), the step's item (a row of
    `items`), and whether the step's user is one of the 10% kept for validation."""
    ordered = (
        features.interactions.filter(pl.col("weight") > 0)
        .join(pl.DataFrame({"item_id": items.astype(str), "i": np.arange(len(items))}), on="item_id")
        .sort("user_id", "first_ts", "item_id")
    )
    codes, weights = ordered["i"].to_numpy(), ordered["weight"].cast(pl.Float64).to_numpy()
    user_ids = ordered["user_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, user_ids[1:] != user_ids[:-1]]) if len(user_ids) else np.zeros(0, int)
    bounds = list(zip(starts, np.r_[starts[1:], len(ordered)], strict=True))
    per_user = min(SAMPLES_PER_USER, max(1, MAX_SAMPLES // max(len(bounds), 1)))
    rows, columns, values, targets, is_val = [], [], [], [], []
    for start, end in bounds:
        if end - start < 2:
            continue
        held = rng.random() < 0.1
        steps = rng.choice(np.arange(start + 1, end), size=min(per_user, end - start - 1), replace=False)
        for step in np.sort(steps):
            first = max(start, step - MAX_HISTORY)
            rows += [len(targets)] * (step - first)
            columns += codes[first:step].tolist()
            values += (weights[first:step] / weights[first:step].sum()).tolist()
            targets.append(codes[step])
            is_val.append(held)
    history = sp.csr_matrix((values, (rows, columns)), shape=(len(targets), len(items)))
    return history, np.array(targets, dtype=np.int64), np.array(is_val, dtype=bool)
