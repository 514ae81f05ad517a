"""What a feed's `unnest` costs: `segflow ingest` of GA4-style orders (JSON Lines, each event's items an array of
1-4) with `unnest = { item = "items" }`, against `segflow ingest` of the same events written flat (one line
per item, the item's fields beside the event's), in one run.

    .venv/bin/python benchmarks/unnest.py [--orders 250000] [--rounds 2] [--keep DIR]

Both files give the same events (checked: the same count and the same sum of values in both warehouses).
Prints each run's wall time and peak RSS (the whole CLI in a fresh workspace and process), and the ratio
unnested / flat of the medians: what reading the items out of arrays costs over a file that already has a
row per item.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import segflow_ingest  # noqa: E402

COLUMNS = """user_id = "user_pseudo_id"
event_type = "CASE event_name WHEN 'view_item' THEN 'view' ELSE event_name END"
ts = "event_timestamp"
"""
UNNESTED = f"""name = "bench"
[events]
path = "orders.jsonl"
unnest = {{ item = "items" }}
[events.columns]
{COLUMNS}item_id = "item->>'item_id'"
value = "item->>'price'"
quantity = "item->>'quantity'"
"""
FLAT = f"""name = "bench"
[events]
path = "lines.jsonl"
[events.columns]
{COLUMNS}item_id = "item_id"
value = "price"
quantity = "quantity"
"""


def write_files(folder: Path, n_orders: int) -> None:
    """orders.jsonl: one line per event with an `items` array of 1-4; lines.jsonl: one line per item."""
    folder.mkdir(parents=True, exist_ok=True)
    duckdb.execute(
        f"""
        create table lines as
        select
            i as event, j as line,
            (['view_item', 'add_to_cart', 'purchase'])[1 + i % 3] as event_name,
            'u' || (hash(i) % 50000) as user_pseudo_id,
            1704067200000000 + i * 1000000 as event_timestamp,
            'SKU-' || (hash(i * 31 + j) % 20000) as item_id,
            round((hash(i + j) % 10000) / 100, 2) as price,
            1 + (i + j) % 3 as quantity,
        from (select i, unnest(range(1 + i % 4)) as j from range({n_orders}) t(i))
        """
    )
    duckdb.execute(
        f"""
        copy (
            select event_name, user_pseudo_id, event_timestamp,
                list({{'item_id': item_id, 'price': price, 'quantity': quantity}} order by line) as items,
            from lines group by event, event_name, user_pseudo_id, event_timestamp order by event
        ) to '{folder / "orders.jsonl"}' (format json)
        """
    )
    duckdb.execute(
        f"""copy (select * exclude (event, line) from lines order by event, line)
        to '{folder / "lines.jsonl"}' (format json)"""
    )
    (folder / "unnested.toml").write_text(UNNESTED)
    (folder / "flat.toml").write_text(FLAT)


def totals(workspace: Path) -> tuple[int, float]:
    with duckdb.connect(str(workspace / "warehouse.duckdb"), read_only=True) as con:
        return con.execute("select count(*), round(sum(value), 2) from events").fetchall()[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=250_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="write the files and workspaces here and keep them")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="segflow-unnest-bench-"))
    try:
        write_files(folder / "data", args.orders)
        n_lines = sum(1 for _ in (folder / "data" / "lines.jsonl").open())
        print(f"{args.orders:,} events with {n_lines:,} items")
        runs: dict[str, list[tuple[float, float]]] = {"flat": [], "unnested": []}
        for round_ in range(args.rounds):  # alternating, so the machine's load falls on both
            for kind in runs:
                workspace = folder / f"ws-{kind}-{round_}"
                shutil.rmtree(workspace, ignore_errors=True)
                runs[kind].append(segflow_ingest(folder / "data" / f"{kind}.toml", workspace))
                print(f"  {kind:<9} {runs[kind][-1][0]:6.1f} s  peak {runs[kind][-1][1]:6.0f} MB  events, sum of "
                      f"values: {totals(workspace)}", flush=True)  # fmt: skip
        flat, unnested = (statistics.median(s for s, _ in runs[k]) for k in ("flat", "unnested"))
        print(
            f"median: flat {flat:.1f} s, unnested {unnested:.1f} s; unnested / flat = {unnested / flat:.2f}"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
