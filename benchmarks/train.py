"""What training the learned embedders costs: per family, an epoch in Lightning against the same loop in plain
torch on the same data, training examples per second, peak memory, and (with --fit) one full default fit.

    .venv/bin/python benchmarks/train.py [--data ../shared/data/ml-latest-small] [--epochs 4] [--threads 1]
                                         [--families sequence,lightgcn] [--fit]

The data are MovieLens latest-small when found (ratings as `rate` events), else the demo shop (3,000 users).
Each family runs in its own process, so its peak memory (ru_maxrss) is its own; `rss before` is the process
after loading the data and building the model, before the first epoch. Both loops get the same DataModule,
LightningModule, optimiser and seed; Lightning runs without validation, logger or checkpoints, as the plain
loop does. Epoch times are medians over the epochs after the first (warm-up). An example is what one loss
term scores: a user-item edge for lightgcn, a next-item target for sequence.

A new family is one `bench_<family>` function (building its DataModule and LightningModule from features)
and one entry in FAMILIES.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.workspace import DEFAULT_ENVIRONMENT  # noqa: E402

for name, value in DEFAULT_ENVIRONMENT.items():
    os.environ.setdefault(name, value)


def load_features(data: Path):
    """UserFeatures of MovieLens ratings (`data/ratings.csv`), or of the demo shop when that is absent."""
    import polars as pl
    import pyarrow as pa

    from tasks.features.events import as_events_table
    from tasks.features.user_features import FeatureModel
    from tasks.segment.settings import SegmentSettings

    if (data / "ratings.csv").exists():
        ratings = pl.read_csv(data / "ratings.csv")
        frame = ratings.select(
            pl.col("userId").cast(pl.String).alias("user_id"),
            pl.col("movieId").cast(pl.String).alias("item_id"),
            pl.lit("rate").alias("event_type"),
            pl.from_epoch("timestamp").alias("ts"),
            pl.col("rating").alias("value"),
        )
        items = pa.table({"item_id": pa.array([], pa.string()), "category": pa.array([], pa.string())})
        label = data.name
    else:
        from tasks.ingest.demo import DemoConfig, write_demo_data

        out = Path(tempfile.mkdtemp(prefix="segflow-train-bench-"))
        write_demo_data(out, DemoConfig(n_users=3000))
        frame = pl.read_csv(out / "events.csv", try_parse_dates=True)
        items = pl.read_csv(out / "items.csv").select("item_id", "category").to_arrow()
        label = "demo (3,000 users)"
    events = as_events_table(frame)
    _, features = FeatureModel.fit(events, items, SegmentSettings().weights)
    return label, features, len(events)


def bench_sequence(features, seed: int, threads: int | None):
    from tasks.embed.sequence import SequenceEmbedder, SequenceSettings

    embedder = SequenceEmbedder(seed, SequenceSettings(n_threads=threads))
    data, module = embedder.training_parts(features)
    n_targets, n_windows = int((data.train_windows[2] > 0).sum()), len(data.train_windows[2])
    # An epoch of small data is whole passes over the windows, not windows_per_epoch (models/sequence.py).
    n_per_epoch = data.train_dataloader().dataset.n_per_epoch
    return embedder, data, module, n_targets * n_per_epoch // n_windows, n_targets


def bench_lightgcn(features, seed: int, threads: int | None):
    from tasks.embed.lightgcn import LightGCNEmbedder, LightGCNSettings

    embedder = LightGCNEmbedder(seed, LightGCNSettings(n_threads=threads))
    data, module = embedder.training_parts(features)
    n_edges = len(data.train_edges[0])
    return embedder, data, module, min(data.edges_per_epoch, n_edges), n_edges


# family -> function(features, seed, threads) -> (embedder, DataModule, LightningModule, examples per epoch,
# examples in one pass over the training data)
FAMILIES: dict[str, Callable] = {
    "sequence": bench_sequence,
    "lightgcn": bench_lightgcn,
}


def lightning_epochs(data, module, epochs: int) -> list[tuple[float, float]]:
    """(wall, cpu) seconds of each epoch of `trainer.fit`, with the flags segflow trains with."""
    import pytorch_lightning as pl

    times: list[tuple[float, float]] = []

    class EpochTimer(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            self.started = (time.perf_counter(), time.process_time())

        def on_train_epoch_end(self, trainer, pl_module):
            times.append((time.perf_counter() - self.started[0], time.process_time() - self.started[1]))

    trainer = pl.Trainer(
        accelerator="auto", devices=1, max_epochs=epochs, logger=False, callbacks=[EpochTimer()],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, deterministic="warn",
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=data.train_dataloader())
    return times


def torch_epochs(data, module, epochs: int) -> list[tuple[float, float]]:
    """The same epochs as a plain loop: the same loader, loss and optimiser; zero_grad, backward, step."""
    import torch

    optimizer = module.configure_optimizers()
    loader = data.train_dataloader()
    module.train()
    times = []
    for _ in range(epochs):
        started = (time.perf_counter(), time.process_time())
        for batch in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = module.training_loss(batch)
            loss.backward()
            optimizer.step()
        torch.cuda.synchronize() if torch.cuda.is_available() else None
        times.append((time.perf_counter() - started[0], time.process_time() - started[1]))
    return times


def measure(family: str, data_dir: Path, epochs: int, threads: int | None, fit: bool) -> dict:
    """One family in this process: both loops (plain torch first, then Lightning, from the same start)."""
    import copy

    from models.common import torch_threads, training_scope

    label, features, n_events = load_features(data_dir)
    with training_scope(0, threads):
        embedder, data, module, n_examples, n_total = FAMILIES[family](features, 0, threads)
        start_state = copy.deepcopy(module.state_dict())
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        plain = torch_epochs(data, module, epochs)
        module.load_state_dict(start_state)
        lightning = lightning_epochs(data, module, epochs)
    row = {
        "family": family, "data": label, "events": n_events, "examples_per_epoch": n_examples,
        "examples_per_pass": n_total,
        "threads": threads or __import__("torch").get_num_threads(),
        "torch_s": statistics.median(t for t, _ in plain[1:] or plain),
        "lightning_s": statistics.median(t for t, _ in lightning[1:] or lightning),
        "torch_cpu_s": statistics.median(c for _, c in plain[1:] or plain),
        "lightning_cpu_s": statistics.median(c for _, c in lightning[1:] or lightning),
        "rss_before_mb": rss_before,
    }  # fmt: skip
    if fit:
        with torch_threads(threads):
            started = time.perf_counter()
            fitted = type(embedder)(0, embedder.settings).fit(features)
            row["fit_s"] = time.perf_counter() - started
            row["fit_epochs"] = fitted.training["epochs"]
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ml-latest-small")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per loop (the first is warm-up)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument(
        "--families", default=",".join(FAMILIES), help="comma-separated, of: " + ", ".join(FAMILIES)
    )
    parser.add_argument("--fit", action="store_true", help="also time one full fit with the default settings")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # run one family here and print its row as JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.data, args.epochs, args.threads, args.fit)))
        return
    header = (
        f"{'family':<10}{'data':<20}{'thr':>4}{'ex/epoch':>10}{'torch s':>9}{'L s':>8}{'L/torch':>8}"
        f"{'cpu L/t':>8}{'ex/s (L)':>10}{'ev/s (L)':>10}{'rss MB':>8}{'peak MB':>8}{'fit s':>7}"
    )
    print(header)
    for family in args.families.split(","):
        command = [
            sys.executable,
            __file__,
            "--one",
            family,
            "--data",
            str(args.data),
            "--epochs",
            str(args.epochs),
        ]
        command += ["--threads", str(args.threads)] if args.threads else []
        command += ["--fit"] if args.fit else []
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(
                f"{family:<10}failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else '?'}"
            )
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        # Events per second: the data set's events over the time Lightning takes for one pass over them all.
        pass_s = r["lightning_s"] * r["examples_per_pass"] / r["examples_per_epoch"]
        print(
            f"{r['family']:<10}{r['data'][:19]:<20}{r['threads']:>4}{r['examples_per_epoch']:>10,}"
            f"{r['torch_s']:>9.2f}{r['lightning_s']:>8.2f}{r['lightning_s'] / r['torch_s']:>8.3f}"
            f"{r['lightning_cpu_s'] / r['torch_cpu_s']:>8.3f}{r['examples_per_epoch'] / r['lightning_s']:>10,.0f}"
            f"{r['events'] / pass_s:>10,.0f}{r['rss_before_mb']:>8.0f}{r['peak_rss_mb']:>8.0f}"
            + (f"{r['fit_s']:>7.1f}" if "fit_s" in r else f"{'-':>7}"),
            flush=True,
        )


if __name__ == "__main__":
    main()
