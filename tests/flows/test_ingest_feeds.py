"""`ingest-events` on real-feed shapes: a shop's daily exports, quotes in paths and names, the progress
records a CLI draws its bar from, and the flow's tasks returning new outcomes instead of changing them."""

from __future__ import annotations

import csv
import dataclasses
import logging
import random
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from flows.ingest import ingest_events, stage, validate
from tasks.ingest.files import FileStatus, discover_files, restrict_access
from tasks.ingest.sources import parse_source_spec
from tasks.warehouse import connect_warehouse, create_warehouse_tables
from tests.helpers import query, write_csv_source

pytestmark = pytest.mark.usefixtures("prefect_harness")

SHOP_SPEC = """name = "online_retail"
[events]
path = "exports/*.csv"
[events.columns]
user_id = "CustomerID"
item_id = "StockCode"
event_type = "CASE WHEN Quantity < 0 THEN 'return' ELSE 'purchase' END"
ts = "strptime(InvoiceDate, '%m/%d/%Y %H:%M')"
value = "Quantity * UnitPrice"
quantity = "Quantity"
session_id = "InvoiceNo"
item_title = "Description"
"""
SHOP_COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)


def write_shop_export(folder: Path, n_days: int, rows_per_day: int = 200, seed: int = 7) -> int:
    """Daily CSV exports shaped like a real online shop's (the UCI Online Retail layout): items named only
    by the rows' Description, new items every day, a quarter of the rows without a CustomerID, returns as
    negative quantities, and the odd row exported twice. Returns the number of data rows written."""
    rng = random.Random(seed)
    (folder / "exports").mkdir(parents=True, exist_ok=True)
    (folder / "source.toml").write_text(SHOP_SPEC)
    start = datetime(2010, 12, 1, 8, 0)
    n_rows = 0
    for day in range(n_days):
        n_items = 40 + 10 * day  # the catalogue grows: every day names items never seen before
        with open(folder / "exports" / f"sales-{day + 1:03d}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(SHOP_COLUMNS)
            rows = []
            for i in range(rows_per_day):
                item = rng.randrange(n_items) if rng.random() < 0.7 else n_items - 1 - rng.randrange(10)
                quantity = rng.choice([1, 1, 2, 3, 6, 12]) * (-1 if rng.random() < 0.03 else 1)
                when = start + timedelta(days=day, minutes=rng.randrange(600))
                rows.append([
                    f"{'C' if quantity < 0 else ''}{536365 + day * 1000 + i // 5}", f"{85000 + item}",
                    f"PRODUCT {item} {'RED' if item % 2 else 'BLUE'}", quantity,
                    f"{when.month}/{when.day}/{when.year} {when.hour}:{when.minute:02d}",
                    f"{1 + item % 17 * 0.35:.2f}", "" if rng.random() < 0.25 else 12346 + rng.randrange(400),
                    "United Kingdom",
                ])  # fmt: skip
            rows += rng.sample(rows, 3)  # exported twice
            writer.writerows(rows)
            n_rows += len(rows)
    return n_rows


@pytest.mark.slow
def test_a_shop_export_of_daily_files_is_accounted_row_by_row_and_a_reingest_adds_nothing(
    tmp_path, workspace
):
    n_rows = write_shop_export(tmp_path / "shop", n_days=30)
    spec = str(tmp_path / "shop" / "source.toml")
    report = ingest_events(source=spec, workspace=str(workspace), max_bad_fraction=1.0)

    # Items first named by a day's rows count as catalogued: every day lands (the check once failed them all).
    assert [f.status for f in report.files] == [FileStatus.INGESTED] * 30
    assert query(workspace, "select count(*), bool_and(success) from validation_runs") == [(30, True)]
    for f in report.files:
        assert f.rows_read == f.rows_inserted + f.rows_duplicate + f.rows_quarantined == 203
    assert sum(f.rows_read for f in report.files) == n_rows == 6090
    n_inserted = sum(f.rows_inserted for f in report.files)
    n_quarantined = sum(f.rows_quarantined for f in report.files)
    assert query(workspace, "select count(*) from events") == [(n_inserted,)]
    assert query(workspace, "select count(*) from quarantine") == [(n_quarantined,)]
    # A quarter of the rows have no customer: quarantined with that reason, and nothing else is.
    assert query(workspace, "select distinct reason from quarantine") == [
        ("user_id: missing (null or empty)",)
    ]
    assert 0.2 < n_quarantined / n_rows < 0.3
    assert query(workspace, "select count(*) from items where title like 'PRODUCT %'") == query(
        workspace, "select count(distinct item_id) from events"
    )

    tables = ("events", "items", "quarantine", "ingest_manifest")
    before = {t: query(workspace, f"select count(*) from {t}") for t in tables}
    again = ingest_events(source=spec, workspace=str(workspace), max_bad_fraction=1.0)
    assert {f.status for f in again.files} == {FileStatus.SKIPPED}
    assert {t: query(workspace, f"select count(*) from {t}") for t in tables} == before


def test_each_file_leaves_a_progress_record_for_the_cli(tmp_path, workspace, caplog):
    folder = tmp_path / "src"
    (folder / "data").mkdir(parents=True)
    for day in range(3):
        (folder / "data" / f"d{day}.csv").write_text(
            "user,item,kind,day\n" + "".join(f"u{i},i{i},view,2024-01-0{day + 1}\n" for i in range(10 + day))
        )
    (folder / "s.toml").write_text(
        'name = "p"\n[events]\npath = "data"\n[events.columns]\nuser_id = "user"\nitem_id = "item"\n'
        'event_type = "kind"\nts = "day"\n'
    )
    with caplog.at_level(logging.INFO, logger="segflow.progress"):
        ingest_events(source=str(folder / "s.toml"), workspace=str(workspace))
    records = [r for r in caplog.records if r.name == "segflow.progress"]
    assert [(r.file_index, r.n_files, r.rows_read_total, Path(r.file).name, r.status) for r in records] == [
        (1, 3, 10, "d0.csv", "ingested"),
        (2, 3, 21, "d1.csv", "ingested"),
        (3, 3, 33, "d2.csv", "ingested"),
    ]
    assert records[0].levelno == logging.INFO
    assert records[0].getMessage() == "file 1 of 3: d0.csv ingested (10 rows read so far)"


def test_a_quote_in_the_workspace_path_the_source_folder_and_the_source_name(tmp_path):
    folder = tmp_path / "o'brien"
    spec = write_csv_source(folder / "data", [f"u{i},i{i % 3},view,2024-01-01\n" for i in range(5)])
    spec.write_text(spec.read_text().replace('name = "data"', "name = \"o'brien's shop\""))
    workspace = folder / "work'space"
    report = ingest_events(source=str(spec), workspace=str(workspace))
    assert [(f.status, f.rows_inserted) for f in report.files] == [("ingested", 5)]
    assert query(workspace, "select source, count(*) from events group by 1") == [("o'brien's shop", 5)]
    assert query(workspace, "select name from sources") == [("o'brien's shop",)]
    again = ingest_events(source=str(spec), workspace=str(workspace))
    assert [f.status for f in again.files] == ["skipped"]


def test_tasks_return_new_outcomes_and_never_change_their_arguments(tmp_path):
    rows = [f"u{i},i1,rate,2024-01-01\n" for i in range(20)]
    spec_path = write_csv_source(tmp_path / "src", rows)
    spec_path.write_text(
        spec_path.read_text() + 'value = "99"\n[validation.value_ranges]\nrate = [0.5, 5.0]\n'
    )
    spec = parse_source_spec(spec_path)
    (file,) = discover_files(spec)
    con = duckdb.connect(":memory:")
    create_warehouse_tables(con)
    staged = stage.fn(con, file, spec, 0.05)
    assert staged.status is FileStatus.STAGED and staged.rows_inserted == 20
    judged = validate.fn(con, staged, spec, str(tmp_path / "reports"))
    # The gate's verdict is in what it returns; the outcome it was given is as it was.
    assert judged.status is FileStatus.FAILED_VALIDATION and judged.status == "failed_validation"
    assert staged.status is FileStatus.STAGED and staged.rows_inserted == 20
    assert (judged.rows_read, judged.rows_inserted, judged.rows_duplicate, judged.rows_quarantined) == (
        20,
        0,
        0,
        0,
    )
    assert "it would have been 20 inserted, 0 duplicate, 0 quarantined" in judged.message
    with pytest.raises(dataclasses.FrozenInstanceError):
        staged.status = FileStatus.INGESTED  # type: ignore[misc]
    con.close()


def test_the_ingest_connection_reaches_only_the_workspace_and_the_source(tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "ok.csv").write_text("a\n1\n")
    (tmp_path / "secret.csv").write_text("a\nsecret\n")
    con = duckdb.connect(str(allowed / "w.duckdb"))
    restrict_access(con, [allowed])
    assert con.execute("select * from read_csv($p)", {"p": str(allowed / "ok.csv")}).fetchall() == [(1,)]
    for sql in (
        "select * from read_csv('/etc/passwd')",
        "select content from read_text('/etc/passwd')",
        f"select * from read_csv('{tmp_path / 'secret.csv'}')",
        f"copy (select 1) to '{tmp_path / 'out.csv'}'",
    ):
        with pytest.raises(duckdb.PermissionException):
            con.execute(sql)
    with pytest.raises(duckdb.Error):
        con.execute("set enable_external_access = true")
    con.close()
    assert not (tmp_path / "out.csv").exists()


def test_after_an_ingest_the_next_connection_to_the_warehouse_is_not_restricted(tmp_path, workspace):
    spec = write_csv_source(tmp_path / "src", ["u1,i1,view,2024-01-01\n"])
    ingest_events(source=str(spec), workspace=str(workspace))
    con = connect_warehouse(workspace / "warehouse.duckdb")
    try:
        assert con.execute("select current_setting('enable_external_access')").fetchall() == [(True,)]
    finally:
        con.close()
