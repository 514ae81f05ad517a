"""LightGCN (He et al., 2020) on the weighted user-item graph, trained with BPR on sampled negatives.

Nodes are the users (0..n_users-1) then the items (n_users..). A node's final vector is the mean of its base
embedding and its 1..n_layers-hop propagations over the symmetric normalised adjacency D^-1/2 A D^-1/2 (a
`torch.sparse` CSR product); with `n_layers=0` it is plain matrix factorisation with BPR.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pytorch_lightning as pl
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from models.common import LossModule, TensorBatches, batch_loader, train_loader


@dataclass(frozen=True)
class LightGCNConfig:
    n_users: int
    n_items: int
    dim: int = 64
    n_layers: int = 2
    reg: float = 1e-4  # L2 on the base embeddings of a batch's nodes
    init_std: float = 0.1


class LightGCN(nn.Module):
    def __init__(self, config: LightGCNConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.n_users + config.n_items, config.dim)
        nn.init.normal_(self.embedding.weight, std=config.init_std)

    def forward(self, adjacency: torch.Tensor | None) -> torch.Tensor:
        """Final vectors of every node: the mean over layers 0..n_layers."""
        x = self.embedding.weight
        if self.config.n_layers == 0 or adjacency is None:
            return x
        total = x
        for _ in range(self.config.n_layers):
            x = SymmetricProduct.apply(adjacency, x)
            total = total + x
        return total / (self.config.n_layers + 1)

    def bpr_loss(
        self,
        adjacency: torch.Tensor | None,
        users: torch.Tensor,
        positives: torch.Tensor,
        negatives: torch.Tensor,
    ) -> torch.Tensor:
        """BPR (-log sigmoid of the positive's score minus the negative's), plus L2 on the base embeddings."""
        final = self(adjacency)
        offset = self.config.n_users
        u, p, n = final[users], final[offset + positives], final[offset + negatives]
        ranking = -F.logsigmoid((u * p).sum(-1) - (u * n).sum(-1)).mean()
        base = self.embedding.weight
        l2 = (
            base[users].pow(2).sum()
            + base[offset + positives].pow(2).sum()
            + base[offset + negatives].pow(2).sum()
        )
        return ranking + self.config.reg * l2 / (2 * len(users))


class SymmetricProduct(torch.autograd.Function):
    """`adjacency @ x` for a symmetric sparse adjacency: the gradient is `adjacency @ grad`, which spares
    autograd transposing (re-sorting) the matrix on every backward pass."""

    @staticmethod
    def forward(ctx, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adjacency = adjacency
        return torch.sparse.mm(adjacency, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, torch.sparse.mm(ctx.adjacency, grad)


def normalized_adjacency(
    n_users: int, n_items: int, users: np.ndarray, items: np.ndarray, weights: np.ndarray
) -> torch.Tensor:
    """D^-1/2 A D^-1/2 of the bipartite graph with edge weights `weights` (repeated pairs summed), as a sparse
    CSR tensor. Built as the user x item block and its transpose in scipy (32-bit indices while they fit): at
    14M edges a COO tensor coalesced in torch held 1.7 GB more."""
    weights = np.asarray(weights, dtype=np.float64)
    user_scale = _inverse_sqrt(np.bincount(users, weights=weights, minlength=n_users))
    item_scale = _inverse_sqrt(np.bincount(items, weights=weights, minlength=n_items))
    values = (weights * user_scale[users] * item_scale[items]).astype(np.float32)
    block = sp.csr_matrix((values, (users, items)), shape=(n_users, n_items))
    block.sum_duplicates()  # canonical: sorted columns in each row, no repeats
    transposed = block.tocsc()  # the item x user block, as CSR of the transpose (sorted rows per column)
    index = np.int64 if block.nnz * 2 > np.iinfo(np.int32).max else np.int32
    crow = np.concatenate([block.indptr, block.nnz + transposed.indptr[1:]]).astype(index)
    col = np.concatenate([block.indices.astype(index) + n_users, transposed.indices.astype(index)])
    data = np.concatenate([block.data, transposed.data])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        warnings.filterwarnings("ignore", message=".*Sparse invariant checks are implicitly disabled.*")
        return torch.sparse_csr_tensor(
            torch.from_numpy(crow), torch.from_numpy(col), torch.from_numpy(data),
            (n_users + n_items, n_users + n_items), check_invariants=False,
        )  # fmt: skip


def _inverse_sqrt(degree: np.ndarray) -> np.ndarray:
    return np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-12)), 0.0)


class LightGCNModule(LossModule):
    """BPR with one uniformly sampled negative item per positive edge; Adam."""

    def __init__(self, model: LightGCN, adjacency: torch.Tensor, lr: float = 1e-3) -> None:
        super().__init__()
        self.model = model
        self.lr = lr
        self.register_buffer("adjacency", adjacency, persistent=False)

    def training_loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """A training batch's loss, negatives drawn here (the same work with or without a Trainer)."""
        users, items = batch
        negatives = torch.randint(self.model.config.n_items, users.shape, device=users.device)
        return self.model.bpr_loss(self.adjacency, users, items, negatives)

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        users, items, negatives = batch
        loss = self.model.bpr_loss(self.adjacency, users, items, negatives)
        self.log("val/loss", loss, on_step=False, on_epoch=True, batch_size=len(users))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.parameters(), lr=self.lr)


class LightGCNData(pl.LightningDataModule):
    """Edges (user, item, weight > 0) split into training and validation edges (a seeded share of the edges
    of users with at least two, so every user keeps one in the training graph); validation negatives are
    drawn once, so `val/loss` is comparable across epochs. An epoch is `edges_per_epoch` training edges.

    Every step propagates over the whole training graph, so a step's cost grows with the graph: an epoch
    makes at most `graph_edges_per_epoch / training edges` steps, its edges then coming in fewer, larger
    batches. An epoch so costs about the same at any size, and a fit is bounded by its epochs, not by a clock
    (which would stop it where the machine's speed says, and the same seed would give other vectors)."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        users: np.ndarray,
        items: np.ndarray,
        weights: np.ndarray,
        batch_size: int = 2048,
        edges_per_epoch: int = 200_000,
        val_fraction: float = 0.05,
        max_val_edges: int = 20_000,
        seed: int = 0,
        graph_edges_per_epoch: int = 4_000_000,
    ) -> None:
        super().__init__()
        self.n_users, self.n_items = n_users, n_items
        self.users, self.items, self.weights = users, items, weights
        self.batch_size = batch_size
        self.edges_per_epoch = edges_per_epoch
        self.val_fraction = val_fraction
        self.max_val_edges = max_val_edges
        self.seed = seed
        self.graph_edges_per_epoch = graph_edges_per_epoch
        self.is_set_up = False

    def setup(self, stage: str | None = None) -> None:
        if self.is_set_up:
            return
        rng = np.random.default_rng([self.seed, 11])
        n_edges = len(self.users)
        degree = np.bincount(self.users, minlength=self.n_users)
        n_val = min(int(self.val_fraction * n_edges), self.max_val_edges)
        candidates = np.flatnonzero(degree[self.users] >= 2)
        chosen = rng.permutation(candidates)
        # At most one validation edge per user: no user loses all of its training edges.
        _, first = np.unique(self.users[chosen], return_index=True)
        val = np.sort(chosen[np.sort(first)][: max(n_val, 1) if len(candidates) else 0])
        is_val = np.zeros(n_edges, dtype=bool)
        is_val[val] = True
        train = ~is_val
        self.train_adjacency = normalized_adjacency(
            self.n_users, self.n_items, self.users[train], self.items[train], self.weights[train]
        )
        self.train_edges = (
            torch.from_numpy(self.users[train]).long(),
            torch.from_numpy(self.items[train]).long(),
        )
        n_train = int(train.sum())
        self.n_per_epoch = min(self.edges_per_epoch, n_train)
        steps = max(
            1,
            min(math.ceil(self.n_per_epoch / self.batch_size), self.graph_edges_per_epoch // max(n_train, 1)),
        )
        self.step_batch_size = max(self.batch_size, math.ceil(self.n_per_epoch / steps))
        val_negatives = rng.integers(0, self.n_items, size=len(val))
        self.val_edges = (
            torch.from_numpy(self.users[val]).long(),
            torch.from_numpy(self.items[val]).long(),
            torch.from_numpy(val_negatives).long(),
        )
        self.is_set_up = True

    @property
    def has_validation(self) -> bool:
        self.setup()
        return len(self.val_edges[0]) > 0

    def full_adjacency(self) -> torch.Tensor:
        """The graph of every edge, training and validation: what the final vectors are propagated over."""
        return normalized_adjacency(self.n_users, self.n_items, self.users, self.items, self.weights)

    def train_dataloader(self):
        dataset = TensorBatches(
            self.train_edges,
            self.step_batch_size,
            seed=self.seed,
            n_per_epoch=self.n_per_epoch,
            split_across_ranks="batches",
        )
        return train_loader(dataset, steps_per_call=1)  # long steps: Lightning's cost is lost in them

    def val_dataloader(self):
        return batch_loader(TensorBatches(self.val_edges, max(self.step_batch_size, 8192), shuffle=False))
