"""The source spec parser: a good spec, and each kind of bad spec with its clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.ingest.sources import DEFAULT_EVENT_TYPES, SourceSpecError, movielens_spec, parse_source_spec

GOOD = """name = "online_shop"                  # recorded as events.source
[events]
path = "exports/*.csv.gz"             # file, folder or glob, relative to this file
format = "csv"
[events.columns]
user_id = "CAST(customer AS VARCHAR)"
item_id = "sku"
event_type = "CASE WHEN qty < 0 THEN 'return' ELSE 'purchase' END"
ts = "order_time"
value = "qty * unit_price"
[items]
path = "catalogue.parquet"
[items.columns]
item_id = "sku"
title = "name"
category = "department"
price = "list_price"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "shop.toml"
    path.write_text(text)
    return path


def test_the_documented_spec_parses(tmp_path):
    spec = parse_source_spec(write(tmp_path, GOOD))
    assert spec.name == "online_shop"
    (events,) = spec.events
    assert events.path == str(tmp_path.resolve() / "exports/*.csv.gz")
    assert events.format == "csv"
    assert events.columns["value"] == "qty * unit_price"
    assert events.origins["value"] == "shop.toml line 10"
    (items,) = spec.items
    assert items.columns == {
        "item_id": "sku",
        "title": "name",
        "category": "department",
        "price": "list_price",
    }
    assert spec.event_types == DEFAULT_EVENT_TYPES


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("value = ", "valeu = "),
            "shop.toml line 10: unknown column 'valeu' in [events.columns]; allowed: user_id, item_id, event_type, ts, value, quantity, session_id, event_id, item_title, item_category",
        ),
        (
            ('ts = "order_time"\n', ""),
            "shop.toml line 5: [events.columns] is missing required column(s) ts; required: user_id, item_id, event_type, ts",
        ),
        (
            ('item_id = "sku"\ntitle', "title"),
            "shop.toml line 13: [items.columns] is missing required column(s) item_id",
        ),
        (
            ("title = ", "name = "),
            "shop.toml line 15: unknown column 'name' in [items.columns]; allowed: item_id, title, category, price, text",
        ),
        (
            ('format = "csv"', 'format = "xlsx"'),
            "shop.toml line 4: unknown format 'xlsx'; allowed: csv, tsv, parquet, jsonl",
        ),
        (
            ('format = "csv"', 'sep = ";"'),
            "shop.toml line 4: unknown key 'sep' in [events]; allowed: path, format, columns",
        ),
        (
            ('name = "online_shop"', 'title = "x"'),
            "shop.toml line 1: unknown key 'title' in the top level; allowed: name",
        ),
        (('path = "exports/*.csv.gz"', 'paths = "x"'), "shop.toml line 3: unknown key 'paths' in [events]"),
        (
            ('item_id = "sku"\nevent_type', 'item_id = ""\nevent_type'),
            "shop.toml line 7: item_id must be a non-empty DuckDB SQL expression",
        ),
        (("[events]", "[evnts]"), "shop.toml line 2: unknown key 'evnts' in the top level"),
        (('name = "online_shop"', 'name = ""'), "shop.toml: missing `name"),
        (('user_id = "CAST', "user_id = CAST"), "shop.toml: not valid TOML"),
    ],
)
def test_each_bad_spec_names_the_line_and_the_allowed_names(tmp_path, change, message):
    old, new = change
    assert old in GOOD
    with pytest.raises(SourceSpecError) as raised:
        parse_source_spec(write(tmp_path, GOOD.replace(old, new, 1)))
    assert message in str(raised.value)


def test_a_missing_spec_file_is_a_clear_error(tmp_path):
    with pytest.raises(SourceSpecError, match="does not exist"):
        parse_source_spec(tmp_path / "nope.toml")


def test_a_path_that_matches_no_files_is_a_clear_error(tmp_path):
    spec = parse_source_spec(write(tmp_path, GOOD))
    with pytest.raises(SourceSpecError, match=r"events path '.*exports/\*\.csv\.gz' matches no files"):
        spec.events[0].files()


def test_event_types_can_be_configured(tmp_path):
    spec = parse_source_spec(write(tmp_path, 'event_types = ["View", "order"]\n' + GOOD))
    assert spec.event_types == ("view", "order")


def test_movielens_latest_layout_maps_ratings_tags_and_movies(tmp_path):
    for name in ("ratings.csv", "tags.csv", "movies.csv"):
        (tmp_path / name).write_text("x\n")
    spec = movielens_spec(tmp_path)
    assert [Path(f.path).name for f in spec.events] == ["ratings.csv", "tags.csv"]
    assert spec.events[0].columns["event_type"] == "'rate'"
    assert spec.events[0].columns["value"] == "rating"
    assert spec.events[1].columns["event_type"] == "'tag'"
    assert [Path(f.path).name for f in spec.items] == ["movies.csv"]
