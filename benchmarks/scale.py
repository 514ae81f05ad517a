"""How time and memory grow with events: a full `segment-users` run on the demo shop at several sizes, each
stage's wall time and the process's peak memory while it ran.

    .venv/bin/python benchmarks/scale.py [--events 1000000 5000000 25000000] [--embedding auto] [--keep DIR]

Each size gets its own demo shop (`segflow demo-data`, about 54 events a user, written in chunks) and a fresh
workspace; generation is timed apart from the run. Each size's run is a process of its own (so one size's
memory is not counted in the next), against one local Prefect server started beforehand (its start-up is paid
by no stage). A stage is a Prefect task run: its seconds are the server's record of it; its peak is the highest
resident memory of the run's process sampled every 0.1 s while it ran (processes it starts, e.g. Spark or DDP
workers, are not counted). Prints one table per size and, at the end, seconds per million events and peak
memory per size: time per event should not grow with size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EVENTS_PER_USER = 54  # the demo shop's mean, measured on demo:50000 (2,695,689 events)


@dataclass
class MemorySampler:
    """Resident memory of this process every `interval` seconds, in a background thread."""

    interval: float = 0.1
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> MemorySampler:
        process = psutil.Process()

        def sample() -> None:
            while not self._stop.is_set():
                self.samples.append((time.time(), process.memory_info().rss))
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float, end: float) -> int:
        inside = [rss for at, rss in self.samples if start <= at <= end]
        return max(inside, default=0)


def stage_name(task_name: str) -> str:
    """A task run's stage: its name without the per-file or per-family detail ("stage events.csv" -> "stage")."""
    for prefix in ("stage ", "validate ", "insert ", "embed "):
        if task_name.startswith(prefix) and "(" not in task_name:
            return prefix.strip()
    return task_name.rsplit("-", 1)[0] if task_name[-4:-3] == "-" else task_name


async def read_task_runs(after: datetime) -> list[tuple[str, float, float]]:
    """(name, start, end) of every task run that started after `after`, as the Prefect server recorded them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterStartTime

    runs = []
    async with get_client() as client:
        while True:  # the server answers at most 200 at a time
            page = await client.read_task_runs(
                task_run_filter=TaskRunFilter(start_time=TaskRunFilterStartTime(after_=after)),
                limit=200,
                offset=len(runs),
            )
            runs += page
            if len(page) < 200:
                break
    return sorted(
        (run.name, run.start_time.timestamp(), run.end_time.timestamp())
        for run in runs
        if run.start_time is not None and run.end_time is not None
    )


def generate(n_events: int, root: Path) -> tuple[Path, int, float]:
    """The demo shop for about `n_events` events under root/events-N/data (kept from an earlier --keep run of
    the same size): (folder, users, seconds spent generating)."""
    from tasks.ingest.demo import DemoConfig, write_demo_data

    folder = root / f"events-{n_events}"
    n_users = max(20, round(n_events / EVENTS_PER_USER))
    shutil.rmtree(folder / "workspace", ignore_errors=True)  # every run starts from an empty workspace
    if (folder / "data" / "source.toml").exists():
        return folder, n_users, 0.0
    started = time.perf_counter()
    write_demo_data(folder / "data", DemoConfig(n_users=n_users))
    return folder, n_users, time.perf_counter() - started


def run_one(folder: Path, settings) -> dict:
    """`segment-users` on folder/data into folder/workspace, in this process: its seconds, peak and stages."""
    from flows.segment_users import segment_users
    from tasks.warehouse import describe_warehouse

    began = datetime.now(UTC)
    with MemorySampler() as sampler:
        started, wall_start = time.perf_counter(), time.time()
        segment_users(
            source=str(folder / "data" / "source.toml"),
            workspace=str(folder / "workspace"),
            settings=settings,
        )
        run_s = time.perf_counter() - started
        peak = sampler.peak(wall_start, time.time())
        stages: dict[str, list[float]] = {}
        for name, start, end in asyncio.run(read_task_runs(began)):
            total = stages.setdefault(stage_name(name), [0.0, 0])
            total[0] += end - start
            total[1] = max(total[1], sampler.peak(start, end))
    warehouse = describe_warehouse(folder / "workspace" / "warehouse.duckdb")
    return {"events": warehouse["events"], "run_s": run_s, "peak": peak, "stages": stages}


def run_size(folder: Path, embedding: str) -> dict:
    """run_one in a fresh Python process (it inherits PREFECT_API_URL): this process's memory is not in it."""
    out = folder / "result.json"
    subprocess.run(
        [sys.executable, __file__, "--run-one", str(folder), "--embedding", embedding, "--result", str(out)],
        check=True,
    )
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000, 5_000_000, 25_000_000])
    parser.add_argument("--embedding", default="auto", help="the run's --embedding (default auto)")
    parser.add_argument("--keep", type=Path, help="keep the data and workspaces in this folder")
    parser.add_argument("--run-one", type=Path, help=argparse.SUPPRESS)  # a child: one size's run
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    from tasks.segment.settings import SegmentSettings

    settings = SegmentSettings(embedding=args.embedding)
    if args.run_one:
        args.result.write_text(json.dumps(run_one(args.run_one, settings)))
        return

    root = args.keep or Path(tempfile.mkdtemp(prefix="segflow-scale-"))
    from tasks.workspace import configure_environment, open_workspace, start_prefect_server

    ws = open_workspace(root / "prefect-workspace")
    configure_environment(ws)
    server = start_prefect_server(ws)
    os.environ["PREFECT_API_URL"] = server.api_url
    server.wait_until_ready(120)
    results = []
    try:
        for n_events in args.events:
            folder, users, generate_s = generate(n_events, root)
            result = run_size(folder, args.embedding) | {"users": users}
            results.append(result)
            print(
                f"\n{result['events']:,} events, {users:,} users: run {result['run_s']:.0f} s, "
                f"peak {result['peak'] / 2**30:.2f} GB (generating the files: {generate_s:.0f} s)"
            )
            print(f"  {'stage':<34}{'s':>9}{'peak GB':>9}")
            for name, (seconds, peak) in sorted(result["stages"].items(), key=lambda s: -s[1][0]):
                if seconds >= 0.5:
                    print(f"  {name:<34}{seconds:>9.1f}{peak / 2**30:>9.2f}")
    finally:
        server.stop()
    print(f"\n{'events':>12}{'users':>10}{'run s':>9}{'s per M events':>16}{'peak GB':>9}")
    for result in results:
        per_million = result["run_s"] / (result["events"] / 1e6)
        print(
            f"{result['events']:>12,}{result['users']:>10,}{result['run_s']:>9.0f}{per_million:>16.1f}"
            f"{result['peak'] / 2**30:>9.2f}"
        )
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
