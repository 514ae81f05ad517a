"""`dec`: DEC/IDEC refinement (models/dec.py) of any embedding, started from k-means. A user's segment is the
nearest refined centre (the largest soft membership); `soft_memberships` gives every segment's share.

`predict`'s distance is measured in the input space, to the mean input vector of the segment's fit members
(`centroids`), as with every other clusterer, so `user_segments.distance` means the same whichever clusterer
made it; the refined space only decides the segment."""

from __future__ import annotations

from dataclasses import replace
from typing import Self

import numpy as np
import torch
from pytorch_lightning.loggers import Logger

from models.autoencoder import one_thread
from models.common import EpochLog, TrainSettings, training_scope
from models.dec import DecConfig, DecDataModule, DecModule, DecNetwork, make_dec_trainer
from tasks.cluster.base import centroids_of, nearest_centroid, relabel_by_size
from tasks.cluster.kmeans import KMeansClusterer
from tasks.embed.base import FitOptions
from tasks.fitted import Saveable

TRAIN = TrainSettings(max_epochs=30, lr=1e-2, batch_size=256)  # patience: unused, see tol
DISTRIBUTION = ("devices", "num_nodes")  # FitOptions' fields DEC leaves at one process


class DecClusterer(Saveable):
    name = "dec"

    def __init__(
        self,
        seed: int = 0,
        dim: int = 32,
        gamma: float = 0.1,
        tol: float = 0.001,
        train: TrainSettings = TRAIN,
        logger: Logger | None = None,
    ) -> None:
        self.seed = seed
        self.dim = dim
        self.gamma = gamma
        self.tol = tol
        self.train = train
        self.logger = logger  # e.g. an MLFlowLogger; never saved

    def configure(self, options: FitOptions) -> Self:
        """Train as the run says: its accelerator, most epochs and time budget. Not its processes (DEC trains
        in one: its targets are computed over every row each epoch) nor its logger (an embedding family's)."""
        overrides = options.train_overrides()
        self.train = replace(self.train, **{k: v for k, v in overrides.items() if k not in DISTRIBUTION})
        return self

    def fit(self, vectors: np.ndarray, k: int) -> Self:
        x = np.asarray(vectors, dtype=np.float32)
        with training_scope(self.seed), one_thread():
            data, module = self.training_parts(x, k)
            log = EpochLog()
            trainer = make_dec_trainer(self.train, [log] + ([self.logger] if self.logger else []))
            trainer.fit(module, datamodule=data)
        self.epochs = log.epochs()  # train/loss, val/loss and the share of rows that `changed` cluster
        network = module.network.cpu().eval()
        config = network.config
        labels = self._assign(network, network.centres.detach(), x)
        # Keep the centres that own fit rows, largest first: segment 0 is the largest, as with k-means.
        sizes = np.bincount(labels, minlength=config.k)
        order = np.lexsort((np.arange(config.k), -sizes))[: int((sizes > 0).sum())]
        self.network = network
        self.centres = network.centres.detach()[torch.as_tensor(order)].clone()
        self.labels_ = self._assign(network, self.centres, x)
        self.centroids = centroids_of(x, self.labels_)
        self.k = len(self.centroids)
        return self

    def training_parts(self, x: np.ndarray, k: int) -> tuple[DecDataModule, DecModule]:
        """The start of a fit: the network initialised from k-means on the leading principal axes, and the
        DataModule and LightningModule to refine it. benchmarks/train.py times these with and without
        Lightning."""
        shift = x.mean(axis=0)
        # The leading principal axes of the centred input: the best linear autoencoder of this width.
        axes = np.linalg.svd(x - shift, full_matrices=False)[2][: min(self.dim, x.shape[1])]
        codes = (x - shift) @ axes.T
        start = KMeansClusterer(self.seed).fit(codes, k)
        spread = float(np.sqrt(np.mean(np.sum((codes - start.centroids[start.labels_]) ** 2, axis=1))))
        scale = spread if spread > 0 else 1.0
        config = DecConfig(n_inputs=x.shape[1], dim=len(axes), k=start.k, gamma=self.gamma, tol=self.tol)
        network = DecNetwork(config)
        network.initialise(shift, scale, axes, start.centroids / scale)
        tensor = torch.as_tensor(x)
        module = DecModule(network, tensor, self.train.lr)
        return DecDataModule(tensor, self.train.batch_size, seed=self.seed), module

    def set_segments(self, vectors: np.ndarray, labels: np.ndarray) -> Self:
        """Redefines the segments from labelled vectors (e.g. small ones merged): each segment's refined
        centre becomes its members' mean code, its centroid their mean input vector."""
        x = np.asarray(vectors, dtype=np.float32)
        self.labels_ = relabel_by_size(labels)
        with one_thread():
            self.centres = torch.as_tensor(
                centroids_of(self.network.encode(x), self.labels_), dtype=torch.float32
            )
        self.centroids = centroids_of(x, self.labels_)
        self.k = len(self.centroids)
        return self

    def predict(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The segment whose refined centre is nearest, and the input-space distance to its centroid."""
        labels = self._assign(self.network, self.centres, np.asarray(vectors, dtype=np.float32))
        distances = np.linalg.norm(np.asarray(vectors, dtype=np.float64) - self.centroids[labels], axis=1)
        return labels, distances

    def soft_memberships(self, vectors: np.ndarray) -> np.ndarray:
        """(n, k): each row's Student-t membership of every segment, summing to 1."""
        with torch.no_grad(), one_thread():
            codes = torch.as_tensor(self.network.encode(np.asarray(vectors, dtype=np.float32)))
            return self.network.soft_assign(codes, self.centres).numpy().astype(np.float64)

    @staticmethod
    def _assign(network: DecNetwork, centres: torch.Tensor, x: np.ndarray) -> np.ndarray:
        # The largest Student-t membership is the nearest centre in the refined space.
        with one_thread():
            return nearest_centroid(network.encode(x), centres.numpy())[0]

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "logger"} | {"logger": None}
