"""Ingest speed and memory: `segflow ingest` against raw DuckDB on the same canonical CSV, in one run.

    .venv/bin/python benchmarks/ingest.py [--rows 1000000 4000000] [--keep DIR]

Prints, per size, the wall time of `segflow ingest` (a fresh workspace, the whole CLI: Prefect start-up,
hashing, staging, checks, dedup, insert) and of raw DuckDB (`create table ... as select * from read_csv(...)`)
in a fresh process, the peak RSS of each, then the fixed overhead and the marginal ratio
(segflow 4M - segflow 1M) / (raw 4M - raw 1M). Target: marginal ratio <= 1.5, peak RSS < 2 GB.
On the smallest size, two files DuckDB cannot read right are ingested too, and timed against the clean one:
the same rows with a stray quote on the fifth row, and with the first half's lines ending in CRLF (two
exports joined); both are read by segflow's line reader (tasks/ingest/stage.py), every row accounted for.
The ingest includes the validation gate; the time the `events_batch` suite takes on the smaller batch is
printed on its own (target: at most ~2 s for 1M rows), and so is what comparing a 100,000-event batch with
the larger warehouse's earlier batches adds to the suite (event-type mix, formats, values, one second).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import duckdb

# pyspark warns on import under pandas 3 (Great Expectations imports it when present); segflow's CLI and the
# tests hide it as well.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)

ROOT = Path(__file__).resolve().parents[1]
SEGFLOW = Path(sys.executable).parent / "segflow"
SPEC = """name = "bench"
[events]
path = "events.csv"
[events.columns]
event_id = "event_id"
user_id = "user_id"
item_id = "item_id"
event_type = "event_type"
ts = "ts"
value = "value"
quantity = "quantity"
session_id = "session_id"
"""


def write_events(folder: Path, n_rows: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "events.csv"
    duckdb.execute(
        f"""
        copy (
            select
                'e' || i as event_id,
                'u' || (hash(i) % 100000) as user_id,
                'i' || (hash(i * 7) % 20000) as item_id,
                (['view', 'view', 'view', 'add_to_cart', 'purchase'])[1 + (i % 5)] as event_type,
                timestamp '2024-01-01' + to_seconds(i % 10000000) as ts,
                case when i % 5 = 4 then round((hash(i) % 10000) / 100, 2) end as value,
                case when i % 5 = 4 then 1 + i % 3 end as quantity,
                's' || (i // 20) as session_id,
            from range({n_rows}) t(i)
        ) to '{path}' (header, delimiter ',')
        """
    )
    (folder / "source.toml").write_text(SPEC)
    return path


def write_variant(folder: Path, csv_path: Path, kind: str) -> Path:
    """A copy of the events (and the spec) that DuckDB cannot read right: `stray` puts a quote that never
    closes into the fifth row; `mixed` ends the first half's lines in CRLF."""
    out = folder / kind
    out.mkdir(parents=True, exist_ok=True)
    lines = csv_path.read_bytes().splitlines(keepends=True)
    if kind == "stray":
        lines[5] = lines[5].replace(b",", b',"', 1)
    else:
        half = len(lines) // 2
        lines[:half] = [line[:-1] + b"\r\n" for line in lines[:half]]
    (out / "events.csv").write_bytes(b"".join(lines))
    (out / "source.toml").write_text(SPEC)
    return out


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, rusage = os.wait4(process.pid, 0)[1:]
    elapsed = time.perf_counter() - start
    stderr = process.stderr.read()
    if process.returncode not in (0, None) and rusage is None:
        raise RuntimeError(stderr)
    return elapsed, rusage.ru_maxrss / 1024


def raw_duckdb(csv_path: Path, db_path: Path) -> tuple[float, float]:
    code = f'import duckdb; duckdb.connect({str(db_path)!r}).execute("create table t as select * from read_csv({str(csv_path)!r})")'
    return timed([sys.executable, "-c", code])


def segflow_ingest(spec_path: Path, workspace: Path) -> tuple[float, float]:
    return timed([str(SEGFLOW), "ingest", "--source", str(spec_path), "--workspace", str(workspace)])


def time_validation(warehouse_path: Path) -> tuple[float, int]:
    """Seconds to run the events_batch suite over the ingested events, as the gate does, and the rows."""
    sys.path.insert(0, str(ROOT))
    import great_expectations  # noqa: F401 - imported once, outside the timing, as in a running pipeline

    from tasks.ingest.sources import DEFAULT_EVENT_TYPES
    from validation.events_batch import events_batch_suite
    from validation.gate import ValidationSettings, run_suite

    con = duckdb.connect(str(warehouse_path), read_only=True)
    settings = ValidationSettings()
    n_rows = con.execute("select count(*) from events").fetchall()[0][0]
    start = time.perf_counter()
    result = run_suite(
        con, events_batch_suite(con, "events", DEFAULT_EVENT_TYPES, settings, None), "bench", settings
    )
    elapsed = time.perf_counter() - start
    con.close()
    assert result.success, result.describe_failures()
    return elapsed, n_rows


def time_comparisons(warehouse_path: Path, batch_rows: int = 100_000) -> tuple[float, float, int]:
    """Seconds of the events_batch suite on a batch of `batch_rows` events without and with its comparisons
    with the warehouse's earlier batches, and the warehouse's events."""
    sys.path.insert(0, str(ROOT))
    from tasks.ingest.sources import DEFAULT_EVENT_TYPES
    from validation.events_batch import events_batch_suite
    from validation.gate import ValidationSettings, run_suite

    con = duckdb.connect()
    con.execute(f"attach '{warehouse_path}' as wh (read_only)")
    con.execute("use wh")  # the suite reads `items`
    con.execute(f"create temp table batch as select * from wh.events limit {batch_rows}")
    settings = ValidationSettings()
    seconds = []
    for compare_table in (None, "wh.events"):
        start = time.perf_counter()
        suite = events_batch_suite(con, "temp.batch", DEFAULT_EVENT_TYPES, settings, compare_table)
        run_suite(con, suite, "bench", settings)
        seconds.append(time.perf_counter() - start)
    n_events = con.execute("select count(*) from wh.events").fetchall()[0][0]
    con.close()
    return seconds[0], seconds[1], n_events


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, nargs="+", default=[1_000_000, 4_000_000], help="two or more sizes"
    )
    parser.add_argument("--keep", type=Path, help="keep the files here instead of a temporary folder")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="segflow-bench-"))
    prefect_home = base / "prefect"  # shared, so only the first run pays Prefect's database set-up
    env = {**os.environ, "PREFECT_HOME": str(prefect_home)}
    os.environ.update(env)
    results = {}
    try:
        for n_rows in args.rows:
            folder = base / f"rows-{n_rows}"
            csv_path = write_events(folder, n_rows)
            size_mb = csv_path.stat().st_size / 1e6
            # Warm Prefect's home once so both sizes pay the same start-up.
            if not prefect_home.exists():
                segflow_ingest(folder / "source.toml", base / "warmup")
            raw_s, raw_mb = raw_duckdb(csv_path, folder / "raw.duckdb")
            seg_s, seg_mb = segflow_ingest(folder / "source.toml", folder / "workspace")
            con = duckdb.connect(str(folder / "workspace" / "warehouse.duckdb"), read_only=True)
            n_events = con.execute("select count(*) from events").fetchall()[0][0]
            con.close()
            assert n_events == n_rows, f"segflow inserted {n_events:,} of {n_rows:,} rows"
            results[n_rows] = (raw_s, seg_s)
            print(f"{n_rows:>10,} rows ({size_mb:,.0f} MB)  raw duckdb {raw_s:6.2f} s ({raw_mb:5.0f} MB RSS)   "
                  f"segflow ingest {seg_s:6.2f} s ({seg_mb:5.0f} MB RSS)", flush=True)  # fmt: skip
        small_folder = base / f"rows-{min(args.rows)}"
        clean_s = results[min(args.rows)][1]
        for kind, what in (("stray", "a stray quote on row 5"), ("mixed", "CRLF then LF line ends")):
            folder = write_variant(small_folder, small_folder / "events.csv", kind)
            seg_s, seg_mb = segflow_ingest(folder / "source.toml", folder / "workspace")
            con = duckdb.connect(str(folder / "workspace" / "warehouse.duckdb"), read_only=True)
            n_events, n_quarantined = con.execute(
                "select (select count(*) from events), (select count(*) from quarantine)"
            ).fetchall()[0]
            con.close()
            assert n_events + n_quarantined == min(args.rows), (
                f"{kind}: {n_events:,} + {n_quarantined:,} rows"
            )
            print(f"{min(args.rows):>10,} rows, {what}: segflow ingest {seg_s:6.2f} s ({seg_mb:5.0f} MB RSS), "
                  f"{seg_s - clean_s:+.2f} s on the clean file's; {n_events:,} inserted, {n_quarantined} quarantined",
                  flush=True)  # fmt: skip
        ordered = sorted(results.items())
        (small, (raw_small, seg_small)), (large, (raw_large, seg_large)) = ordered[0], ordered[-1]
        marginal = (seg_large - seg_small) / (raw_large - raw_small)
        validation_s, n_validated = time_validation(base / f"rows-{small}" / "workspace" / "warehouse.duckdb")
        print(
            f"validation gate (events_batch suite) on {n_validated:,} rows: {validation_s:.2f} s  (target <= ~2 s)"
        )
        alone_s, compared_s, n_earlier = time_comparisons(
            base / f"rows-{large}" / "workspace" / "warehouse.duckdb"
        )
        print(
            f"a 100,000-event batch compared with {n_earlier:,} earlier events: suite {compared_s:.2f} s, "
            f"{compared_s / alone_s:.1f}x the suite without the comparisons ({alone_s:.2f} s)"
        )
        print(f"fixed overhead (segflow - raw at {small:,} rows): {seg_small - raw_small:.2f} s")
        print(
            f"marginal ratio (segflow {large:,} - {small:,}) / (raw {large:,} - {small:,}): {marginal:.2f}  (target <= 1.5)"
        )
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
