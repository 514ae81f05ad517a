"""The source spec parser: a good spec, and each kind of bad spec with its clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.ingest.sources import (
    DEFAULT_EVENT_TYPES,
    SourceSpecError,
    check_expression,
    movielens_spec,
    parse_source_spec,
    whole_json_numbers,
)

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
    assert spec.timezone is None  # not named: a time without a zone is UTC


def test_a_spec_names_its_local_time_zone(tmp_path):
    spec = parse_source_spec(
        write(tmp_path, GOOD.replace("[events]", 'timezone = "Europe/Berlin"\n[events]', 1))
    )
    assert spec.timezone == "Europe/Berlin"
    # As the IANA database spells it, whatever the case and the spaces around it (helper 35)
    lower = GOOD.replace("[events]", 'timezone = " europe/berlin "\n[events]', 1)
    assert parse_source_spec(write(tmp_path, lower)).timezone == "Europe/Berlin"


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
        (
            ('name = "online_shop"', 'name = "online_shop"\ntimezone = "Europe/Berln"'),
            "shop.toml line 2: unknown time zone 'Europe/Berln': did you mean Europe/Berlin?",
        ),
        (
            ('name = "online_shop"', 'name = "online_shop"\ntimezone = "Mars/Olympus"'),
            "shop.toml line 2: unknown time zone 'Mars/Olympus': use a name of the IANA time zone database, "
            "e.g. Europe/Berlin, America/New_York or UTC",
        ),
        (
            ('name = "online_shop"', 'name = "online_shop"\ntimezone = "CEST"'),  # not EST, 7 hours away
            "shop.toml line 2: unknown time zone 'CEST': an abbreviation names no place's zone: use a name of the "
            "IANA time zone database, e.g. Europe/Berlin, America/New_York or UTC",
        ),
        (
            ('name = "online_shop"', 'name = "online_shop"\ntimezone = "-03:00"'),
            "shop.toml line 2: unknown time zone '-03:00': a source's zone is a place's name, whose offset "
            "follows its daylight saving time (e.g. America/Sao_Paulo); a fixed offset is the zone Etc/GMT+3 "
            "(its sign is POSIX's, the other way round); an offset that differs by event goes in the events' "
            "timezone column",
        ),
        (
            ('name = "online_shop"', 'name = "online_shop"\ntimezone = 2'),
            'shop.toml line 2: timezone must be a string, e.g. "Europe/Berlin"',
        ),
        (
            ('value = "qty * unit_price"', 'value = "qty * unit_price"\nwhere = "qty <> 0"'),
            "shop.toml line 11: where is a key of [events], not a column: write it above [events.columns]",
        ),
        (
            ('format = "csv"', 'where = ""'),
            "shop.toml line 4: where must be a non-empty DuckDB SQL condition",
        ),
        (('name = "online_shop"', 'name = ""'), "shop.toml: missing `name"),
        (('user_id = "CAST', "user_id = CAST"), "shop.toml: not valid TOML"),
    ],
)
def test_each_bad_spec_names_the_line_and_the_allowed_names(tmp_path, change, message):
    assert_spec_error(tmp_path, GOOD, change, message)


def assert_spec_error(tmp_path, spec: str, change: tuple[str, str], message: str) -> None:
    """`spec` with `change` (old, new) applied is refused with `message` in the error."""
    old, new = change
    assert old in spec
    with pytest.raises(SourceSpecError) as raised:
        parse_source_spec(write(tmp_path, spec.replace(old, new, 1)))
    assert message in str(raised.value)


def test_a_missing_spec_file_is_a_clear_error(tmp_path):
    with pytest.raises(SourceSpecError, match="does not exist"):
        parse_source_spec(tmp_path / "nope.toml")


def test_a_path_that_matches_no_files_is_a_clear_error(tmp_path):
    spec = parse_source_spec(write(tmp_path, GOOD))
    with pytest.raises(SourceSpecError, match=r"events path '.*exports/\*\.csv\.gz' matches no files"):
        spec.events[0].files()


def test_a_folder_of_files_named_in_no_known_way_says_so(tmp_path):
    """An Amplitude export is a folder of *.json.gz: 'matches no files' sent the user looking for the path."""
    (tmp_path / "exports").mkdir()
    for day in (1, 2):
        (tmp_path / "exports" / f"2024-03-0{day}.json.gz").write_bytes(b"")
    (tmp_path / "exports" / ".DS_Store").write_bytes(b"")  # a hidden file is neither counted nor suggested
    spec = parse_source_spec(write(tmp_path, GOOD.replace('path = "exports/*.csv.gz"', 'path = "exports"')))
    with pytest.raises(SourceSpecError) as raised:
        spec.events[0].files()
    assert str(raised.value) == (
        f"events path '{tmp_path / 'exports'}' is a folder of 2 files, none named as a format segflow reads by "
        "its name (.json.gz; known: .csv, .csv.gz, .tsv, .tsv.gz, .parquet, .jsonl, .jsonl.gz, .ndjson, "
        f'.ndjson.gz): name them with a glob and set their format, e.g. path = "{tmp_path / "exports"}/*.json.gz" '
        "and format = one of csv, tsv, parquet, jsonl"
    )


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


@pytest.mark.parametrize(
    ("expression", "why"),
    [
        ("sku || (select content from read_text('/etc/passwd'))", "a subquery (select ...) is not allowed"),
        ("sku in (select 1)", "a subquery (select ...) is not allowed"),
        (
            "read_text('/etc/passwd')",
            "read_text(...) is a table function (it reads files or tables), not allowed",
        ),
        ("glob('/etc/*')", "glob(...) is a table function"),
        (
            "unnest(products).product_id",
            "a mapping gives one value per row; for one event per element of a list, name it in the feed: "
            'unnest = { item = "items" }',
        ),
        ("sku from read_csv('/etc/passwd')", "one expression only: no FROM, WHERE"),
        ("sku; drop table events", "2 statements (SELECT, DROP); an expression cannot contain ';'"),
        ("sku; copy (select 1) to '/tmp/x.csv'", "2 statements (SELECT, COPY)"),
        ("sku; attach '/tmp/x.db'", "2 statements (SELECT, ATTACH)"),
        ("sku; install httpfs", "2 statements (SELECT, LOAD)"),
        ("sku; pragma version", "2 statements (SELECT, PRAGMA)"),
        ("sku; set threads = 1", "2 statements (SELECT, SET)"),
        ("sku;", "an expression cannot contain ';'"),
        ("sku -- the rest of the line", "comments (-- or /* */) are not allowed"),
        ("sku, name", "one expression only (a ',' at the top level makes several)"),
        ("sku as item", "no alias"),
        ("getenv('HOME')", "getenv(...) reads outside the row, not allowed"),
        ("current_setting('allowed_directories')", "current_setting(...) reads outside the row"),
        ("max(sku)", "max(...) is an aggregate, not allowed: an expression maps one row"),
        ("row_number() over ()", "a window function (... OVER ...) is not allowed"),
        ("*", "* and COLUMNS(...) are not allowed"),
        ("sku) union (select 1", "not an SQL expression (Parser Error: syntax error"),
    ],
)
def test_an_expression_that_reaches_beyond_its_row_is_refused_naming_the_line(tmp_path, expression, why):
    toml_value = expression.replace("\\", "\\\\").replace('"', '\\"')
    with pytest.raises(SourceSpecError) as raised:
        parse_source_spec(
            write(
                tmp_path, GOOD.replace('item_id = "sku"\nevent_type', f'item_id = "{toml_value}"\nevent_type')
            )
        )
    message = str(raised.value)
    assert message.startswith(f"shop.toml line 7: the expression for item_id = {expression!r} is refused: ")
    assert why in message


@pytest.mark.parametrize(
    "expression",
    [
        "CASE WHEN qty < 0 THEN 'return' ELSE 'purchase' END",
        "CAST(customer AS VARCHAR)",
        "qty * unit_price",
        "strptime(day, '%d/%m/%Y %H:%M')",
        "try_strptime(day, '%d/%m/%Y')",
        "epoch_ms(stamp)",
        "lower(trim(kind))",
        "coalesce(sku, 'x' || \"Stock Code\")",
        "'tag:' || md5(concat_ws('|', user, sku))",
        "nullif(genres, '(no genres listed)')",
        "'a -- b; c' || sku",
        "list_transform([1, 2], x -> x + qty)[1]",
        "sku::varchar",
    ],
)
def test_a_scalar_expression_over_the_row_is_accepted(expression):
    assert check_expression(expression) is None


def test_a_column_named_like_a_keyword_is_read_bare_and_named_in_the_error_inside_an_expression(tmp_path):
    spec = parse_source_spec(write(tmp_path, GOOD.replace('ts = "order_time"', 'ts = "at"')))
    assert spec.events[0].columns["ts"] == '"at"'
    # Spreadsheet exports name columns with spaces: `Lineitem sku` read as `Lineitem AS sku`, refused.
    spec = parse_source_spec(write(tmp_path, GOOD.replace('ts = "order_time"', 'ts = "Created at"')))
    assert spec.events[0].columns["ts"] == '"Created at"'
    spec = parse_source_spec(write(tmp_path, GOOD.replace('item_id = "sku"', 'item_id = "Lineitem sku"')))
    assert spec.events[0].columns["item_id"] == '"Lineitem sku"'
    assert spec.events[0].as_written("item_id") == "Lineitem sku"
    spec = parse_source_spec(write(tmp_path, GOOD.replace('item_id = "sku"', 'item_id = "default"')))
    assert spec.events[0].columns["item_id"] == '"default"'  # DEFAULT parses, and means nothing in a mapping
    with pytest.raises(SourceSpecError) as raised:
        parse_source_spec(write(tmp_path, GOOD.replace('ts = "order_time"', "ts = \"strptime(at, '%Y')\"")))
    assert str(raised.value).startswith(
        "shop.toml line 9: the expression for ts = \"strptime(at, '%Y')\" is refused: not an SQL expression "
        '(Parser Error: syntax error at or near ","); a column named like an SQL keyword is written in '
        'double quotes: "at". '
    )


@pytest.mark.parametrize(
    ("expression", "hint"),
    [
        ("order || '-' || from", '; a column named like an SQL keyword is written in double quotes: "order" and "from"'),
        ("price as", ""),  # quoting `as` makes an alias: a typo, no keyword column
        ("lower(name) limit", ""),
        ("CASE kind WHEN 'a' THEN 'view' END END", ""),
        # Each candidate was checked with its own hint search inside: this one ran for minutes.
        ("CASE WHEN a = 1 THEN 'x' WHEN b = 2 THEN 'y' WHEN c = 3 THEN 'z' WHEN d = 4 THEN 'q' ELSE 'w' END END", ""),
    ],
)  # fmt: skip
def test_the_keyword_hint_is_given_only_where_quoting_makes_an_accepted_expression(expression, hint):
    why = check_expression(expression)
    assert why.startswith("not an SQL expression (Parser Error: syntax error at or near ")
    assert why.endswith(")" + hint)


def test_movielens_expressions_pass_the_same_check(tmp_path):
    (tmp_path / "u.data").write_text("1\t2\t3\t4\n")
    (tmp_path / "u.item").write_text("x\n")
    spec = movielens_spec(tmp_path)
    for feed in [*spec.events, *spec.items]:
        for expression in feed.columns.values():
            assert check_expression(expression) is None, expression


SEVERAL = """name = "lastfm"
[[events]]
path = "user_artists.dat"
format = "tsv"
[events.columns]
user_id = "userID"
item_id = "artistID"
event_type = "'play'"
ts = "DATE '2011-05-31'"
value = "weight"
[[events]]
path = "user_taggedartists.dat"
format = "tsv"
[events.columns]
user_id = "userID"
item_id = "artistID"
event_type = "'tag'"
ts = "make_date(year, month, day)"
event_id = "concat_ws(':', 'tag', userID, artistID, tagID)"
[items]
path = "artists.dat"
format = "tsv"
quote = ""
[items.columns]
item_id = "id"
title = "name"
"""


def test_several_files_of_different_layouts_are_an_array_of_tables(tmp_path):
    spec = parse_source_spec(write(tmp_path, SEVERAL))
    plays, tags = spec.events
    assert Path(plays.path).name == "user_artists.dat"
    assert plays.columns["value"] == "weight"
    assert plays.columns["ts"] == "DATE '2011-05-31'"  # a file without times: a constant ts
    assert Path(tags.path).name == "user_taggedartists.dat"
    assert tags.columns["ts"] == "make_date(year, month, day)"
    # Each feed's lines are its own: the second [events.columns] is the second element's.
    assert plays.origins["value"] == "shop.toml line 10"
    assert tags.origins["event_id"] == "shop.toml line 19"
    (items,) = spec.items
    assert items.quote == ""
    assert plays.quote is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('event_id = "concat_ws', 'event_idd = "concat_ws'),
            "shop.toml line 19: unknown column 'event_idd' in [events.columns]",
        ),
        (
            ('ts = "make_date(year, month, day)"\n', ""),
            "shop.toml line 14: [events.columns] is missing required column(s) ts",
        ),
        (
            (
                'format = "tsv"\n[events.columns]\nuser_id = "userID"\nitem_id = "artistID"\nevent_type = "\'tag\'"',
                'fromat = "tsv"\n[events.columns]\nuser_id = "userID"\nitem_id = "artistID"\nevent_type = "\'tag\'"',
            ),
            "shop.toml line 13: unknown key 'fromat' in [events]",
        ),  # fmt: skip
        (('quote = ""', "quote = \"''\""), "shop.toml line 23: quote must be one character"),
        (
            ('ts = "DATE', 'ts = "(select 1) || DATE'),
            "shop.toml line 9: the expression for ts = \"(select 1) || DATE '2011-05-31'\" is refused",
        ),
    ],
)
def test_a_mistake_in_an_array_element_names_its_own_line(tmp_path, change, message):
    assert_spec_error(tmp_path, SEVERAL, change, message)


def test_events_that_are_neither_a_table_nor_tables_is_a_clear_error(tmp_path):
    with pytest.raises(SourceSpecError, match=r"events must be a table \(\[events\]\) or an array of tables"):
        parse_source_spec(write(tmp_path, 'name = "x"\nevents = ["a.csv"]\n'))


def test_the_lastfm_example_spec_parses():
    example = Path(__file__).resolve().parents[3] / "examples" / "lastfm" / "source.toml"
    spec = parse_source_spec(example)
    assert [Path(feed.path).name for feed in spec.events] == ["user_artists.dat", "user_taggedartists.dat"]
    assert [Path(feed.path).name for feed in spec.items] == ["artists.dat"]
    assert spec.events[0].columns["event_type"] == "'play'"
    assert spec.events[1].columns["event_type"] == "'tag'"


@pytest.mark.parametrize(
    ("expression", "read_as"),
    [
        ("customer->>'unique_id'", "segflow_json_text((customer -> 'unique_id'))"),
        ("json_extract_string(item, '$.sku')", "segflow_json_text((item -> '$.sku'))"),
        (
            "coalesce(item->>'sku', item->>'id')",
            "COALESCE(segflow_json_text((item -> 'sku')), segflow_json_text((item -> 'id')))",
        ),
        (  # a condition compares as written (helper 43 F6: '1.0' matched in one mapping, not in the id's)
            "CASE WHEN a->>'tier' = '1.0' THEN 'vip-' ELSE '' END || (a->>'id')",
            "(CASE  WHEN (((a ->> 'tier') = '1.0')) THEN ('vip-') ELSE '' END || segflow_json_text((a -> 'id')))",
        ),
        ("md5(a->>'id')", "md5(a->>'id')"),  # the id is the hash of the text as written
        ("item->>['sku', 'id']", "item->>['sku', 'id']"),  # a list of paths gives a list: as written
        ("'SHOE-' || size", "'SHOE-' || size"),
        ("item->'sku'", "item->'sku'"),  # JSON, read by map_file as segflow_json_text
    ],
)
def test_an_id_read_from_json_as_text_reads_whole_numbers_as_integers(expression, read_as):
    assert whole_json_numbers(expression) == read_as
