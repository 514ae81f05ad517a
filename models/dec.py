"""`dec`: deep embedded clustering with the reconstruction kept (IDEC, Guo et al. 2017) on vectors made by any
embedder. A linear encoder, its decoder and the cluster centres are trained together: the Student-t soft
assignment Q is pulled towards its sharpened target P (KL(P || Q)), and `gamma` x the reconstruction error
keeps the refined space from forgetting the input. P is recomputed from all rows after every epoch; training
stops once fewer than `tol` of the rows change cluster between two epochs (after `min_epochs`).

The encoder starts as the optimal linear autoencoder (the leading principal axes of the centred input, scaled
so a row's squared distance to its k-means centre is 1 on average), so no pretraining epochs are needed and, at
full width, the starting space is a rotation of the input: DEC starts from exactly the k-means it refines."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import Logger
from torch import nn

from models.common import LossModule, TensorBatches, TimeBudgetNote, TrainSettings, batch_loader, train_loader


@dataclass(frozen=True)
class DecConfig:
    n_inputs: int
    dim: int  # width of the refined space
    k: int
    alpha: float = 1.0  # degrees of freedom of the Student-t kernel
    gamma: float = 0.1  # weight of the reconstruction error
    tol: float = 0.001  # stop when fewer than this share of rows change cluster in an epoch ...
    min_epochs: int = 10  # ... but not before this many: the assignments sharpen before any row moves


class DecNetwork(nn.Module):
    """Standardise (fixed shift and scale), encode linearly, decode; the cluster centres live in the code space."""

    def __init__(self, config: DecConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("shift", torch.zeros(config.n_inputs))
        self.register_buffer("scale", torch.ones(()))
        self.encoder = nn.Linear(config.n_inputs, config.dim, bias=False)
        self.decoder = nn.Linear(config.dim, config.n_inputs, bias=False)
        self.centres = nn.Parameter(torch.zeros(config.k, config.dim))

    @torch.no_grad()
    def initialise(self, shift: np.ndarray, scale: float, axes: np.ndarray, centres: np.ndarray) -> None:
        """`axes`: (dim, n_inputs) orthonormal rows; `centres`: (k, dim) in the code space."""
        self.shift.copy_(torch.as_tensor(shift, dtype=torch.float32))
        self.scale.fill_(float(scale))
        self.encoder.weight.copy_(torch.as_tensor(axes, dtype=torch.float32))
        self.decoder.weight.copy_(torch.as_tensor(axes.T, dtype=torch.float32))
        self.centres.copy_(torch.as_tensor(centres, dtype=torch.float32))

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale

    def soft_assign(self, z: torch.Tensor, centres: torch.Tensor | None = None) -> torch.Tensor:
        """Student-t similarity of each code to each centre, rows summing to 1."""
        centres = self.centres if centres is None else centres
        alpha = self.config.alpha
        squared = torch.cdist(z, centres).pow(2)
        kernel = (1.0 + squared / alpha).pow(-(alpha + 1.0) / 2.0)
        return kernel / kernel.sum(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The standardised input, its reconstruction and the soft assignment Q."""
        standard = self.standardise(x)
        z = self.encoder(standard)
        return standard, self.decoder(z), self.soft_assign(z)

    @torch.no_grad()
    def encode(self, x: np.ndarray, batch_size: int = 65_536) -> np.ndarray:
        self.eval()
        tensor = torch.as_tensor(x, dtype=torch.float32)
        chunks = [
            self.encoder(self.standardise(tensor[s : s + batch_size])) for s in range(0, len(x), batch_size)
        ]
        return torch.cat(chunks).numpy() if chunks else np.zeros((0, self.config.dim), dtype=np.float32)


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """DEC's sharpened target: q squared, divided by the cluster's total (so large clusters do not swallow
    the rest), rows renormalised."""
    weight = q.pow(2) / q.sum(dim=0).clamp_min(1e-12)
    return weight / weight.sum(dim=1, keepdim=True)


class DecModule(LossModule):
    """Loss = KL(P || Q) + gamma x squared reconstruction error per row; Adam. The target P of every row is
    held here and refreshed from all rows at the end of each epoch."""

    def __init__(self, network: DecNetwork, x: torch.Tensor, lr: float = 1e-3) -> None:
        super().__init__()
        self.network = network
        self.lr = lr
        self.x = x
        # Buffers, so they move with the module: on a GPU a batch's row indices are there (the targets made
        # here, on the CPU, were indexed by them: "indices should be either on cpu or on the same device").
        targets, labels = self._refresh()
        self.register_buffer("targets", targets, persistent=False)
        self.register_buffer("labels", labels, persistent=False)
        self.changed: list[float] = []  # share of rows that changed cluster, per epoch

    @torch.no_grad()
    def _refresh(self) -> tuple[torch.Tensor, torch.Tensor]:
        q = torch.cat(
            [self.network(self.x[s : s + 65_536].to(self.device))[2] for s in range(0, len(self.x), 65_536)]
        )
        return target_distribution(q), q.argmax(dim=1)

    def training_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, rows = batch
        standard, rebuilt, q = self.network(x)
        p = self.targets[rows]
        kl = (p * (p.clamp_min(1e-12).log() - q.clamp_min(1e-12).log())).sum(dim=1).mean()
        reconstruction = (rebuilt - standard).pow(2).sum(dim=1).mean()
        return kl + self.network.config.gamma * reconstruction

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> None:
        self.log("val/loss", self.training_loss(batch), on_epoch=True, batch_size=len(batch[0]))

    def refresh_targets(self) -> float:
        """The end of an epoch: new targets from all rows; returns the share of rows that changed cluster."""
        targets, labels = self._refresh()
        changed = float((labels != self.labels).float().mean())
        self.targets, self.labels = targets, labels
        self.changed.append(changed)
        return changed

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        changed = self.refresh_targets()
        self.log_epoch({"changed": changed})
        if len(self.changed) >= self.network.config.min_epochs and changed < self.network.config.tol:
            self.trainer.should_stop = True

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def make_dec_trainer(settings: TrainSettings, logger: Logger | list[Logger] | None = None) -> pl.Trainer:
    """The Trainer as models/common.py makes it, without early stopping on `val/loss` and without going back
    to the best epoch's weights: the objective chases a target that sharpens every epoch, so a rising loss is
    no sign to stop, and the first epoch's weights would only undo the refinement. DEC stops by `tol`."""
    return pl.Trainer(
        accelerator=settings.accelerator,
        devices=1,
        max_epochs=settings.max_epochs,
        max_time=timedelta(seconds=settings.max_time_s) if settings.max_time_s else None,
        callbacks=[TimeBudgetNote()] if settings.max_time_s else [],
        logger=logger if logger else False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic="warn",
        log_every_n_steps=1,
    )


class DecDataModule(pl.LightningDataModule):
    """Batches of (row, row index): the index finds the row's target. DEC is transductive, so validation
    scores the objective on all rows rather than holding any out of the clustering."""

    def __init__(self, x: torch.Tensor, batch_size: int, seed: int = 0) -> None:
        super().__init__()
        self.x = x
        self.rows = torch.arange(len(x))
        self.batch_size = batch_size
        self.seed = seed

    def train_dataloader(self):
        return train_loader(TensorBatches((self.x, self.rows), self.batch_size, seed=self.seed))

    def val_dataloader(self):
        return batch_loader(TensorBatches((self.x, self.rows), 65_536, shuffle=False))
