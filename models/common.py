"""What every learned family shares: batches of whole tensors, the Trainer as segflow runs it, the best weights
kept in memory, and a fit that leaves no global state behind."""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EarlyStopping
from pytorch_lightning.loggers import Logger
from torch.utils.data import DataLoader, IterableDataset

LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")


@dataclass(frozen=True)
class TrainSettings:
    """How long and how a family trains; the network's own sizes are in its config."""

    max_epochs: int = 20
    max_time_s: float = 60.0
    patience: int = 3  # epochs without a better val/loss before stopping
    lr: float = 1e-3
    batch_size: int = 256
    accelerator: str = "auto"
    n_threads: int | None = None  # torch's intra-op threads during the fit; None keeps torch's default


class TensorBatches(IterableDataset):
    """Batches cut from whole tensors (rows in a new order each epoch, by a seeded generator): no per-row
    `__getitem__` and collate, which would cost more than the model on CPU. With `n_per_epoch` an epoch is that
    many rows: fewer than all, so large data finish in budget, or more (whole passes in new orders, then a
    part of one), so small data make enough steps per epoch. The loader takes `batch_size=None`."""

    def __init__(
        self,
        tensors: tuple[torch.Tensor, ...],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        n_per_epoch: int | None = None,
    ) -> None:
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.n_rows = len(tensors[0])
        self.n_per_epoch = self.n_rows if n_per_epoch is None or self.n_rows == 0 else n_per_epoch
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(self.n_per_epoch / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            passes = math.ceil(self.n_per_epoch / max(self.n_rows, 1))
            order = torch.cat([torch.randperm(self.n_rows, generator=generator) for _ in range(passes)])
        else:
            order = torch.arange(self.n_rows).repeat(math.ceil(self.n_per_epoch / max(self.n_rows, 1)))
        order = order[: self.n_per_epoch]
        self.epoch += 1
        for start in range(0, self.n_per_epoch, self.batch_size):
            rows = order[start : start + self.batch_size]
            yield tuple(t[rows] for t in self.tensors)


def batch_loader(dataset: TensorBatches) -> DataLoader:
    return DataLoader(dataset, batch_size=None, num_workers=0)


class KeepBest(Callback):
    """Keeps the weights of the epoch with the lowest monitored value in memory (no checkpoint files) and puts
    them back when training ends, so early stopping returns the best model, not the last. Only whole epochs
    count: a time budget that stops a fit mid-epoch makes Lightning validate the part done, and where that
    part ends depends on the machine's speed, so keeping it would give a seed different vectors run to run."""

    def __init__(self, monitor: str = "val/loss") -> None:
        self.monitor = monitor
        self.best = math.inf
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None and float(value) < self.best:
            self.best = float(value)
            self.state = copy_state(pl_module)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.state is not None:
            pl_module.load_state_dict(self.state)


class EpochLog(Logger):
    """A Lightning logger that keeps what a fit logs (train/loss and val/loss per epoch) in memory: the run's
    tracking step writes it into the family's MLflow run, so a fit itself writes nothing outside the process."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, float]] = []

    @property
    def name(self) -> str:
        return "segflow"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.rows.append({k: float(v) for k, v in metrics.items()})

    def log_hyperparams(self, params, *args, **kwargs) -> None:  # the family's params are logged by the run
        pass

    def epochs(self) -> list[dict[str, float]]:
        """One dict per epoch (`epoch`, `train/loss`, `val/loss`, as logged), in epoch order."""
        by_epoch: dict[int, dict[str, float]] = {}
        for row in self.rows:
            if "epoch" in row:
                epoch = int(row["epoch"])
                by_epoch.setdefault(epoch, {"epoch": float(epoch)}).update(
                    {k: v for k, v in row.items() if k != "epoch"}
                )
        return [by_epoch[e] for e in sorted(by_epoch)]


def make_trainer(
    settings: TrainSettings, logger: Logger | None = None, validate: bool = True
) -> tuple[pl.Trainer, KeepBest]:
    """The Trainer as segflow runs it: quiet, no files, a time budget, and (with `validate`, when there is
    validation data) early stopping on `val/loss` with the best epoch's weights kept."""
    keep_best = KeepBest()
    callbacks = (
        [EarlyStopping("val/loss", patience=settings.patience, mode="min"), keep_best] if validate else []
    )
    trainer = pl.Trainer(
        accelerator=settings.accelerator,
        devices=1,
        max_epochs=settings.max_epochs,
        max_time=timedelta(seconds=settings.max_time_s),
        logger=logger if logger is not None else False,
        callbacks=callbacks,
        limit_val_batches=None if validate else 0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        # Sparse products have no deterministic CUDA kernel: "warn" keeps CPU runs exact without failing there.
        deterministic="warn",
        log_every_n_steps=1,
        default_root_dir=None,
    )
    return trainer, keep_best


@contextlib.contextmanager
def training_scope(seed: int, n_threads: int | None = None) -> Iterator[None]:
    """Seeds everything for one fit and puts back what it changes globally (the deterministic-algorithms flag,
    the library loggers' levels, torch's thread count); silences Lightning's notes on CPU-sized loaders."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    levels = {name: logging.getLogger(name).level for name in LIGHTNING_LOGGERS}
    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=r".*number of training batches.*")
        warnings.filterwarnings("ignore", message=r".*Total length of `DataLoader` across ranks.*")
        warnings.filterwarnings("ignore", message=r".*`IterableDataset` has `__len__` defined.*")
        warnings.filterwarnings("ignore", message=r".*Your `IterableDataset` has `__len__`.*")
        warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
        try:
            with torch_threads(n_threads):
                pl.seed_everything(seed, verbose=False)
                yield
        finally:
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def torch_threads(n_threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to `n_threads` for a block (None: left as it is), then put back. Small
    models gain little from a second thread, and lose a lot when other processes hold the cores."""
    before = torch.get_num_threads()
    if n_threads:
        torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def copy_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's weights as CPU tensors, detached: what a fitted embedder pickles."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
