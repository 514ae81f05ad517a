"""What a writer does first, before it reads what is published: finish a publish that an earlier run left
between the swap's commit and the switch of `exports/current` (killed there, or stopped by a full disk), so
the tables and the exports readers serve are the same run's again. Both flows that publish call it."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.publish import publish
from tasks.warehouse import connect_warehouse


@task(cache_policy=NO_CACHE)
def finish_interrupted_publish(warehouse_path: str, memory_limit: str, exports_dir: str) -> str | None:
    """Point `exports/current` at the folder the published tables match when it points elsewhere; returns
    that folder's name when it did."""
    con = connect_warehouse(warehouse_path, memory_limit)
    try:
        folder = publish.restore_current_export(con, Path(exports_dir))
    finally:
        con.close()
    if folder is not None:
        get_run_logger().warning(restored_notes(folder)[0])
    return folder


def restored_notes(folder: str | None) -> list[str]:
    """The summary's line about what `finish_interrupted_publish` did (none when it did nothing)."""
    if folder is None:
        return []
    return [
        f"an earlier publish stopped after the warehouse swap: exports/current now points at {folder}, the "
        "folder that holds what the published tables hold"
    ]
