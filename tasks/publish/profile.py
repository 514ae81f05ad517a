"""What a segment is, for people and for recommenders: its top items, its profile and a readable label."""

from __future__ import annotations

import duckdb
import polars as pl

from tasks.embed.base import Embedding, embedding_frame
from tasks.features.user_features import UserFeatures
from tasks.warehouse import create_table_from_frame, load_sql

DAYPARTS = {
    "share_night": "nights",
    "share_early": "early mornings",
    "share_morning": "mornings",
    "share_afternoon": "afternoons",
    "share_evening": "evenings",
    "share_late": "late evenings",
}


# "weekends" needs a weekend share above a uniform week's (2 days of 7) as well as above everyone's: where
# most events carry one weekday's date (Last.fm's play counts), a segment with 16% on weekends was so named.
WEEK_END = 2 / 7
# A segment's top items that are not among everyone's top LABEL_DEPTH name it when items have no categories.
LABEL_DEPTH = 20


def write_assignments(con: duckdb.DuckDBPyConnection, assignments: pl.DataFrame) -> str:
    """`seg_assignments(user_id, segment_id, distance, placed_by)`: the segment of every user, as the
    segmenter assigns."""
    return create_table_from_frame(con, "seg_assignments", assignments, temp=True)


def store_features(con: duckdb.DuckDBPyConnection, features: UserFeatures, embedding: Embedding) -> list[str]:
    """Stage the run's feature tables (`seg_fct_*`) and its embedding (`seg_user_embedding`): the profiles and
    lists are built from them, and the swap publishes them with the segments (as `fct_*` and `user_embedding`),
    so a run that is not published leaves the features of the published one in place."""
    stored = [create_table_from_frame(con, f"seg_{table}", frame) for table, frame in features.tables.items()]
    return [*stored, create_table_from_frame(con, "seg_user_embedding", embedding_frame(embedding))]


def build_recommendations(con: duckdb.DuckDBPyConnection, run_id: str, n_items: int) -> str:
    con.execute(
        f"create or replace table seg_segment_recommendations as {load_sql('segments/seg_segment_recommendations')}",
        {"n_items": n_items, "run_id": run_id},
    )
    return "seg_segment_recommendations"


def segment_label(
    segment: dict, overall: dict, categories: list[tuple[str, float, float]], items: list[str] = ()
) -> str:
    """A short name from what sets the segment apart: taste (its distinctive categories; without categories,
    `items`: its top items that are not among everyone's), activity, funnel, ratings, time of day."""
    parts = []
    distinct = [name for name, share, lift in categories if lift >= 1.2 and share >= 0.05][:2]
    if not categories:
        distinct = list(items[:2])
    if distinct:
        # "coffee & tea, kitchen": category names may hold "&" themselves.
        parts.append(", ".join(distinct) if any("&" in name for name in distinct) else " & ".join(distinct))
    elif categories:
        # "mostly": the category the segment has the largest share of (`categories` come by lift: a 4% share
        # of Documentary five times everyone's is what sets it apart, not what it mostly watches; helper 32).
        parts.append(f"mixed taste, mostly {max(categories, key=lambda c: c[1])[0]}")
    if overall["median_events"]:
        ratio = segment["median_events"] / overall["median_events"]
        if ratio >= 1.5:
            parts.append("heavy users")
        elif ratio <= 0.67:
            parts.append("light users")
    if overall["purchase_share"]:
        ratio = (segment["purchase_share"] or 0) / overall["purchase_share"]
        if ratio >= 1.4:
            parts.append("frequent buyers")
        elif ratio <= 0.6:
            parts.append("browsers")
    if overall["mean_rating"] is not None and segment["mean_rating"] is not None:
        delta = segment["mean_rating"] - overall["mean_rating"]
        if delta >= 0.3:
            parts.append("generous raters")
        elif delta <= -0.3:
            parts.append("harsh raters")
    lifts = {name: (segment[name] or 0) / overall[name] for name in DAYPARTS if overall[name]}
    if lifts:
        peak = max(lifts, key=lifts.get)
        if lifts[peak] >= 1.3:
            parts.append(DAYPARTS[peak])
    weekend = segment["share_weekend"] or 0
    if (
        (overall["share_weekend"] or 0) > 0
        and weekend / overall["share_weekend"] >= 1.4
        and weekend > WEEK_END
    ):
        parts.append("weekends")
    return " · ".join(parts) if parts else "typical users"


def clock_notes(profiles: list[dict], unzoned_share: float) -> list[str]:
    """A line for the run's summary when labels name a time of day or weekends by the UTC clock because
    nobody named the users' (`unzoned_share`: the share of the run's events measured so: those without a zone
    of their own, when the run has none from --timezone or the source spec; else 0): MovieLens' US evenings
    read as "nights"."""
    times = {*DAYPARTS.values(), "weekends"}
    timed = [p for p in profiles if times & set((p.get("label") or "").split(" · "))]
    if not unzoned_share or not timed:
        return []
    which = (
        "" if unzoned_share == 1 else f" for the {unzoned_share:.0%} of events without a zone of their own"
    )
    return [
        f"{len(timed)} of {len(profiles)} segment labels name a time of day or weekends, measured by the UTC "
        f"clock{which}: name the users' time zone to measure them by theirs (segflow run --timezone "
        "America/New_York; a new workspace's source spec may name it too: timezone = ...)"
    ]


def build_profiles(con: duckdb.DuckDBPyConnection, run_id: str) -> str:
    """`seg_segment_profiles`: size, share, label, top categories and items, and the numbers behind the label."""
    stats = con.sql(load_sql("segments/seg_segment_stats")).pl()
    overall = stats.filter(pl.col("segment_id").is_null()).to_dicts()[0]
    categories = con.sql(load_sql("segments/seg_segment_categories")).pl()
    titles = con.sql(
        f"""
        select rec.segment_id, list(coalesce(items.title, rec.item_id) order by rec.rank) as titles
        from seg_segment_recommendations as rec
        left join items on items.item_id = rec.item_id
        where rec.rank <= {LABEL_DEPTH}
        group by rec.segment_id
        """
    ).pl()
    titles_of = {row["segment_id"]: row["titles"] for row in titles.to_dicts()}
    everyones = set(titles_of.get(-1, []))  # -1: the global list
    rows = []
    for segment in stats.filter(pl.col("segment_id").is_not_null()).to_dicts():
        segment_id = segment["segment_id"]
        cats = [
            (row["category"], row["share"], row["lift"])
            for row in categories.filter(pl.col("segment_id") == segment_id).to_dicts()
        ]
        by_share = sorted(cats, key=lambda c: -c[1])
        dayparts = {DAYPARTS[name]: segment[name] or 0 for name in DAYPARTS}
        rows.append(
            {
                "segment_id": segment_id,
                "size": segment["size"],
                "share": round(segment["share"], 4),
                "label": "no segment (noise)"
                if segment_id < 0
                else segment_label(
                    segment, overall, cats, [t for t in titles_of.get(segment_id, []) if t not in everyones]
                ),
                "top_categories": [c[0] for c in sorted(cats, key=lambda c: -(c[1] * c[2]))[:3]]
                or [c[0] for c in by_share[:3]],
                "top_items": titles_of.get(segment_id, [])[:5],
                "median_events": segment["median_events"],
                "purchase_share": segment["purchase_share"],
                "view_to_cart": segment["view_to_cart"],
                "cart_to_purchase": segment["cart_to_purchase"],
                "mean_rating": segment["mean_rating"],
                "peak_daypart": max(dayparts, key=dayparts.get),
                "weekend_share": segment["share_weekend"],
                "run_id": run_id,
            }
        )
    frame = pl.DataFrame(
        rows, schema_overrides={"top_categories": pl.List(pl.String), "top_items": pl.List(pl.String)}
    )
    return create_table_from_frame(con, "seg_segment_profiles", frame, order_by="segment_id")
