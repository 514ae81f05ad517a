"""Ids and UTC timestamps, one way everywhere: timestamps are naive UTC (DuckDB's TIMESTAMP), ids sort by time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime


def utc_now() -> datetime:
    """Now, in UTC, without a zone (what the warehouse's TIMESTAMP columns hold)."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_id(n_hex: int = 6) -> str:
    """`20261128T141216-3fa9c1`: sortable by time, unique within a second."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:n_hex]
