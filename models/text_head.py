"""`text` projection head: a linear map of the sentence-vector space, fine-tuned so that a user's history (the
weighted mean of their earlier items' vectors) points at the item they took next. It starts as the identity,
so an untrained head is the plain text space; the loss is a sampled softmax over cosine similarities (the
target against shared random items and the batch's other targets)."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from models.common import LossModule, TensorBatches, batch_loader, train_loader


class ProjectionHead(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    @torch.no_grad()
    def project(self, x: np.ndarray, batch_size: int = 65_536) -> np.ndarray:
        self.eval()
        tensor = torch.as_tensor(x, dtype=torch.float32)
        chunks = [self.linear(tensor[s : s + batch_size]) for s in range(0, len(x), batch_size)]
        return (
            torch.cat(chunks).numpy() if chunks else np.zeros((0, self.linear.in_features), dtype=np.float32)
        )


class NextItemModule(LossModule):
    """Cross-entropy of the next item among `n_negatives` shared random items and the batch's targets."""

    def __init__(
        self,
        head: ProjectionHead,
        item_vectors: torch.Tensor,
        n_negatives: int = 512,
        temperature: float = 0.05,
        lr: float = 1e-3,
    ) -> None:
        super().__init__()
        self.head = head
        self.register_buffer("item_vectors", item_vectors)
        self.n_negatives = n_negatives
        self.temperature = temperature
        self.lr = lr

    def training_loss(
        self, batch: tuple[torch.Tensor, torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        history, targets = batch
        negatives = torch.randint(len(self.item_vectors), (self.n_negatives,), generator=generator).to(
            targets.device
        )
        candidates = self.item_vectors[torch.cat([targets, negatives])]
        users = nn.functional.normalize(self.head(history), dim=1)
        items = nn.functional.normalize(self.head(candidates), dim=1)
        logits = users @ items.T / self.temperature
        return nn.functional.cross_entropy(logits, torch.arange(len(targets), device=targets.device))

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> None:
        # The same negatives every epoch, so val/loss moves only when the head does.
        loss = self.training_loss(batch, torch.Generator().manual_seed(batch_index))
        self.log("val/loss", loss, on_epoch=True, batch_size=len(batch[0]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class NextItemDataModule(pl.LightningDataModule):
    """(history vector, next item's row) pairs handed over by tasks/; `is_val` marks the validation pairs
    (whole users, so a user's later steps never leak into training)."""

    def __init__(
        self, history: np.ndarray, targets: np.ndarray, is_val: np.ndarray, batch_size: int, seed: int = 0
    ) -> None:
        super().__init__()
        history_tensor = torch.as_tensor(history, dtype=torch.float32)
        target_tensor = torch.as_tensor(targets, dtype=torch.long)
        val = torch.as_tensor(is_val, dtype=torch.bool)
        if not bool(val.any()) or bool(val.all()):
            val = torch.ones_like(val)  # too few users to spare: validate on the training pairs
            self.train = (history_tensor, target_tensor)
        else:
            self.train = (history_tensor[~val], target_tensor[~val])
        self.val = (history_tensor[val], target_tensor[val])
        self.batch_size = batch_size
        self.seed = seed

    def train_dataloader(self):
        return train_loader(
            TensorBatches(self.train, self.batch_size, seed=self.seed, split_across_ranks="rows")
        )

    def val_dataloader(self):
        return batch_loader(TensorBatches(self.val, self.batch_size, shuffle=False))
