"""What training the learned embedders costs: per family, an epoch in Lightning against the same loop in plain
torch on the same data, training examples per second, peak memory, and (with --fit) one full default fit.

    .venv/bin/python benchmarks/train.py [--data ../shared/data/ml-latest-small] [--epochs 4] [--rounds 3]
                                         [--threads 1] [--families sequence,lightgcn] [--fit]
                                         [--text-cache FILE]

The data are MovieLens latest-small when found (ratings as `rate` events), else the demo shop (3,000 users).
Each family runs in its own process, so its peak memory (ru_maxrss) is its own; `rss before` is the process
after loading the data and building the model, before the first epoch. Both loops get the same DataModule,
LightningModule, optimiser and seed; Lightning runs without validation, logger or checkpoints, as the plain
loop does; a module's own end-of-epoch work (DEC's new targets) runs in both, and both step through the same
mini-batches (Lightning's steps take lists of them, models/common.py STEPS_PER_CALL). Epoch times are medians
over each round's epochs after its first (warm-up); `+ms/step` is what Lightning adds per mini-batch, its
per-epoch work (its loop: about 0.5 ms) spread over the steps: it shows in the 3-5 step
epochs of the small networks and is lost in the longer ones. An example is what one loss term scores: a
next-item target (sequence, the text family's projection head), a user-item edge (lightgcn), a user's row
(autoencoder, dec). The small networks (autoencoder, text head, dec) run on one thread unless --threads says
otherwise, as segflow trains them; `text` first encodes the item texts (or reads them from --text-cache),
which is not timed.

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
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.workspace import DEFAULT_ENVIRONMENT  # noqa: E402

for name, value in DEFAULT_ENVIRONMENT.items():
    os.environ.setdefault(name, value)


def load_events(data: Path):
    """(label, events, items) of MovieLens ratings (`data/ratings.csv`), or of the demo shop when that is
    absent: the events as segflow's events table, the items as its MovieLens source reads them."""
    import polars as pl
    import pyarrow as pa

    from tasks.features.events import as_events_table

    if (data / "ratings.csv").exists():
        ratings = pl.read_csv(data / "ratings.csv")
        frame = ratings.select(
            pl.col("userId").cast(pl.String).alias("user_id"),
            pl.col("movieId").cast(pl.String).alias("item_id"),
            pl.lit("rate").alias("event_type"),
            pl.from_epoch("timestamp").alias("ts"),
            pl.col("rating").alias("value"),
        )
        # Items as segflow's MovieLens source reads them: the title, the genres as the category.
        movies = pl.read_csv(data / "movies.csv") if (data / "movies.csv").exists() else None
        items = (
            movies.select(
                pl.col("movieId").cast(pl.String).alias("item_id"),
                "title",
                pl.when(pl.col("genres") != "(no genres listed)").then(pl.col("genres")).alias("category"),
            ).to_arrow()
            if movies is not None
            else pa.table({"item_id": pa.array([], pa.string()), "category": pa.array([], pa.string())})
        )
        label = data.name
    else:
        from tasks.ingest.demo import DemoConfig, write_demo_data

        with tempfile.TemporaryDirectory(prefix="segflow-train-bench-") as folder:
            out = Path(folder)
            write_demo_data(out, DemoConfig(n_users=3000))
            frame = pl.read_csv(out / "events.csv", try_parse_dates=True)
            items = pl.read_csv(out / "items.csv").select("item_id", "title", "category", "text").to_arrow()
        label = "demo (3,000 users)"
    return label, as_events_table(frame), items


def load_features(data: Path):
    """(label, UserFeatures, number of events) of `load_events(data)`."""
    from tasks.features.user_features import FeatureModel
    from tasks.segment.settings import SegmentSettings

    label, events, items = load_events(data)
    _, features = FeatureModel.fit(events, items, SegmentSettings().weights)
    return label, features, len(events)


@dataclass(frozen=True)
class Parts:
    """What one family's epochs are timed on: the DataModule and LightningModule a fit would train, how many
    examples an epoch and a whole pass over the training data hold, and one full fit with the defaults."""

    data: object
    module: object
    examples_per_epoch: int
    examples_per_pass: int
    fit: Callable[[], int]  # one default fit from scratch; returns its epochs
    after_epoch: Callable[[object], object] | None = None  # module -> its end-of-epoch work (DEC: targets)


def bench_sequence(features, seed: int, threads: int | None, text_cache: Path | None) -> Parts:
    from tasks.embed.sequence import SequenceEmbedder, SequenceSettings

    embedder = SequenceEmbedder(seed, SequenceSettings(n_threads=threads))
    data, module = embedder.training_parts(features)
    n_targets, n_windows = int((data.train_windows[2] > 0).sum()), len(data.train_windows[2])
    # An epoch of small data is whole passes over the windows, not windows_per_epoch (models/sequence.py).
    n_per_epoch = data.train_dataloader().dataset.n_per_epoch
    fit = lambda: SequenceEmbedder(seed, embedder.settings).fit(features).training["epochs"]  # noqa: E731
    return Parts(data, module, n_targets * n_per_epoch // n_windows, n_targets, fit)


def bench_lightgcn(features, seed: int, threads: int | None, text_cache: Path | None) -> Parts:
    from tasks.embed.lightgcn import LightGCNEmbedder, LightGCNSettings

    embedder = LightGCNEmbedder(seed, LightGCNSettings(n_threads=threads))
    data, module = embedder.training_parts(features)
    n_edges = len(data.train_edges[0])
    fit = lambda: LightGCNEmbedder(seed, embedder.settings).fit(features).training["epochs"]  # noqa: E731
    return Parts(data, module, min(data.edges_per_epoch, n_edges), n_edges, fit)


def bench_autoencoder(features, seed: int, threads: int | None, text_cache: Path | None) -> Parts:
    from tasks.embed.autoencoder import AutoencoderEmbedder

    data, module = AutoencoderEmbedder(seed).training_parts(features)
    fit = lambda: AutoencoderEmbedder(seed).fit(features).n_epochs  # noqa: E731
    return Parts(data, module, data.n_per_epoch or len(data.train), len(data.train), fit)


def bench_text(features, seed: int, threads: int | None, text_cache: Path | None) -> Parts:
    """The optional projection head (the item vectors are encoded, or read from --text-cache, first)."""
    from tasks.embed.item_text import ParquetVectorStore, item_texts
    from tasks.embed.text import TextEmbedder

    store = ParquetVectorStore(text_cache) if text_cache else None
    embedder = TextEmbedder(seed, store=store).fit(features)
    data, module = embedder.head_parts(features, item_texts(features.items))
    n_steps = len(data.train[1])
    fit = lambda: TextEmbedder(seed, store=store, head=True).fit(features).head_epochs  # noqa: E731
    return Parts(data, module, n_steps, n_steps, fit)


def bench_dec(features, seed: int, threads: int | None, text_cache: Path | None) -> Parts:
    """The DEC clusterer refining the combined (behaviour + svd) vectors into 8 segments."""
    from tasks.cluster.dec import DecClusterer
    from tasks.embed.combined import CombinedEmbedder

    vectors = CombinedEmbedder(seed).fit(features).transform(features).vectors
    data, module = DecClusterer(seed).training_parts(vectors, 8)
    fit = lambda: len(DecClusterer(seed).fit(vectors, 8).epochs)  # noqa: E731
    return Parts(data, module, len(vectors), len(vectors), fit, after_epoch=lambda m: m.refresh_targets())


# family -> function(features, seed, threads, text cache) -> Parts. An example is what one loss term scores: a
# next-item target (sequence, text's head), a user-item edge (lightgcn), a user's row (autoencoder, dec).
FAMILIES: dict[str, Callable[..., Parts]] = {
    "sequence": bench_sequence,
    "lightgcn": bench_lightgcn,
    "autoencoder": bench_autoencoder,
    "text": bench_text,
    "dec": bench_dec,
}
# Threads each family trains with in segflow when --threads is not given (None: torch's default). The small
# networks train on one (models/autoencoder.py `one_thread`).
FAMILY_THREADS: dict[str, int | None] = {"autoencoder": 1, "text": 1, "dec": 1}


def lightning_epochs(data, module, epochs: int) -> list[tuple[float, float]]:
    """(wall, cpu) seconds of each epoch of `trainer.fit`, with the flags segflow trains with. An epoch runs
    from its start to the next one's (the last: to the end of the fit), so the module's own end-of-epoch work
    counts, which Lightning calls after the callbacks' `on_train_epoch_end`."""
    import pytorch_lightning as pl

    marks: list[tuple[float, float]] = []

    class EpochTimer(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            marks.append((time.perf_counter(), time.process_time()))

        def on_train_end(self, trainer, pl_module):
            marks.append((time.perf_counter(), time.process_time()))

    trainer = pl.Trainer(
        accelerator="auto", devices=1, max_epochs=epochs, logger=False, callbacks=[EpochTimer()],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, deterministic="warn",
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=data.train_dataloader())
    return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(marks, marks[1:], strict=False)]


def torch_epochs(parts: Parts, epochs: int) -> list[tuple[float, float, int]]:
    """The same epochs as a plain loop: the same loader, loss and optimiser; zero_grad, backward, step; then
    what the module does at the end of an epoch in Lightning, if anything. On the device Lightning's `auto`
    picks (a GPU when there is one), each mini-batch moved there as Lightning moves it."""
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module = parts.module.to(device)
    optimizer = module.configure_optimizers()
    loader = parts.data.train_dataloader()
    module.train()
    times = []
    for _ in range(epochs):
        started, steps = (time.perf_counter(), time.process_time()), 0
        for batches in loader:  # lists of mini-batches (models/common.py train_loader)
            for batch in module.transfer_batch_to_device(batches, device, 0):
                steps += 1
                optimizer.zero_grad(set_to_none=True)
                loss = module.training_loss(batch)
                loss.backward()
                optimizer.step()
        if parts.after_epoch is not None:
            parts.after_epoch(module)
        torch.cuda.synchronize() if device.type == "cuda" else None
        times.append((time.perf_counter() - started[0], time.process_time() - started[1], steps))
    module.cpu()  # where Lightning leaves it after a fit
    return times


def measure(
    family: str,
    data_dir: Path,
    epochs: int,
    rounds: int,
    threads: int | None,
    fit: bool,
    text_cache: Path | None,
) -> dict:
    """One family in this process: `rounds` rounds of both loops (plain torch, then Lightning), each from the
    same start; the times are medians over every round's epochs after its first. Alternating the loops puts
    the machine's changing load on both sides, which one long run of each did not (the short epochs' ratio
    moved by up to 0.4 from one run to the next)."""
    import copy

    import torch

    from models.common import torch_threads, training_scope

    label, features, n_events = load_features(data_dir)
    threads = threads or FAMILY_THREADS.get(family)
    with training_scope(0, threads):
        parts = FAMILIES[family](features, 0, threads, text_cache)
        start_state = copy.deepcopy(parts.module.state_dict())  # both loops start from the same weights
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        torch.use_deterministic_algorithms(
            True, warn_only=True
        )  # as the Trainer sets it (deterministic="warn")
        plain, lightning = [], []
        for _ in range(rounds):
            parts.module.load_state_dict(start_state)
            plain += torch_epochs(parts, epochs)[1:]
            parts.module.load_state_dict(start_state)
            lightning += lightning_epochs(parts.data, parts.module, epochs)[1:]
    row = {
        "family": family, "data": label, "events": n_events, "examples_per_epoch": parts.examples_per_epoch,
        "examples_per_pass": parts.examples_per_pass,
        "threads": threads or __import__("torch").get_num_threads(),
        "steps_per_epoch": plain[-1][2],
        "torch_s": statistics.median(t for t, _, _ in plain),
        "lightning_s": statistics.median(t for t, _ in lightning),
        "torch_cpu_s": statistics.median(c for _, c, _ in plain),
        "lightning_cpu_s": statistics.median(c for _, c in lightning),
        "rss_before_mb": rss_before,
    }  # fmt: skip
    if fit:
        with torch_threads(threads):
            started = time.perf_counter()
            row["fit_epochs"] = parts.fit()
            row["fit_s"] = time.perf_counter() - started
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ml-latest-small")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per loop (the first is warm-up)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both loops, alternating")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument(
        "--families", default=",".join(FAMILIES), help="comma-separated, of: " + ", ".join(FAMILIES)
    )
    parser.add_argument("--fit", action="store_true", help="also time one full fit with the default settings")
    parser.add_argument(
        "--text-cache", type=Path, default=None,
        help="item vectors by text hash (a workspace's cache/item_text_vectors.parquet): text encodes only "
        "what it lacks (default: every item, about a minute for ml-latest-small on 2 cores)",
    )  # fmt: skip
    parser.add_argument("--one", help=argparse.SUPPRESS)  # run one family here and print its row as JSON
    args = parser.parse_args()
    if args.one:
        print(
            json.dumps(
                measure(
                    args.one, args.data, args.epochs, args.rounds, args.threads, args.fit, args.text_cache
                )
            )
        )
        return
    header = (
        f"{'family':<12}{'data':<20}{'thr':>4}{'ex/epoch':>10}{'steps':>6}{'torch ms':>10}{'L ms':>9}"
        f"{'L/torch':>8}{'cpu L/t':>8}{'+ms/step':>9}{'ex/s (L)':>11}{'ev/s (L)':>12}{'rss MB':>8}"
        f"{'peak MB':>8}{'fit s':>7}{'fit ep':>7}"
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
            "--rounds",
            str(args.rounds),
        ]
        command += ["--threads", str(args.threads)] if args.threads else []
        command += ["--fit"] if args.fit else []
        command += ["--text-cache", str(args.text_cache)] if args.text_cache else []
        # numpy's BLAS threads, left spinning by the set-up (svd, k-means), would bill CPU time to the first
        # timed loop; torch's own threads are not OpenBLAS's.
        env = os.environ | {"OPENBLAS_NUM_THREADS": "1"}
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            print(
                f"{family:<12}failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else '?'}"
            )
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        # Events per second: the data set's events over the time Lightning takes for one pass over them all.
        pass_s = r["lightning_s"] * r["examples_per_pass"] / r["examples_per_epoch"]
        print(
            f"{r['family']:<12}{r['data'][:19]:<20}{r['threads']:>4}{r['examples_per_epoch']:>10,}"
            f"{r['steps_per_epoch']:>6}{r['torch_s'] * 1e3:>10.1f}{r['lightning_s'] * 1e3:>9.1f}"
            f"{r['lightning_s'] / r['torch_s']:>8.3f}{r['lightning_cpu_s'] / r['torch_cpu_s']:>8.3f}"
            f"{(r['lightning_s'] - r['torch_s']) * 1e3 / r['steps_per_epoch']:>9.2f}"
            f"{r['examples_per_epoch'] / r['lightning_s']:>11,.0f}{r['events'] / pass_s:>12,.0f}"
            f"{r['rss_before_mb']:>8.0f}{r['peak_rss_mb']:>8.0f}"
            + (f"{r['fit_s']:>7.1f}{r['fit_epochs']:>7}" if "fit_s" in r else f"{'-':>7}{'-':>7}"),
            flush=True,
        )


if __name__ == "__main__":
    main()
