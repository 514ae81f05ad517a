"""Ids and UTC timestamps, one way everywhere: timestamps are naive UTC (DuckDB's TIMESTAMP), ids sort by time;
time zones are IANA names (a source's local time)."""

from __future__ import annotations

import uuid
import zoneinfo
from datetime import UTC, datetime
from functools import cache


def utc_now() -> datetime:
    """Now, in UTC, without a zone (what the warehouse's TIMESTAMP columns hold)."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_id(n_hex: int = 6) -> str:
    """`20261128T141216-3fa9c1`: sortable by time, unique within a second."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:n_hex]


def check_timezone(name: str) -> str:
    """A time zone of the IANA database as it spells it (`europe/berlin ` is Europe/Berlin); a ValueError
    when `name` is none."""
    spelt = spelt_zone(name.strip())
    if spelt is None:
        raise ValueError(
            f"unknown time zone {name!r}: use a name of the IANA time zone database, e.g. Europe/Berlin, "
            "America/New_York or UTC"
        )
    return spelt


def spelt_zone(name: str) -> str | None:
    """`name` as the IANA database spells it, whatever its case (`asia/tokyo` is Asia/Tokyo); None when no
    zone is so named."""
    return _spellings().get(name.lower())


@cache
def _spellings() -> dict[str, str]:
    return {zone.lower(): zone for zone in time_zone_names()}


@cache
def time_zone_names() -> frozenset[str]:
    """Every zone name of the IANA database that DuckDB and Polars (which convert the times) both read: less
    the two that name no place, `Factory` and `localtime`."""
    return frozenset(zoneinfo.available_timezones() - {"Factory", "localtime"}) | {"UTC"}
