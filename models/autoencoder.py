"""`autoencoder`: an MLP that squeezes a user's standardised features (and taste) through a bottleneck and
rebuilds them; the bottleneck is the user's vector."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from models.common import LossModule, TensorBatches, batch_loader, epoch_size, train_loader


@dataclass(frozen=True)
class AutoencoderConfig:
    n_inputs: int
    dim: int = 16  # the bottleneck: the user's vector
    hidden: int = 64


class MLPAutoencoder(nn.Module):
    """inputs -> hidden -> dim -> hidden -> inputs; the bottleneck is linear, so the vectors are not clipped."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = nn.Sequential(
            nn.Linear(config.n_inputs, config.hidden), nn.GELU(), nn.Linear(config.hidden, config.dim)
        )
        self.decoder = nn.Sequential(
            nn.Linear(config.dim, config.hidden), nn.GELU(), nn.Linear(config.hidden, config.n_inputs)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        return z, self.decoder(z)

    @torch.no_grad()
    def encode(self, x: np.ndarray, batch_size: int = 65_536) -> np.ndarray:
        self.eval()
        tensor = torch.as_tensor(x, dtype=torch.float32)
        return torch.cat(
            [self.encoder(tensor[s : s + batch_size]) for s in range(0, len(x), batch_size)]
        ).numpy()


class AutoencoderModule(LossModule):
    """Mean squared reconstruction error, Adam."""

    def __init__(self, network: MLPAutoencoder, lr: float = 1e-3) -> None:
        super().__init__()
        self.network = network
        self.lr = lr

    def training_loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        (x,) = batch
        return nn.functional.mse_loss(self.network(x)[1], x)

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_index: int) -> None:
        self.log("val/loss", self.training_loss(batch), on_epoch=True, batch_size=len(batch[0]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Runs tiny networks on one intra-op thread (and puts the count back): at these sizes threads only wait
    for each other; on 2 busy cores a step took 68 ms on 2 threads against 0.6 ms on one."""
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n_threads)


class VectorDataModule(pl.LightningDataModule):
    """Rows of one float matrix handed over by tasks/; a seeded fraction of them is the validation set. An
    epoch is at most `rows_per_epoch` training rows (a new seeded draw each epoch), so it costs the same on
    many users as on a few thousand, and a fit is bounded by its epochs; and at least `min_batches_per_epoch`
    batches (whole passes over few rows), so a small data set's epoch is worth validating (`epoch_size`)."""

    def __init__(
        self,
        x: np.ndarray,
        batch_size: int,
        val_fraction: float = 0.1,
        seed: int = 0,
        rows_per_epoch: int | None = None,
        min_batches_per_epoch: int = 1,
    ) -> None:
        super().__init__()
        tensor = torch.as_tensor(np.asarray(x, dtype=np.float32))
        order = torch.randperm(len(tensor), generator=torch.Generator().manual_seed(seed))
        n_val = int(len(tensor) * val_fraction) if len(tensor) >= 20 else 0
        # Too few rows to spare any: validate on the training rows, so early stopping still sees a loss.
        self.val = tensor[order[:n_val]] if n_val else tensor
        self.train = tensor[order[n_val:]]
        self.batch_size = batch_size
        self.seed = seed
        self.n_per_epoch = epoch_size(len(self.train), batch_size, min_batches_per_epoch, rows_per_epoch)

    def train_dataloader(self):
        return train_loader(
            TensorBatches(
                (self.train,),
                self.batch_size,
                seed=self.seed,
                n_per_epoch=self.n_per_epoch,
                split_across_ranks="rows",
            )  # fmt: skip
        )

    def val_dataloader(self):
        return batch_loader(TensorBatches((self.val,), self.batch_size, shuffle=False))
