"""The `events_batch` suite: a staged batch of events, after quarantine and before insert."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property

import duckdb
from scipy.stats import fisher_exact

from validation.gate import Check, Suite, SuitePart, ValidationSettings, load_great_expectations

REQUIRED = ("user_id", "item_id", "event_type", "ts")
# Shares that chance makes this different less often than this are a change: about 3.3 standard errors,
# computed exactly (small batches, few earlier events and rare categories included).
CHANCE = 0.001
# An id's format: runs of letters read `a`, of digits `9`, of both `*`; the rest as it is ('u000009' -> '*',
# '17' -> '9', 'SKU-00123' -> 'a-9', 'bob@x.com' -> 'a@a.a').
ID_FORMAT = r"""regexp_replace(regexp_replace(regexp_replace({id},
    '[\pL\pN]*(\pN\pL|\pL\pN)[\pL\pN]*', '*', 'g'), '\pN+', '9', 'g'), '\pL+', 'a', 'g')"""
# A timestamp's resolution: what a date-only or minute-only export turns every event's time into.
TS_FORMAT = """case
    when {ts} is null then null
    when {ts} = date_trunc('day', {ts}) then 'dates without a time'
    when {ts} = date_trunc('minute', {ts}) then 'whole minutes'
    when {ts} = date_trunc('second', {ts}) then 'whole seconds'
    else 'fractions of a second' end"""
# What an event's value is: an export that dropped its prices, or that writes refunds as negative purchases.
VALUE_KIND = """case
    when value is null then 'no value' when value < 0 then 'negative' when value = 0 then 'zero'
    else 'positive' end"""
# Events, and users, a batch needs before "all on one second" says anything: one user's bulk rating is one.
ONE_MOMENT_MIN_EVENTS, ONE_MOMENT_MIN_USERS = 10, 3
# The earlier batches a batch is compared with: the latest that share an event type with it.
RECENT_BATCHES = 30
MISSING = "missing"  # the category of a null


def _epoch(moment: datetime) -> float:
    return moment.replace(tzinfo=UTC).timestamp()


def _from_epoch(seconds: float) -> str:
    return repr(datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S"))


def events_batch_suite(
    con: duckdb.DuckDBPyConnection,
    batch_table: str,
    event_types: tuple[str, ...],
    settings: ValidationSettings,
    compare_table: str | None = "events",
) -> Suite:
    """Expectations on `batch_table` (a staged batch, or `events` itself for `segflow validate`).

    `compare_table` holds the earlier batches the event-type mix is compared with (the warehouse so far); None
    skips the comparison.
    """
    gx = load_great_expectations()

    e = gx.expectations
    now = datetime.now(UTC).replace(tzinfo=None)
    has_catalogue = con.execute("select count(*) > 0 from items").fetchall()[0][0]
    has_event_ids = con.execute(f"select count(event_id) > 0 from {batch_table}").fetchall()[0][0]
    # An item the batch names itself (a title or category in its rows) is catalogued by this very batch:
    # shop feeds without an [items] file name their items only this way.
    rows_sql = f"""
        with named as (
            select distinct item_id from {batch_table}
            where item_title is not null or item_category is not null
        )
        select
            batch.user_id, batch.item_id, batch.event_type, epoch(batch.ts) as ts_epoch, batch.value, batch.event_id,
            case when items.item_id is null and named.item_id is null then batch.item_id end as missing_item_id,
        from {batch_table} as batch
        left join items on items.item_id = batch.item_id
        left join named on named.item_id = batch.item_id
    """
    checks = [
        *(
            Check(
                f"not_null:{c}",
                f"{c} not null",
                e.ExpectColumnValuesToNotBeNull(column="ts_epoch" if c == "ts" else c),
            )
            for c in REQUIRED
        ),
        Check(
            "event_type_in_set",
            "event_type in set",
            e.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(event_types)),
        ),
        Check(
            "ts_in_range",
            "ts within [1990-01-01, now + 1 day]",
            # GX compares datetimes one Python object at a time; epoch seconds are compared vectorised.
            e.ExpectColumnValuesToBeBetween(
                column="ts_epoch",
                min_value=_epoch(datetime(1990, 1, 1)),
                max_value=_epoch(now + timedelta(days=1)),
            ),
            format_example=_from_epoch,
        ),
        Check("at_least_one_row", "at least one row", e.ExpectTableRowCountToBeBetween(min_value=1)),
    ]
    for event_type, (low, high) in sorted(settings.value_ranges.items()):
        checks.append(
            Check(
                f"value_range:{event_type}",
                f"value of '{event_type}' events within [{low:g}, {high:g}]",
                e.ExpectColumnValuesToBeBetween(
                    column="value",
                    min_value=low,
                    max_value=high,
                    row_condition=f"event_type=={event_type!r}",  # a Python literal: any text is safe
                    condition_parser="pandas",
                ),
            )
        )
    if has_event_ids:
        checks.append(
            Check("event_id_unique", "event_id unique", e.ExpectColumnValuesToBeUnique(column="event_id"))
        )
    if has_catalogue:
        share = settings.max_missing_item_share
        checks.append(
            Check(
                "items_in_catalogue",
                f"item_id in the catalogue (at most {share:.0%} missing)",
                e.ExpectColumnValuesToBeNull(column="missing_item_id", mostly=1 - share),
            )
        )
    parts = [
        SuitePart(
            "rows",
            rows_sql,
            checks,
            chunk_key="coalesce(event_id, user_id || '|' || item_id || '|' || cast(ts_epoch as varchar))",
        )
    ]
    if compare_table is not None:
        parts += earlier_batch_parts(con, batch_table, compare_table, settings)
    return Suite("events_batch", parts)


@dataclass(frozen=True)
class Share:
    """One category (an event type, an id format): its count in the batch and in the earlier batches."""

    category: str
    k: int  # the batch's events (or ids) in it
    n: int  # the batch's events (or ids)
    m: int  # the earlier batches' events (or ids) in it
    n_earlier: int
    example: str = ""

    @property
    def share(self) -> float:
        return self.k / self.n

    @property
    def p(self) -> float:
        """Its share of the earlier batches."""
        return self.m / self.n_earlier

    @cached_property  # Fisher's test is asked for by `shift` and by `event_type_present`
    def beyond_chance(self) -> bool:
        """Whether the two shares differ by more than chance gives samples of these sizes (Fisher's exact
        test: a few earlier events are no firm share to hold a batch to)."""
        table = [[self.k, self.n - self.k], [self.m, self.n_earlier - self.m]]
        return fisher_exact(table).pvalue < CHANCE

    @property
    def shift(self) -> float:
        """The change of share, or 0 where chance explains it."""
        return round(abs(self.share - self.p), 4) if self.beyond_chance else 0.0


def compare_shares(batch: dict[str, tuple[int, str]], earlier: dict[str, tuple[int, str]]) -> list[Share]:
    """Every category of either side: each maps a category to its count and an example of it."""
    n, n_earlier = sum(k for k, _ in batch.values()), sum(k for k, _ in earlier.values())
    if not n or not n_earlier:
        return []
    return [
        Share(
            category,
            batch.get(category, (0, ""))[0],
            n,
            earlier.get(category, (0, ""))[0],
            n_earlier,
            (batch.get(category) or earlier[category])[1],
        )
        for category in sorted(batch.keys() | earlier.keys())
    ]


def _counts(
    con: duckdb.DuckDBPyConnection, sql: str, params: dict | None = None
) -> dict[str, tuple[int, str]]:
    """category -> (count, example) from a query of (category, count, example) rows; a null category (a null
    id, type or time, which the not_null checks report) is 'missing'."""
    rows = con.execute(sql, params or {}).fetchall()
    return {MISSING if category is None else category: (k, example) for category, k, example in rows}


def _by_event_type(rows: list[tuple[str, str, int]]) -> dict[str, dict[str, tuple[int, str]]]:
    """event type -> category -> (count, "") from (event type, category, count) rows."""
    counts: dict[str, dict[str, tuple[int, str]]] = {}
    for event_type, category, k in rows:
        counts.setdefault(MISSING if event_type is None else event_type, {})[category] = (k, "")
    return counts


def _values(columns: dict[str, list]) -> tuple[str, dict[str, list]]:
    """A query over Python lists (one per column), for a part whose rows are computed here."""
    select = ", ".join(f"unnest(${name}) as {name}" for name in columns)
    return f"select {select}", columns


def _recent_similar(
    con: duckdb.DuckDBPyConnection, compare_table: str, batch_types: set[str]
) -> dict[str, dict[str, int]]:
    """The latest RECENT_BATCHES earlier batches that share an event type with this one: batch id -> its
    events by type."""
    rows = con.execute(
        f"select batch_id, event_type, count(*), max(ingested_at) from {compare_table} group by all"
    ).fetchall()
    batches: dict[str, dict[str, int]] = {}
    latest: dict[str, object] = {}
    for batch_id, event_type, n, at in rows:
        batches.setdefault(batch_id, {})[event_type] = n
        latest[batch_id] = max(latest.get(batch_id, at), at)
    similar = sorted((b for b in batches if batches[b].keys() & batch_types), key=lambda b: (latest[b], b))
    return {b: batches[b] for b in similar[-RECENT_BATCHES:]}


def _sum(counts: list[dict[str, int]]) -> dict[str, tuple[int, str]]:
    total: dict[str, int] = {}
    for count in counts:
        for category, k in count.items():
            total[category] = total.get(category, 0) + k
    return {category: (k, "") for category, k in total.items()}


def _points(shift: float) -> str:
    return f"{shift * 100:.0f} points"


def _moment(moment: str) -> str:
    return f"all {moment}"


def earlier_batch_parts(
    con: duckdb.DuckDBPyConnection, batch_table: str, compare_table: str, settings: ValidationSettings
) -> list[SuitePart]:
    """Warnings where the batch does not look like the earlier ones: its event-type mix, an event type gone,
    its timestamps' resolution, every event on one second, its ids' format, the kind of value each event type
    has (none, negative, zero, positive).

    A batch is compared with the latest 30 earlier batches that share an event type with it: a file of tags is
    not a shifted file of ratings (MovieLens, Last.fm: one file per kind of event), a day of exports whose
    views vanished is; what a source did years ago is not what it does now. With no such batch there is no
    check. A change chance explains for the sizes is none (Fisher's exact test): an hour of 4 events (2 views
    where views are 82%) warned, and as `critical` would have been refused. What chance gives is counted in
    the units that vary independently: timestamps by distinct moment (one user's 9 ratings in one minute are
    one whole minute, not nine), ids by distinct id in each batch (a source where a third of each month's
    users are one-off guests has a third guests, however many build up)."""
    e = load_great_expectations().expectations
    parts: list[SuitePart] = []
    shift = settings.max_format_shift
    batch_types = _counts(con, f"select event_type, count(*), '' from {batch_table} group by 1")
    similar = _recent_similar(con, compare_table, set(batch_types))
    if not similar:
        return parts
    ids = list(similar)
    earlier = f"(select * from {compare_table} where list_contains($ids, batch_id))"

    def both(template: str) -> tuple[dict[str, tuple[int, str]], dict[str, tuple[int, str]]]:
        """The template's (category, count, example) counts over the batch and over the earlier batches; `key`
        groups the earlier ones by batch."""
        return (
            _counts(con, template.format(source=batch_table, key="1")),
            _counts(con, template.format(source=earlier, key="batch_id"), {"ids": ids}),
        )

    types = compare_shares(batch_types, _sum(list(similar.values())))
    ts_formats = compare_shares(*both(
        f"select {TS_FORMAT.format(ts='ts')}, count(*), '' from (select distinct {{key}}, ts from {{source}}) group by 1"
    ))  # fmt: skip
    id_formats = [
        (column, compare_shares(*both(
            f"select {ID_FORMAT.format(id=column)}, count(*), min({column}) "
            f"from (select distinct {{key}}, {column} from {{source}}) group by 1"
        )))
        for column in ("user_id", "item_id")
    ]  # fmt: skip
    values = f"select event_type, {VALUE_KIND}, count(*) from {{source}} group by all"
    batch_values = _by_event_type(con.execute(values.format(source=batch_table)).fetchall())
    earlier_values = _by_event_type(con.execute(values.format(source=earlier), {"ids": ids}).fetchall())
    value_kinds = [
        (event_type, share)
        for event_type in sorted(batch_types)
        for share in compare_shares(batch_values[event_type], earlier_values.get(event_type, {}))
    ]
    if types:
        sql, params = _values({
            "event_type": [s.category for s in types],
            "shift": [s.shift for s in types],
            "share": [f"{s.p:.0%} before, {s.share:.0%} now" for s in types],
            # The events an earlier type was expected to have, where the batch has none, chance does not explain
            # it, and no earlier batch lacked it beyond chance too (tags come in bursts from a few users: a
            # month of MovieLens without tags is ordinary; a daily export without its purchases is not).
            "missing": [
                round(s.n * s.p, 1)
                if s.k == 0 and s.beyond_chance and not any(
                    s.category not in counts and (1 - s.p) ** sum(counts.values()) < CHANCE
                    for counts in similar.values()
                )
                else None
                for s in types
            ],
        })  # fmt: skip
        mix = settings.max_event_type_shift
        parts.append(SuitePart("event_type_mix", sql, [
            Check(
                "event_type_mix",
                f"event_type mix within {mix * 100:.0f} points of earlier batches of these event types",
                e.ExpectColumnValuesToBeBetween(column="shift", max_value=mix),
                severity="warning",
                unit="event types",
                format_example=_points,
            ),
            Check(
                "event_type_present",
                "every event type of earlier batches present (where chance cannot explain its absence)",
                e.ExpectColumnValuesToBeNull(column="missing"),
                severity="warning",
                unit="event types",
                format_example=lambda expected: f"{expected:,.0f} expected, none seen",
            ),
        ], params=params, id_columns=["event_type", "share"]))  # fmt: skip
    for column, shares in [("ts", ts_formats), *id_formats]:
        if not shares:
            continue
        sql, params = _values({
            "shift": [s.shift for s in shares],
            "format": [
                f"{s.category if column == 'ts' else f'like {s.example!r}'}: {s.p:.0%} before, {s.share:.0%} now"
                for s in shares
            ],
        })  # fmt: skip
        parts.append(SuitePart(f"{column}_format", sql, [
            Check(
                f"{column}_format",
                f"{column} formats within {shift * 100:.0f} points of earlier batches",
                e.ExpectColumnValuesToBeBetween(column="shift", max_value=shift),
                severity="warning",
                unit="timestamp formats" if column == "ts" else f"{column} formats",
                format_example=_points,
            ),
        ], params=params, id_columns=["format"]))  # fmt: skip
    if value_kinds:
        sql, params = _values({
            "shift": [s.shift for _, s in value_kinds],
            "format": [f"{t} {s.category}: {s.p:.0%} before, {s.share:.0%} now" for t, s in value_kinds],
        })  # fmt: skip
        parts.append(SuitePart("value_format", sql, [
            Check(
                "value_format",
                f"each event type's values (none, negative, zero, positive) within {shift * 100:.0f} points "
                "of earlier batches",
                e.ExpectColumnValuesToBeBetween(column="shift", max_value=shift),
                severity="warning",
                unit="kinds of value",
                format_example=_points,
            ),
        ], params=params, id_columns=["format"]))  # fmt: skip
    # Events of several users all on one second, where no earlier batch of as many was: an export that writes
    # its own time, say. One user's bulk rating is one second; at midnight it is a batch of dates (ts_format).
    n_events, n_users = ONE_MOMENT_MIN_EVENTS, ONE_MOMENT_MIN_USERS
    spread = """
        select count(*) as n, count(distinct user_id) as users, min(ts)::varchar as moment,
            date_trunc('second', min(ts)) = date_trunc('second', max(ts)) as one,
            min(ts) = date_trunc('day', min(ts)) as midnight
        from {source} group by {key}
    """
    ((n, users, moment, one, midnight),) = con.execute(spread.format(source=batch_table, key="()")).fetchall()
    sized = n >= n_events and users >= n_users
    earlier_one = con.execute(
        f"select count(*) filter (n >= {n_events} and users >= {n_users} and one) "
        f"from ({spread.format(source=earlier, key='batch_id')})",
        {"ids": ids},
    ).fetchone()[0]
    flagged = sized and one and not midnight and not earlier_one
    sql, params = _values({"moment": [f"{n:,} events of {users:,} users on {moment}" if flagged else None]})
    parts.append(SuitePart("ts_spread", sql, [
        Check(
            "ts_spread",
            f"events of {n_users}+ users on more than one second, as in earlier batches",
            e.ExpectColumnValuesToBeNull(column="moment"),
            severity="warning",
            unit="batches",
            format_example=_moment,
        ),
    ], params=params))  # fmt: skip
    return parts
