"""A SASRec-like causal Transformer over each user's most recent items, trained on next-item prediction with a
sampled softmax; a user's vector is the output at the last position.

Tokens: 0 pads, 1 is an item the vocabulary does not know, 2.. are the fitted items. Event types likewise: 0
pads or is unknown, 1.. the fitted types. Windows are left-padded to `max_len`, so the last position is always
the user's latest item; positions count from the window's start. The input item table doubles as the output
table (tied weights).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from models.common import LossModule, TensorBatches, batch_loader, epoch_size, train_loader

PAD, UNKNOWN, FIRST_ITEM = 0, 1, 2
MIN_BATCHES_PER_EPOCH = 8  # an epoch of small data: whole passes over the windows up to this many batches


@dataclass(frozen=True)
class SequenceConfig:
    n_tokens: int  # items + 2 (padding, unknown)
    n_event_types: int  # types + 1 (padding / unknown)
    max_len: int = 50
    dim: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    use_event_types: bool = True


class CausalBlock(nn.Module):
    """Pre-norm self-attention and feed-forward, each with a residual."""

    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.attention_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.attention_norm(x)).split(dim, dim=-1)
        q, k, v = (
            t.view(batch, length, self.n_heads, dim // self.n_heads).transpose(1, 2) for t in (q, k, v)
        )
        # Dropout on the residual branches only: on CPU a dropout mask costs as much as a matrix product.
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        x = x + self.dropout(self.out(attended.transpose(1, 2).reshape(batch, length, dim)))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class SequenceEncoder(nn.Module):
    def __init__(self, config: SequenceConfig) -> None:
        super().__init__()
        self.config = config
        self.item = nn.Embedding(config.n_tokens, config.dim, padding_idx=PAD)
        self.position = nn.Embedding(config.max_len, config.dim)
        self.event_type = (
            nn.Embedding(config.n_event_types, config.dim, padding_idx=PAD)
            if config.use_event_types
            else None
        )
        self.input_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            CausalBlock(config.dim, config.n_heads, config.dropout) for _ in range(config.n_layers)
        )
        self.norm = nn.LayerNorm(config.dim)
        nn.init.normal_(self.item.weight, std=config.dim**-0.5)
        with torch.no_grad():
            self.item.weight[PAD].zero_()

    def forward(self, items: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        """(batch, max_len) tokens -> (batch, max_len, dim): position t sees positions <= t, never padding."""
        length = items.shape[1]
        x = self.item(items) * math.sqrt(self.config.dim)
        # Windows end at the last column: a window trimmed of leading padding keeps its positions.
        x = x + self.position(
            torch.arange(self.config.max_len - length, self.config.max_len, device=items.device)
        )
        if self.event_type is not None:
            x = x + self.event_type(types)
        x = self.input_dropout(x)
        causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
        # A padded position attends to itself only, so no row is all masked (which would give NaN).
        allowed = (causal & (items != PAD)[:, None, :]) | torch.eye(
            length, dtype=torch.bool, device=items.device
        )
        allowed = allowed[:, None, :, :]
        for block in self.blocks:
            x = block(x, allowed)
        return self.norm(x)

    def encode(self, items: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        """The output at the last position: the user's vector."""
        items, types = trim_padding(items, types)
        return self(items, types)[:, -1]

    def loss(
        self, items: torch.Tensor, types: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor
    ) -> torch.Tensor:
        """Sampled softmax of the next item against `negatives`: (k,) shared by the batch, or (n, k) per target
        (n = the number of non-padding targets). A negative that is the target itself is masked out."""
        items, types, targets = trim_padding(items, types, targets)
        hidden = self(items, types)
        mask = targets != PAD
        query, positive = hidden[mask], targets[mask]
        table = self.item.weight
        positive_logit = (query * table[positive]).sum(-1, keepdim=True)
        if negatives.dim() == 1:
            negative_logit = query @ table[negatives].T
            hit = negatives[None, :] == positive[:, None]
        else:
            negative_logit = torch.einsum("nd,nkd->nk", query, table[negatives])
            hit = negatives == positive[:, None]
        logits = torch.cat([positive_logit, negative_logit.masked_fill(hit, float("-inf"))], dim=1)
        return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))


class SequenceModule(LossModule):
    """Next-item prediction at every position of a window, `n_negatives` uniform negatives per batch; AdamW."""

    def __init__(
        self, model: SequenceEncoder, lr: float = 1e-3, n_negatives: int = 128, weight_decay: float = 0.0
    ):
        super().__init__()
        self.model = model
        self.lr = lr
        self.n_negatives = n_negatives
        self.weight_decay = weight_decay

    def training_loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """A training batch's loss, negatives drawn here (the same work with or without a Trainer)."""
        items, types, targets = batch
        negatives = sample_negatives(self.model.config.n_tokens, self.n_negatives, items.device)
        return self.model.loss(items, types, targets, negatives)

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        items, types, targets, negatives = batch
        loss = self.model.loss(items, types, targets, negatives)
        self.log("val/loss", loss, on_step=False, on_epoch=True, batch_size=len(items))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)


def trim_padding(items: torch.Tensor, *aligned: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The batch without its leading columns that are padding in every row (short histories cost less)."""
    used = (items != PAD).any(0).nonzero()
    start = int(used[0, 0]) if len(used) else items.shape[1] - 1
    return tuple(t[:, start:] for t in (items, *aligned))


def sample_negatives(n_tokens: int, n_negatives: int, device: torch.device | str) -> torch.Tensor:
    return torch.randint(FIRST_ITEM, max(n_tokens, FIRST_ITEM + 1), (n_negatives,), device=device)


def ranks_from_end(users: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """For tokens grouped by user (codes non-decreasing, time order within a user): each token's rank from
    its user's latest (0 = latest), and each user's number of tokens."""
    counts = np.bincount(users, minlength=n_users)
    ends = np.cumsum(counts)
    return ends[users] - 1 - np.arange(len(users)), counts


def last_windows(
    users: np.ndarray, items: np.ndarray, types: np.ndarray, n_users: int, max_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """(n_users, max_len) left-padded windows of each user's latest `max_len` tokens."""
    rank, _ = ranks_from_end(users, n_users)
    keep = rank < max_len
    window_items = np.zeros((n_users, max_len), dtype=np.int64)
    window_types = np.zeros((n_users, max_len), dtype=np.int64)
    window_items[users[keep], max_len - 1 - rank[keep]] = items[keep]
    window_types[users[keep], max_len - 1 - rank[keep]] = types[keep]
    return window_items, window_types


def training_windows(
    users: np.ndarray, items: np.ndarray, types: np.ndarray, n_users: int, max_len: int, max_windows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs, their types and next-item targets, (n_windows, max_len) each: a user's history cut from the
    latest backwards into windows of `max_len` targets (at most `max_windows` per user), left-padded."""
    rank, counts = ranks_from_end(users, n_users)
    # Token j (rank r) is the target of token j-1, its predecessor, if it has one.
    is_target = (rank < counts[users] - 1) & (rank // max_len < max_windows)
    target_index = np.flatnonzero(is_target)
    target_rank = rank[target_index]
    per_user = np.minimum(np.ceil(np.maximum(counts - 1, 0) / max_len), max_windows).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(per_user)[:-1]])
    row = offsets[users[target_index]] + target_rank // max_len
    column = max_len - 1 - target_rank % max_len
    shape = (int(per_user.sum()), max_len)
    inputs, input_types, targets = (np.zeros(shape, dtype=np.int64) for _ in range(3))
    inputs[row, column] = items[target_index - 1]
    input_types[row, column] = types[target_index - 1]
    targets[row, column] = items[target_index]
    return inputs, input_types, targets


class SequenceData(pl.LightningDataModule):
    """Token arrays (grouped by user, time order within a user) into training windows and a validation set:
    for a seeded `val_fraction` of the users with 3+ tokens (but at least `min_val_users` of them, at most
    `max_val_users`), the latest token is held out and predicted from the ones before it against negatives
    drawn once. An epoch is at most `windows_per_epoch` windows and `tokens_per_epoch` items in them (a step
    costs what its tokens cost: long histories fill every window, so a window-only cap made an epoch of 50,000
    users 5x one of ml-latest-small's): a part of them on large data; on small data every window, in passes
    up to MIN_BATCHES_PER_EPOCH batches."""

    def __init__(
        self,
        users: np.ndarray,
        items: np.ndarray,
        types: np.ndarray,
        n_users: int,
        n_tokens: int,
        max_len: int = 50,
        max_windows_per_user: int = 20,
        windows_per_epoch: int = 10_000,
        tokens_per_epoch: int = 100_000,
        batch_size: int = 128,
        val_fraction: float = 0.1,
        min_val_users: int = 500,
        max_val_users: int = 1_000,
        n_negatives: int = 128,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.users, self.items, self.types = users, items, types
        self.n_users, self.n_tokens = n_users, n_tokens
        self.max_len = max_len
        self.max_windows_per_user = max_windows_per_user
        self.windows_per_epoch = windows_per_epoch
        self.tokens_per_epoch = tokens_per_epoch
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.min_val_users = min_val_users
        self.max_val_users = max_val_users
        self.n_negatives = n_negatives
        self.seed = seed
        self.is_set_up = False

    def setup(self, stage: str | None = None) -> None:
        if self.is_set_up:
            return
        rng = np.random.default_rng([self.seed, 13])
        rank, counts = ranks_from_end(self.users, self.n_users)
        candidates = np.flatnonzero(counts >= 3)
        # Small data get every eligible user in validation (a few dozen would make val/loss noise).
        wanted = max(int(round(self.val_fraction * len(candidates))), self.min_val_users)
        n_val = min(wanted, self.max_val_users, len(candidates)) if self.val_fraction > 0 else 0
        val_users = np.sort(rng.permutation(candidates)[:n_val])
        is_val_user = np.zeros(self.n_users, dtype=bool)
        is_val_user[val_users] = True
        held_out = is_val_user[self.users] & (rank == 0)
        kept = ~held_out
        users, items, types = self.users[kept], self.items[kept], self.types[kept]
        windows = training_windows(users, items, types, self.n_users, self.max_len, self.max_windows_per_user)
        self.train_windows = tuple(torch.from_numpy(a) for a in windows)
        # Validation: the held-out token, predicted at the last position of the window before it.
        history_items, history_types = last_windows(users, items, types, self.n_users, self.max_len)
        targets = np.zeros((len(val_users), self.max_len), dtype=np.int64)
        targets[:, -1] = self.items[held_out]  # held_out is in user order, as val_users is
        negatives = rng.integers(
            FIRST_ITEM, max(self.n_tokens, FIRST_ITEM + 1), size=(len(val_users), self.n_negatives)
        )
        self.val_windows = tuple(
            torch.from_numpy(a)
            for a in (history_items[val_users], history_types[val_users], targets, negatives.astype(np.int64))
        )
        self.is_set_up = True

    @property
    def has_validation(self) -> bool:
        self.setup()
        return len(self.val_windows[0]) > 0

    def train_dataloader(self):
        # Large data see a part of their windows per epoch; small data whole passes, but at least a few
        # batches. Ten thousand windows of a few hundred users took 20 s an epoch on a busy CPU: every fit
        # ran into the time budget, and where the budget stopped it changed the vectors from run to run.
        n_windows = len(self.train_windows[0])
        per_window = float((self.train_windows[0] != PAD).sum()) / max(n_windows, 1)
        by_tokens = max(int(self.tokens_per_epoch / max(per_window, 1.0)), self.batch_size)
        most = min(self.windows_per_epoch, by_tokens)
        n_per_epoch = epoch_size(n_windows, self.batch_size, MIN_BATCHES_PER_EPOCH, most)
        dataset = TensorBatches(
            self.train_windows,
            self.batch_size,
            seed=self.seed,
            n_per_epoch=n_per_epoch,
            split_across_ranks="rows",
        )
        return train_loader(dataset, steps_per_call=1)  # long steps: Lightning's cost is lost in them

    def val_dataloader(self):
        return batch_loader(TensorBatches(self.val_windows, max(self.batch_size, 1024), shuffle=False))
