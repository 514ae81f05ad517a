"""`autoencoder`: an MLP autoencoder (models/autoencoder.py) over the standardised behaviour features beside the
svd taste; a user's vector is the bottleneck, so a new user is one forward pass through the fitted encoder."""

from __future__ import annotations

from dataclasses import replace
from typing import Self

import numpy as np
from pytorch_lightning.loggers import Logger

from models.autoencoder import (
    AutoencoderConfig,
    AutoencoderModule,
    MLPAutoencoder,
    VectorDataModule,
    one_thread,
)
from models.common import TrainSettings, make_trainer, training_scope
from tasks.embed.base import Embedding, FitOptions
from tasks.embed.behaviour import BehaviourEmbedder
from tasks.embed.svd import SvdEmbedder
from tasks.features.user_features import UserFeatures
from tasks.fitted import Saveable

# Batches of 256 users: against 128 (and 512), the lower best val/loss on ml-latest-small (0.1679 against 0.1695
# and 0.1699) and on the 3,000-user demo (0.1252 against 0.1275 and 0.1300), in less time.
TRAIN = TrainSettings(max_epochs=100, patience=5, lr=1e-3, batch_size=256)
ROWS_PER_EPOCH = 5_000  # an epoch's users at most: 0.3 s on 2 cores, whatever the number of users
# ... and at least this many batches (whole passes over few users): ml-latest-small's 549 training users made 5
# steps an epoch of 128, and after all 100 epochs val/loss was still falling (0.186); with 16 batches early
# stopping ends the fit at epoch 65 (0.1679). One group of Lightning steps (models/common.py STEPS_PER_CALL).
MIN_BATCHES_PER_EPOCH = 16


class AutoencoderEmbedder(Saveable):
    name = "autoencoder"

    def __init__(
        self,
        seed: int = 0,
        dim: int = 16,
        hidden: int = 64,
        with_taste: bool = True,
        train: TrainSettings = TRAIN,
        logger: Logger | None = None,
    ) -> None:
        self.seed = seed
        self.config = AutoencoderConfig(n_inputs=0, dim=dim, hidden=hidden)
        self.with_taste = with_taste
        self.train = train
        self.logger = logger  # e.g. an MLFlowLogger for train/loss and val/loss per epoch; never saved

    def configure(self, options: FitOptions) -> Self:
        """Train as the run says (epochs, time budget, accelerator, processes, logger)."""
        self.train = replace(self.train, **options.train_overrides())
        self.logger = options.logger
        return self

    def fit(self, features: UserFeatures) -> Self:
        with training_scope(self.seed), one_thread():
            data, module = self.training_parts(features)
            trainer, _ = make_trainer(self.train, self.logger)
            trainer.fit(module, datamodule=data)
        self.n_epochs = trainer.current_epoch
        self.network = module.network.cpu().eval()
        return self

    def training_parts(self, features: UserFeatures) -> tuple[VectorDataModule, AutoencoderModule]:
        """The start of a fit: the input scalers and taste (kept), then the DataModule and LightningModule to
        train. benchmarks/train.py times these with and without Lightning."""
        self.behaviour = BehaviourEmbedder(self.seed).fit(features)
        # Taste needs two items to tell users apart (and TruncatedSVD two columns): a catalogue of one has none.
        n_items = features.interactions["item_id"].n_unique()
        self.svd = SvdEmbedder(self.seed).fit(features) if self.with_taste and n_items >= 2 else None
        inputs = self._inputs(features)
        self.config = replace(self.config, n_inputs=inputs.shape[1])
        data = VectorDataModule(
            inputs,
            self.train.batch_size,
            seed=self.seed,
            rows_per_epoch=ROWS_PER_EPOCH,
            min_batches_per_epoch=MIN_BATCHES_PER_EPOCH,
        )
        return data, AutoencoderModule(MLPAutoencoder(self.config), self.train.lr)

    def transform(self, features: UserFeatures) -> Embedding:
        if len(features.users) == 0:  # no rows for the fitted scalers to take
            return Embedding(self.name, features.users, np.zeros((0, self.config.dim), dtype=np.float32))
        with one_thread():
            vectors = self.network.encode(self._inputs(features))
        return Embedding(self.name, features.users, vectors.astype(np.float32))

    def _inputs(self, features: UserFeatures) -> np.ndarray:
        """The standardised behaviour columns, then the svd rows scaled so each of their entries is of the same
        order as a standardised column: the reconstruction weighs taste and behaviour alike per entry."""
        blocks = [self.behaviour.transform(features).vectors]
        if self.svd is not None:
            taste = self.svd.transform(features).vectors
            blocks.append(taste * np.sqrt(taste.shape[1]))
        return np.hstack(blocks).astype(np.float32)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "logger"} | {"logger": None}
