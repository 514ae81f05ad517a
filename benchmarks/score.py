"""Scoring new users against a full run: what `score-users` costs when 1% new events arrive, as a share of
what `segment-users` costs on the same workspace.

    .venv/bin/python benchmarks/score.py [--users 3000] [--new-share 0.01] [--keep DIR]

A fresh workspace gets a full run on the demo shop (`demo:N`, default settings); then a delivery of new
demo users (another seed, ids prefixed `new-`) holding `--new-share` of the run's events arrives, and
`score-users` ingests and assigns them. Both flows run in this process against one local Prefect server
started beforehand (its start-up is paid by neither). Prints both wall times and the ratio; target: under
10%.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

# pyspark warns on import under pandas 3 (Great Expectations imports it when present); segflow's CLI and the
# tests hide it as well.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)

SPEC = """name = "demo"
[events]
path = "events.csv"
[events.columns]
event_id = "event_id"
user_id = "user_id"
session_id = "session_id"
item_id = "item_id"
event_type = "event_type"
ts = "ts"
value = "value"
quantity = "quantity"
"""


def write_delivery(folder: Path, n_events: int, seed: int = 7) -> tuple[Path, int, int]:
    """New demo users (ids prefixed `new-`) with about `n_events` events, as a source spec; returns the spec,
    the users and the events written."""
    from tasks.ingest.demo import DemoConfig, write_demo_data

    raw = folder / "raw"
    n_users = max(1, round(n_events / 52))  # the demo's users have ~52 events each
    write_demo_data(raw, DemoConfig(n_users=n_users, seed=seed))
    written = 0
    with open(raw / "events.csv", newline="") as source, open(folder / "events.csv", "w", newline="") as out:
        reader = csv.DictReader(source)
        writer = csv.DictWriter(out, fieldnames=reader.fieldnames)
        writer.writeheader()
        for row in reader:
            writer.writerow(
                {**row, **{key: f"new-{row[key]}" for key in ("event_id", "user_id", "session_id")}}
            )
            written += 1
    (folder / "new.toml").write_text(SPEC)
    return folder / "new.toml", n_users, written


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=3000, help="users in the full run's demo shop")
    parser.add_argument("--new-share", type=float, default=0.01, help="new events, as a share of the run's")
    parser.add_argument("--keep", type=Path, help="keep the workspace in this folder")
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="segflow-score-bench-"))
    from tasks.workspace import configure_environment, open_workspace, start_prefect_server

    ws = open_workspace(root / "workspace")
    configure_environment(ws)
    server = start_prefect_server(ws)
    os.environ["PREFECT_API_URL"] = server.api_url
    server.wait_until_ready(120)
    try:
        from flows.score_users import score_users
        from flows.segment_users import segment_users
        from tasks.warehouse import describe_warehouse

        started = time.perf_counter()
        segment_users(source=f"demo:{args.users}", workspace=str(ws.root))
        run_s = time.perf_counter() - started
        n_events = describe_warehouse(ws.warehouse_path)["events"]

        spec, n_new_users, n_new_events = write_delivery(root / "delivery", round(n_events * args.new_share))
        started = time.perf_counter()
        summary = score_users(source=str(spec), workspace=str(ws.root))
        score_s = time.perf_counter() - started
    finally:
        server.stop()
    print(f"full run (segment-users, demo:{args.users}, {n_events:,} events): {run_s:.1f} s")
    print(
        f"scoring (score-users, {n_new_events:,} new events = {n_new_events / n_events:.1%}, "
        f"{n_new_users:,} new users; {summary.counts.n_scored:,} scored): {score_s:.1f} s"
    )
    print(f"ratio scoring / full run: {score_s / run_s:.1%} (target: under 10%)")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
