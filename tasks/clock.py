"""Ids and UTC timestamps, one way everywhere: timestamps are naive UTC (DuckDB's TIMESTAMP), ids sort by time;
time zones are IANA names (a source's local time)."""

from __future__ import annotations

import difflib
import re
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
        raise ValueError(f"unknown time zone {name!r}: {_zone_advice(name.strip())}")
    return spelt


ABBREVIATION = re.compile(r"[A-Z]{2,5}")  # CEST, BRT, AEST, PST
# A fixed offset written as a source's zone: `-03:00`, `UTC-3`, `GMT+0530`.
OFFSET = re.compile(r"(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?", re.IGNORECASE)


def _zone_advice(name: str) -> str:
    """What to write instead of `name`: the zone it likely means (`America/Sao Paulo`), the Etc zone of a
    whole-hour offset, or how zones are named."""
    offset = OFFSET.fullmatch(name)
    if offset:
        sign, hours, minutes = offset.groups()
        posix = f"Etc/GMT{'+' if sign == '-' else '-'}{int(hours)}"  # POSIX's sign: Etc/GMT+3 is UTC-3
        if not int(hours) and not int(minutes or 0):
            fixed = "a zero offset is UTC"
        elif int(minutes or 0):
            fixed = "a fixed offset that is not a whole hour has no zone"
        elif spelt_zone(posix):
            fixed = (
                f"a fixed offset is the zone {spelt_zone(posix)} (its sign is POSIX's, the other way round)"
            )
        else:
            fixed = "no zone is that far from UTC"
        return (
            f"a source's zone is a place's name, whose offset follows its daylight saving time (e.g. "
            f"America/Sao_Paulo); {fixed}; an offset that differs by event goes in the events' timezone column"
        )
    advice = "use a name of the IANA time zone database, e.g. Europe/Berlin, America/New_York or UTC"
    if ABBREVIATION.fullmatch(name):  # CEST, BRT: an abbreviation names no zone, and EST is not CEST
        return f"an abbreviation names no place's zone: {advice}"
    # Only places are suggested, and only a near spelling of one (`America/Sao Paulo`, `Europe/Berln`, `sao
    # paulo`): a zone a letter or two away can be hours away (Asia/Dubai for Asia/Mumbai, EST for CEST).
    places = sorted(zone for zone in _spellings() if "/" in zone and not zone.startswith("etc/"))
    cities = {zone.rsplit("/", 1)[-1]: zone for zone in places}  # sao_paulo: america/sao_paulo
    guess = name.replace(" ", "_").lower()
    close = difflib.get_close_matches(guess, places, n=1, cutoff=0.9) or [
        cities[city] for city in difflib.get_close_matches(guess, cities, n=1, cutoff=0.9)
    ]
    return f"did you mean {_spellings()[close[0]]}?" if close else advice


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
