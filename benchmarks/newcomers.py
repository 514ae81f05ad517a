"""Where a published run's saved segmenter puts newcomers: every published user's events of one type (default
`play`), under a new id, assigned as `segflow score` would assign a new user (measured as of the fit's end),
against the segment the run published for them.

    .venv/bin/python benchmarks/newcomers.py WORKSPACE [--event-type play]

On Last.fm (plays only, each dated 2011-05-31: a newcomer's whole history on one day) this is the replay that
showed a one-day history put 1,854 of 1,892 newcomers in one segment before features were clipped into the
fit's range (FeatureModel.ranges). Prints, per `placed_by`, the users, the share in their own published
segment, the median distance and events; the five largest segments; the share in their own segment overall;
and the segments' reach. Reads the workspace only (the warehouse read-only, exports/current/segmenter.pkl).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import duckdb
import polars as pl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workspace", type=Path)
    parser.add_argument("--event-type", default="play")
    args = parser.parse_args()

    from tasks.segment.segmenter import Segmenter

    segmenter = Segmenter.load(args.workspace / "exports" / "current" / "segmenter.pkl")
    con = duckdb.connect(str(args.workspace / "warehouse.duckdb"), read_only=True)
    try:
        events = con.sql(
            "select 'new:' || user_id as user_id, item_id, event_type, ts, value from events "
            "where event_type = $type and user_id in (select user_id from user_segments)",
            params={"type": args.event_type},
        ).pl()
        published = con.sql(
            "select 'new:' || user_id as user_id, segment_id as published from user_segments"
        ).pl()
        labels = dict(con.sql("select segment_id, label from segment_profiles").fetchall())
    finally:
        con.close()
    assigned = (
        segmenter.assign(events)
        .join(published, on="user_id")
        .join(events.group_by("user_id").len("events"), on="user_id")
    )
    same = pl.col("segment_id") == pl.col("published")
    print(f"{assigned.height:,} newcomers (the published users' {args.event_type} events, under new ids)")
    print(
        f"the segments' reach: {segmenter.reach.limit:.2f}" if segmenter.reach else "no reach (an older run)"
    )
    with pl.Config(tbl_rows=30, tbl_hide_dataframe_shape=True):
        print(
            assigned.group_by("placed_by")
            .agg(pl.len().alias("users"), same.mean().alias("own segment"),
                 pl.col("distance").median().alias("median distance"), pl.col("events").median())
            .sort("placed_by")
        )  # fmt: skip
        largest = assigned.group_by("segment_id").len("users").sort("users", descending=True).head(5)
        print(largest.with_columns(pl.col("segment_id").replace_strict(labels, default="").alias("label")))
    print(f"in their own published segment: {assigned.select(same.mean()).item():.1%}")


if __name__ == "__main__":
    main()
