"""What DDP buys a learned family: the same fit on 1 and on N processes (Lightning DDP, spawned processes,
gloo on CPU), events per second of training and the ratio N/1.

    .venv/bin/python benchmarks/ddp.py [--data ../shared/data/ml-latest-small] [--processes 2] [--epochs 5]
                                       [--families lightgcn,sequence,autoencoder] [--threads 1]

The data are MovieLens latest-small when found (ratings as `rate` events), else the demo shop (3,000 users),
as in benchmarks/train.py. Every fit runs the same epochs (no early stop, no time budget) with `--threads`
torch threads per process. Two rates per fit:

- steady: the data set's events times the epochs after the first, over the time those epochs took, timed in
  rank 0 (the process start and the first epoch left out);
- wall: the events times every epoch, over the whole fit as its caller sees it (spawning the processes and
  bringing the weights back included).

A ratio above 1 is a speed-up. On a machine with fewer free cores than processes, expect below 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.common import EpochLog  # noqa: E402
from tasks.workspace import DEFAULT_ENVIRONMENT  # noqa: E402

for name, value in DEFAULT_ENVIRONMENT.items():
    os.environ.setdefault(name, value)


class TimedLog(EpochLog):
    """EpochLog that also notes when each epoch's train/loss was logged (in rank 0; the times come back from
    spawned processes with the rest of the logger's state)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        super().log_metrics(metrics, step)
        if "train/loss" in metrics:
            self.times.append(time.time())

    def state_dict(self) -> dict:
        return super().state_dict() | {"times": self.times}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.times = list(state_dict["times"])


def make_embedder(family: str, devices: int, epochs: int, threads: int, log: TimedLog):
    from models.common import TrainSettings
    from tasks.embed.autoencoder import AutoencoderEmbedder
    from tasks.embed.lightgcn import LightGCNEmbedder, LightGCNSettings
    from tasks.embed.sequence import SequenceEmbedder, SequenceSettings

    budget = {"max_epochs": epochs, "patience": epochs + 1, "max_time_s": 3600.0, "devices": devices}
    if family == "lightgcn":
        return LightGCNEmbedder(0, LightGCNSettings(n_threads=threads, **budget), logger=log)
    if family == "sequence":
        return SequenceEmbedder(0, SequenceSettings(n_threads=threads, **budget), logger=log)
    if family == "autoencoder":
        train = TrainSettings(batch_size=128, n_threads=threads, **budget)
        return AutoencoderEmbedder(0, train=train, logger=log)
    raise ValueError(f"unknown family {family!r}")


def measure(family: str, features, n_events: int, devices: int, epochs: int, threads: int) -> dict:
    log = TimedLog()
    embedder = make_embedder(family, devices, epochs, threads, log)
    started = time.perf_counter()
    embedder.fit(features)
    wall = time.perf_counter() - started
    steps = [b - a for a, b in zip(log.times, log.times[1:], strict=False)]
    return {
        "family": family,
        "processes": devices,
        "epochs": len(log.times),
        "epoch_s": round(statistics.median(steps), 3) if steps else None,
        "steady_events_per_s": round(n_events / statistics.median(steps)) if steps else None,
        "wall_s": round(wall, 1),
        "wall_events_per_s": round(n_events * len(log.times) / wall),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ml-latest-small")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5, help="epochs per fit (the first is warm-up)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--families", default="lightgcn,sequence,autoencoder")
    args = parser.parse_args()

    spec = importlib.util.spec_from_file_location("train_bench", ROOT / "benchmarks" / "train.py")
    train_bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_bench)
    label, features, n_events = train_bench.load_features(args.data)
    print(f"data: {label}, {n_events:,} events, {len(features.users):,} users, {os.cpu_count()} cores")
    rows = []
    for family in args.families.split(","):
        one, many = (
            measure(family, features, n_events, devices, args.epochs, args.threads)
            for devices in (1, args.processes)
        )
        rows += [one, many]
        ratio = {
            kind: round(many[f"{kind}_events_per_s"] / one[f"{kind}_events_per_s"], 2)
            for kind in ("steady", "wall")
            if one[f"{kind}_events_per_s"] and many[f"{kind}_events_per_s"]
        }
        print(json.dumps(one), json.dumps(many), sep="\n")
        print(f"{family}: {args.processes} processes / 1, events/s: steady x{ratio.get('steady')}, "
              f"wall x{ratio.get('wall')}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
