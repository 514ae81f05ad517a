"""What every learned family shares: batches of whole tensors, the Trainer as segflow runs it (one process, or
DDP over processes it spawns), the best weights kept in memory, and a fit that leaves no global state behind."""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import pytorch_lightning as pl
import torch
from lightning_utilities.core.apply_func import apply_to_collection
from pytorch_lightning.callbacks import Callback, EarlyStopping, Timer
from pytorch_lightning.loggers import Logger
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.strategies.launchers.multiprocessing import _MultiProcessingLauncher
from torch.utils.data import DataLoader, IterableDataset

LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")
SPARSE_WARNINGS = "ignore::UserWarning:torch.multiprocessing.reductions"


@dataclass(frozen=True)
class TrainSettings:
    """How long and how a family trains; the network's own sizes are in its config."""

    max_epochs: int = 20
    # A wall-clock cap stops where the machine's speed says: the same seed then gives other vectors from one
    # run to the next. Off by default; a family's epochs are sized so a fit's cost is bounded without it.
    max_time_s: float | None = None
    patience: int = 3  # epochs without a better val/loss before stopping
    lr: float = 1e-3
    batch_size: int = 256
    accelerator: str = "auto"
    n_threads: int | None = None  # torch's intra-op threads during the fit; None keeps torch's default
    devices: int = 1  # processes (CPU) or GPUs per node; more than one trains with DDP
    num_nodes: int = 1

    @property
    def is_distributed(self) -> bool:
        return self.devices * self.num_nodes > 1


class TensorBatches(IterableDataset):
    """Batches cut from whole tensors (rows in a new order each epoch, by a seeded generator): no per-row
    `__getitem__` and collate, which would cost more than the model on CPU. With `n_per_epoch` an epoch is that
    many rows: fewer than all, so large data finish in budget, or more (whole passes in new orders, then a
    part of one), so small data make enough steps per epoch. The loader takes `batch_size=None`.

    Under DDP, `split_across_ranks` says how the processes share an epoch: "rows", each takes its share of
    every batch (as many steps as one process, the same global batch: the gradient DDP averages is one
    process's), for models whose step costs what its rows cost; "batches", each takes every n-th batch
    (1/n of the steps, an n times larger global batch), for models whose step costs the same whatever its
    rows (LightGCN propagates over the whole graph every step). None: every process iterates everything
    (validation: every rank scores all of it and agrees on early stopping)."""

    def __init__(
        self,
        tensors: tuple[torch.Tensor, ...],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        n_per_epoch: int | None = None,
        split_across_ranks: Literal["rows", "batches"] | None = None,
    ) -> None:
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.split_across_ranks = split_across_ranks
        self.n_rows = len(tensors[0])
        self.n_per_epoch = self.n_rows if n_per_epoch is None or self.n_rows == 0 else n_per_epoch
        self.epoch = 0

    def __len__(self) -> int:
        n_batches = math.ceil(self.n_per_epoch / self.batch_size)
        if self.split_across_ranks == "batches":
            return math.ceil(n_batches / rank_and_world_size()[1])
        return n_batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            passes = math.ceil(self.n_per_epoch / max(self.n_rows, 1))
            order = torch.cat([torch.randperm(self.n_rows, generator=generator) for _ in range(passes)])
        else:
            order = torch.arange(self.n_rows).repeat(math.ceil(self.n_per_epoch / max(self.n_rows, 1)))
        order = order[: self.n_per_epoch]
        self.epoch += 1
        rank, world_size = rank_and_world_size() if self.split_across_ranks else (0, 1)
        starts = range(0, self.n_per_epoch, self.batch_size)
        if world_size > 1 and self.split_across_ranks == "batches":
            # Every rank makes len(self) steps (DDP waits for all): the last ranks wrap to the first batches.
            starts = [starts[(rank + world_size * i) % len(starts)] for i in range(len(self))]
        for start in starts:
            rows = order[start : start + self.batch_size]
            if world_size > 1 and self.split_across_ranks == "rows":
                rows = rank_share(rows, rank, world_size)
            yield tuple(t[rows] for t in self.tensors)


def rank_and_world_size() -> tuple[int, int]:
    """This process's rank and the number of processes training together (0 and 1 outside DDP)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def rank_share(rows: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank `rank`'s contiguous part of a batch's rows; a batch smaller than the world gives a rank one row
    (again), never none: every rank must step, and a loss over no rows is NaN."""
    if len(rows) < world_size:
        return rows[rank % len(rows)].reshape(1)
    return torch.tensor_split(rows, world_size)[rank]


def batch_loader(dataset: TensorBatches) -> DataLoader:
    """One batch at a time: for validation, whose steps Lightning runs one by one."""
    return DataLoader(dataset, batch_size=None, num_workers=0)


# Mini-batches a LossModule steps through in one call of its training_step. Lightning spends 1-2 ms on each
# of its steps (hooks, automatic optimisation), as long as a whole step of the small networks (autoencoder,
# text head, DEC): in groups, that cost is paid once per group, and each mini-batch still gets its own
# optimiser step, so the training is the same. A group is also how often a time budget is checked, so the
# families whose steps are long (sequence, lightgcn: 20 ms to seconds) take one at a time.
STEPS_PER_CALL = 16


def epoch_size(n_rows: int, batch_size: int, min_batches: int = 1, most: int | None = None) -> int:
    """Rows in a training epoch (TensorBatches' `n_per_epoch`): all `n_rows`, but at least `min_batches`
    batches and at most `most`. Small data then make whole passes in new orders, so an epoch trains enough
    between two validations for early stopping to see progress and Lightning's own work per epoch is lost in
    it; large data see a new part each epoch, so an epoch costs the same however many rows there are."""
    if n_rows == 0:
        return 0
    size = max(n_rows, min_batches * batch_size)
    return min(size, most) if most else size


def train_loader(dataset: TensorBatches, steps_per_call: int = STEPS_PER_CALL) -> DataLoader:
    """The training batches in lists of up to `steps_per_call` (a LossModule's training_step takes a list)."""
    return DataLoader(dataset, batch_size=steps_per_call, collate_fn=list, num_workers=0)


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

    def state_dict(self) -> dict[str, float]:  # the weights go back from a spawned fit on their own
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self.best = state_dict["best"]


class TorchThreads(Callback):
    """Sets torch's intra-op threads in each process a DDP fit spawns (the parent's setting stays behind)."""

    def __init__(self, n_threads: int) -> None:
        self.n_threads = n_threads

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        torch.set_num_threads(self.n_threads)


class LossModule(pl.LightningModule):
    """A LightningModule whose training is its `training_loss(batch)` (the work benchmarks/train.py repeats
    in a plain loop), stepped through a list of mini-batches per training_step (`train_loader`): zero_grad,
    loss, backward and an optimiser step for each, through the optimiser Lightning wraps (and, under DDP, its
    `manual_backward`), so DDP and devices work as in automatic optimisation. `train/loss` is logged once an epoch, the
    batch-size-weighted mean of its steps, as `self.log(on_epoch=True)` gives it: that call on every step cost
    about 2.7 ms, as long as a whole step of the small networks."""

    automatic_optimization = False

    def training_loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        raise NotImplementedError

    def on_train_epoch_start(self) -> None:
        # [loss x rows summed, rows]: a list changed in place, as setting a Module's attribute on every step
        # goes through nn.Module.__setattr__'s checks.
        self._epoch_loss = [0.0, 0]

    def training_step(self, batches: list[tuple[torch.Tensor, ...]], index: int) -> None:
        optimizer = self.optimizers()
        # DDP needs Lightning's backward: it readies the reducer for each one (`prepare_for_backward`). In one
        # process Lightning's adds only its backward hooks, which segflow uses none of, at about 0.1 ms a
        # mini-batch: a tenth of the autoencoder's epoch on ml-latest-small (benchmarks/train.py).
        backward = self.manual_backward if self.trainer.world_size > 1 else torch.Tensor.backward
        totals = self._epoch_loss
        for batch in batches:
            optimizer.zero_grad(set_to_none=True)
            loss = self.training_loss(batch)
            backward(loss)
            optimizer.step()
            totals[0] = totals[0] + loss.detach() * len(batch[0])
            totals[1] += len(batch[0])

    def on_train_epoch_end(self) -> None:
        loss_sum, rows = self._epoch_loss
        if rows:
            self.log_epoch({"train/loss": loss_sum / rows})

    def log_epoch(self, metrics: dict[str, float | torch.Tensor]) -> None:
        """Hands an epoch's figures to the fit's loggers as `self.log` does at an epoch's end (with `epoch`, at
        the step of the epoch's last batch, where `val/loss` is), without its bookkeeping for per-step means
        and callback metrics: about 1 ms a call, a third of a DEC epoch on 600 users. Nothing monitors these
        figures; `val/loss`, which early stopping and KeepBest read, is still logged with `self.log`.
        (Lightning 2.6's logger connector and batch count: private API, as `self.log` itself uses them.)"""
        # The step of the epoch's last batch: Lightning's epoch end steps back to it.
        step = self.trainer.fit_loop.epoch_loop._batches_that_stepped - 1
        self.trainer._logger_connector.log_metrics(metrics | {"epoch": self.current_epoch}, step=step)


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

    def state_dict(self) -> dict[str, list]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, list]) -> None:
        self.rows = list(state_dict["rows"])

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
    validation data) early stopping on `val/loss` with the best epoch's weights kept. With more than one
    device or node it trains with DDP over processes it spawns (`SpawnedDDP`)."""
    keep_best = KeepBest()
    callbacks = (
        [EarlyStopping("val/loss", patience=settings.patience, mode="min"), keep_best] if validate else []
    )
    if settings.is_distributed and settings.n_threads:
        callbacks.append(TorchThreads(settings.n_threads))
    if settings.max_time_s:
        callbacks.append(TimeBudgetNote())
    trainer = pl.Trainer(
        accelerator=settings.accelerator,
        devices=settings.devices,
        num_nodes=settings.num_nodes,
        strategy=SpawnedDDP() if settings.is_distributed else "auto",
        max_epochs=settings.max_epochs,
        max_time=timedelta(seconds=settings.max_time_s) if settings.max_time_s else None,
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


class TimeBudgetNote(Callback):
    """Logs `stopped_by_time` = 1 to the fit's loggers when its time budget ended it (in MLflow, and in the
    EpochLog a run reads to tell the user that this family's vectors depend on the machine's speed)."""

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if stopped_by_time(trainer):
            for logger in trainer.loggers:
                logger.log_metrics({"stopped_by_time": 1.0}, step=trainer.global_step)


def stopped_by_time(trainer: pl.Trainer) -> bool:
    """Whether the fit's time budget (`max_time_s`) ended it: how many epochs it trained then depends on the
    machine's speed, so the same seed may give other vectors on another run."""
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    remaining = timer.time_remaining() if timer is not None else None
    return remaining is not None and remaining <= 0


class SpawnedDDP(DDPStrategy):
    """DDP over processes started with `spawn` from inside the running process (a Prefect task, a test):
    Lightning's default launcher re-runs the script, which a task cannot do, and `fork` is unsafe in a
    process with threads (Prefect's) or CUDA. gloo on CPU, NCCL on GPUs (Lightning picks by accelerator).
    Buffers are not broadcast: none changes in training (LightGCN's sparse adjacency is one), and every rank
    starts from the parent's copy.

    Lightning brings rank 0's weights back to the parent; its launcher here also brings back what a fit's
    caller reads afterwards: the epochs done, and the state of the callbacks and loggers that have one
    (KeepBest's best loss, EpochLog's rows)."""

    def __init__(self) -> None:
        # broadcast_buffers (deprecated in torch 2.13): its successor still broadcasts at start, which fails on
        # a sparse buffer; with it off, nothing is broadcast.
        super().__init__(start_method="spawn", broadcast_buffers=False)

    def _configure_launcher(self) -> None:  # Lightning 2.6's hook for the launcher (private API)
        self._launcher = _FitStateLauncher(self, start_method="spawn")

    def setup_environment(self) -> None:
        for name in LIGHTNING_LOGGERS:  # the spawned process's own loggers: as quiet as the parent's fit
            logging.getLogger(name).setLevel(logging.WARNING)
        ignore_fit_warnings()
        super().setup_environment()


class _FitStateLauncher(_MultiProcessingLauncher):
    def launch(self, function, *args, trainer: pl.Trainer | None = None, **kwargs):
        # Unpickling a sparse tensor (LightGCN's graph) warns that sparse support is in beta, in each spawned
        # process before any code of ours runs there: their interpreters start with that warning off.
        before = os.environ.get("PYTHONWARNINGS")
        os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [before, SPARSE_WARNINGS]))
        try:
            return super().launch(function, *args, trainer=trainer, **kwargs)
        finally:
            if before is None:
                os.environ.pop("PYTHONWARNINGS", None)
            else:
                os.environ["PYTHONWARNINGS"] = before

    def _wrapping_function(self, *args, **kwargs) -> None:  # runs in each spawned process
        super()._wrapping_function(*args, **kwargs)
        # Lightning leaves the process group to the interpreter's exit, where gloo's threads can be torn down
        # while another rank still talks to them: a rank then aborts ("terminate called without an active
        # exception", SIGABRT, seen once in CI). Every rank waits for the others, then closes it in order.
        if torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()

    def get_extra_results(self, trainer: pl.Trainer) -> dict:
        state = {
            "epoch_progress": trainer.fit_loop.epoch_progress.state_dict(),
            "callbacks": [_state(c) for c in trainer.callbacks],
            "loggers": [_state(lg) for lg in trainer.loggers],
        }
        # As bytes: a tensor put on the queue as it is lives in the spawned process's shared memory, which is
        # gone by the time the parent reads it (Lightning sends its callback metrics the same way).
        buffer = io.BytesIO()
        torch.save(apply_to_collection(state, torch.Tensor, lambda t: t.cpu()), buffer)
        return super().get_extra_results(trainer) | {"fit_state_bytes": buffer.getvalue()}

    def update_main_process_results(self, trainer: pl.Trainer, extra: dict) -> None:
        super().update_main_process_results(trainer, extra)
        state = torch.load(io.BytesIO(extra["fit_state_bytes"]), weights_only=True)
        trainer.fit_loop.epoch_progress.load_state_dict(state["epoch_progress"])
        for holder, holder_state in [
            *zip(trainer.callbacks, state["callbacks"], strict=True),
            *zip(trainer.loggers, state["loggers"], strict=True),
        ]:
            if holder_state is not None:
                holder.load_state_dict(holder_state)


def _state(holder: object) -> dict | None:
    return holder.state_dict() if hasattr(holder, "load_state_dict") else None


def ignore_fit_warnings() -> None:
    """Lightning's notes on CPU-sized loaders, on logging per rank and on an unused GPU, which say nothing
    about segflow's fits."""
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*number of training batches.*")
    warnings.filterwarnings("ignore", message=r".*Total length of `DataLoader` across ranks.*")
    warnings.filterwarnings("ignore", message=r".*`IterableDataset` has `__len__` defined.*")
    warnings.filterwarnings("ignore", message=r".*Your `IterableDataset` has `__len__`.*")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=r".*sync_dist=True.*")
    warnings.filterwarnings("ignore", message=r".*`broadcast_buffers` is deprecated.*")
    # `--accelerator cpu` on a GPU machine is a choice: Lightning's advice (`Trainer(accelerator='gpu')`) is
    # not one a segflow user can take.
    warnings.filterwarnings("ignore", message=r".*GPU available but not used.*")


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
        ignore_fit_warnings()
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
