"""The `events_batch` suite: a staged batch of events, after quarantine and before insert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb

from validation.gate import Check, Suite, SuitePart, ValidationSettings, load_great_expectations

REQUIRED = ("user_id", "item_id", "event_type", "ts")


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
    # The mix is compared with the earlier batches that share an event type with this one: a file of tags is
    # not a shifted file of ratings (MovieLens, Last.fm: one file per kind of event), a day of exports whose
    # views vanished is. With no such batch there is nothing to compare with, and no check. A change within
    # what chance gives a batch of its size counts as none: an hour of 4 events (2 views where views are 82%)
    # warned, and as `critical` would have been refused.
    similar = f"""
        select event_type from {compare_table}
        where batch_id in (
            select distinct batch_id from {compare_table}
            where event_type in (select distinct event_type from {batch_table})
        )
    """
    if compare_table is not None and con.execute(f"select count(*) > 0 from ({similar})").fetchone()[0]:
        shift = settings.max_event_type_shift
        # CTE names no table can have: a batch table named `batch` was shadowed by a CTE of that name.
        mix_sql = f"""
            with batch_size as (select count(*) as n from {batch_table}),
            batch_mix as (
                select event_type, count(*) / sum(count(*)) over () as share from {batch_table} group by 1
            ),
            stored_mix as (
                select event_type, count(*) / sum(count(*)) over () as share from ({similar}) group by 1
            ),
            changes as (
                select
                    coalesce(batch_mix.event_type, stored_mix.event_type) as event_type,
                    abs(coalesce(batch_mix.share, 0) - coalesce(stored_mix.share, 0)) as change,
                    -- What chance alone moves a share by in a batch of this size: 3 standard errors.
                    3 * sqrt(coalesce(stored_mix.share, 0) * (1 - coalesce(stored_mix.share, 0))
                        / (select n from batch_size)) as chance,
                from batch_mix
                full join stored_mix on stored_mix.event_type = batch_mix.event_type
            ),
            final as (
                select event_type, round(case when change > chance then change else 0 end, 4) as shift,
                from changes
            )
            select * from final
        """
        parts.append(
            SuitePart(
                "event_type_mix",
                mix_sql,
                [
                    Check(
                        "event_type_mix",
                        f"event_type mix within {shift:.0%} of earlier batches of these event types",
                        e.ExpectColumnValuesToBeBetween(column="shift", max_value=shift),
                        severity="warning",
                        unit="event types",
                    )
                ],
                id_columns=["event_type"],
            )
        )
    return Suite("events_batch", parts)
