"""Where events come from: the source spec (TOML), MovieLens folders, and the built-in demo.

Every source becomes one `SourceSpec`: a name plus feeds, each feed a set of files of one layout and a
mapping from canonical columns to DuckDB SQL expressions over the file's own columns. Ingest knows only
this one shape.
"""

from __future__ import annotations

import csv
import glob
import itertools
import json
import re
import threading
import tomllib
from collections import Counter
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Literal, NamedTuple

import duckdb
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from tasks.clock import check_timezone
from validation.gate import ValidationSettings

BARE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # an identifier that needs no quotes (ASCII only)
SPACED_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*( [A-Za-z0-9_]+)+")  # `Lineitem sku`: words, one space apart
EVENT_COLUMNS = (
    "user_id",
    "item_id",
    "event_type",
    "ts",
    "value",
    "quantity",
    "session_id",
    "event_id",
    "item_title",
    "item_category",
    "timezone",
)
REQUIRED_EVENT_COLUMNS = ("user_id", "item_id", "event_type", "ts")
ITEM_COLUMNS = ("item_id", "title", "category", "price", "text")
REQUIRED_ITEM_COLUMNS = ("item_id",)
DEFAULT_EVENT_TYPES = (
    "view",
    "click",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "purchase",
    "return",
    "rate",
    "tag",
    "play",
    "like",
    "share",
)
FORMATS = ("csv", "tsv", "parquet", "jsonl")
EXTENSION_FORMATS = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".tsv": "tsv",
    ".tsv.gz": "tsv",
    ".parquet": "parquet",
    ".jsonl": "jsonl",
    ".jsonl.gz": "jsonl",
    ".ndjson": "jsonl",
    ".ndjson.gz": "jsonl",
}
FEED_KEYS = (
    "path", "format", "columns", "where", "unnest", "delimiter", "quote", "header", "file_columns", "encoding",
)  # fmt: skip
# The key of a feed's row filter among its expressions (Feed.expressions): no canonical column has the name.
WHERE = "where"
# The key of a feed's list to unnest (Feed.unnest): `unnest = { item = "items" }`, one row per element.
UNNEST = "unnest"
ELEMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SPEC_KEYS = ("name", "events", "items", "event_types", "validation", "ground_truth", "timezone")


# Scalar functions that reach outside the row: the environment, settings, sequences, the random state.
# Table functions (read_text, read_csv, glob, query, ...) are refused by kind, whatever their name.
DENIED_FUNCTIONS = frozenset(
    {"getenv", "current_setting", "nextval", "currval", "setseed", "json_execute_serialized_sql"}
)


class SourceSpecError(ValueError):
    """A source spec that cannot be used; the message names the file, the line and the allowed names."""


_parser_lock = threading.Lock()


@cache
def _parser() -> duckdb.DuckDBPyConnection:
    """One in-memory connection that only parses (json_serialize_sql never runs the query it is given)."""
    return duckdb.connect(":memory:")


@cache
def _function_names(kinds: tuple[str, ...]) -> frozenset[str]:
    """Names of DuckDB's functions of these kinds that have no scalar form."""
    with _parser_lock:
        rows = (
            _parser()
            .execute(
                """
            select function_name from duckdb_functions()
            group by function_name
            having bool_or(list_contains($kinds, function_type))
                and not bool_or(function_type in ('scalar', 'macro'))
            """,
                {"kinds": list(kinds)},
            )
            .fetchall()
        )
    return frozenset(name.lower() for (name,) in rows)


@lru_cache(maxsize=4096)
def _serialized(sql: str) -> str:
    with _parser_lock:
        return _parser().execute("select json_serialize_sql($sql)", {"sql": sql}).fetchall()[0][0]


def _parse_select(sql: str) -> dict[str, Any]:
    """DuckDB's parse tree of a SELECT, as JSON; the same expression of every file is parsed once."""
    return json.loads(_serialized(sql))


def _unsafe_node(node: Any) -> str | None:
    """Why a parsed expression tree reaches beyond the row it is evaluated on; None when it does not."""
    if isinstance(node, list):
        return next((why for child in node if (why := _unsafe_node(child))), None)
    if not isinstance(node, dict):
        return None
    if node.get("class") == "SUBQUERY" or "subquery" in node or "from_table" in node:
        return "a subquery (select ...) is not allowed"
    if node.get("type") == "TABLE_FUNCTION":
        return "a table function is not allowed"
    if node.get("class") == "STAR":
        return "* and COLUMNS(...) are not allowed; name the columns"
    if node.get("class") == "WINDOW":
        return "a window function (... OVER ...) is not allowed: an expression maps one row"
    if node.get("class") == "FUNCTION":
        name = str(node.get("function_name", "")).lower()
        if name == "unnest":
            return (
                "unnest(...) makes several rows of one, and a mapping gives one value per row; for one "
                'event per element of a list, name it in the feed: unnest = { item = "items" }, then map '
                "item.item_id (a list of structs) or item->>'item_id' (a JSON array)"
            )
        if name in _function_names(("table", "table_macro", "pragma")):
            return f"{name}(...) is a table function (it reads files or tables), not allowed"
        if name in _function_names(("aggregate",)):
            return f"{name}(...) is an aggregate, not allowed: an expression maps one row"
        if name in DENIED_FUNCTIONS:
            return f"{name}(...) reads outside the row, not allowed"
    return next((why for value in node.values() if (why := _unsafe_node(value))), None)


def _keywords_meant_as_columns(sql: str) -> list[str]:
    """The keywords of an unparsable `select EXPRESSION` that, double-quoted (one, or two: `order || from`),
    make an expression the check accepts: a column named like a keyword. [] when none does (a typo)."""
    try:
        tokens = duckdb.tokenize(sql)
    except duckdb.Error:
        return []
    ends = [offset for offset, _ in tokens[1:]] + [len(sql)]
    words = [
        (offset, sql[offset:end].strip())
        for (offset, kind), end in zip(tokens, ends, strict=True)
        if offset > 0 and kind == duckdb.token_type.keyword
    ]
    words = [(offset, word) for offset, word in words if BARE_NAME.fullmatch(word)]
    prefix = len("select ")
    for size in (1, 2):
        for chosen in itertools.combinations(words, size):
            text = sql
            for offset, word in sorted(chosen, reverse=True):  # from the end: earlier offsets stay right
                text = f'{text[:offset]}"{word}"{text[offset + len(word) :]}'
            if check_expression(text[prefix:], hint=False) is None:  # no hint inside: one search, not nested
                return [word for _, word in chosen]
    return []


def check_expression(expression: str, hint: bool = True) -> str | None:
    """Why a column expression is refused, or None: it must be one scalar expression over the row's own
    columns. It is parsed by DuckDB (never run): no statements, subqueries, table functions or comments.
    `hint`: say which keywords to double-quote when the expression does not parse."""
    if not expression.strip():
        return "empty expression"
    sql = f"select {expression}"
    try:
        statements = duckdb.extract_statements(sql)
        tokens = duckdb.tokenize(sql)
    except duckdb.Error as error:
        why = f"not an SQL expression ({str(error).splitlines()[0]})"
        keywords = _keywords_meant_as_columns(sql) if hint else []
        if keywords:
            quoted = " and ".join(f'"{word}"' for word in keywords)
            why += f"; a column named like an SQL keyword is written in double quotes: {quoted}"
        return why
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        kinds = ", ".join(statement.type.name for statement in statements)
        return f"{len(statements)} statements ({kinds}); an expression cannot contain ';'"
    if any(kind == duckdb.token_type.operator and sql[offset] == ";" for offset, kind in tokens):
        return "an expression cannot contain ';'"
    # The expression is placed inside the ingest query: a comment would hide the text that follows it.
    if any(kind == duckdb.token_type.comment for _, kind in tokens):
        return "comments (-- or /* */) are not allowed"
    parsed = _parse_select(sql)
    if parsed.get("error") or len(parsed.get("statements", [])) != 1:
        return "not a single SQL expression"
    node = parsed["statements"][0]["node"]
    clauses = ("where_clause", "having", "qualify", "sample")
    if (
        node.get("type") != "SELECT_NODE"
        or node.get("from_table", {}).get("type") != "EMPTY"
        or any(node.get(clause) for clause in clauses)
        or node.get("group_expressions")
        or node.get("modifiers")
        or node.get("cte_map", {}).get("map")
    ):
        return "one expression only: no FROM, WHERE, GROUP BY, ORDER BY, LIMIT, UNION or WITH"
    if len(node["select_list"]) != 1:
        return "one expression only (a ',' at the top level makes several)"
    if node["select_list"][0].get("alias"):
        return "no alias (AS name): the canonical column names it"
    return _unsafe_node(node["select_list"][0])


class ColumnRef(NamedTuple):
    """A column reference in an expression: its name parts (`payload.user`: two), whether it is in a lambda
    (`x -> x + 1`, where a name may be the lambda's parameter rather than a column), and where it is written
    in `select EXPRESSION` (bytes of its UTF-8, as DuckDB counts)."""

    parts: list[str]
    in_lambda: bool
    at: int | None
    length: int | None


def _column_refs(expression: str) -> list[ColumnRef]:
    """Each column reference of an expression."""
    found: list[ColumnRef] = []

    def walk(node: Any, in_lambda: bool) -> None:
        if isinstance(node, list):
            for child in node:
                walk(child, in_lambda)
        elif isinstance(node, dict):
            if node.get("class") == "COLUMN_REF" and node.get("column_names"):
                parts = [str(part) for part in node["column_names"]]
                found.append(
                    ColumnRef(parts, in_lambda, node.get("query_location"), node.get("query_location_length"))
                )
            for value in node.values():
                walk(value, in_lambda or node.get("class") == "LAMBDA")

    parsed = _parse_select(f"select {expression}")
    if not parsed.get("error"):
        walk(parsed["statements"], False)
    return found


def rename_columns(expression: str, renames: dict[str, str]) -> str:
    """The expression with each plain reference (one name, outside a lambda) to a column in `renames`
    (lowercased name -> the SQL that replaces it) replaced, as DuckDB's parser placed it."""
    prefix = "select "
    sql = (prefix + expression).encode()
    spans = [
        (ref.at, ref.length, renames[ref.parts[0].lower()])
        for ref in _column_refs(expression)
        if len(ref.parts) == 1 and not ref.in_lambda and ref.parts[0].lower() in renames and ref.length
    ]
    for at, length, new in sorted(spans, reverse=True):  # from the end: earlier offsets stay right
        sql = sql[:at] + new.encode() + sql[at + length :]
    return sql.decode()[len(prefix) :]


# Functions that give a JSON value's text: `a ->> 'k'` and json_extract_string(a, 'k').
JSON_TEXT_FUNCTIONS = {"->>", "json_extract_string"}


# Functions whose value is made of their arguments' text: a JSON value read inside them is part of the id.
VALUE_FUNCTIONS = {"||", "concat", "concat_ws", "coalesce", "ifnull", "lower", "upper", "lcase", "ucase", "trim",
                   "ltrim", "rtrim"}  # fmt: skip


def _passes_value(node: dict[str, Any], key: str) -> bool:
    """Whether the part `key` of a parsed node is on the way to the node's value: the arguments of a function
    of VALUE_FUNCTIONS, a cast's input, a CASE's results (not its conditions, which compare as written), and
    the parse tree's own wrappers; not a comparison's sides nor any other function's arguments."""
    kind = node.get("class")
    if kind == "FUNCTION":
        return key == "arguments" and str(node.get("function_name", "")).lower() in VALUE_FUNCTIONS
    if kind == "CASE":
        return key in ("case_checks", "else_expr")
    if kind == "CAST":
        return key == "child"
    if kind == "OPERATOR":  # COALESCE parses as an operator over its children
        return key == "children" and node.get("type") == "OPERATOR_COALESCE"
    if "when_expr" in node:  # one check of a CASE
        return key == "then_expr"
    return kind is None or kind == "SELECT_NODE" or "expression" in node  # statements, lists, an argument


@lru_cache(maxsize=1024)
def whole_json_numbers(expression: str) -> str:
    """The expression with each JSON value it reads as text at one path (`customer->>'id'`, `item->>'sku'`,
    json_extract_string(item, '$.sku')) read as `segflow_json_text(a -> 'k')` (tasks/ingest/stage.py): a whole
    number written with a fraction or an exponent (1.0, 1e2: pandas' float64) gives the integer's text, as a
    top-level key of JSON Lines does, and a string stays as written. As written when it reads none; else
    DuckDB's own text of the changed parse tree."""
    changed = False

    def walk(node: Any, on_path: bool) -> Any:
        nonlocal changed
        if isinstance(node, list):
            return [walk(child, on_path) for child in node]
        if not isinstance(node, dict):
            return node
        node = {key: walk(value, on_path and _passes_value(node, key)) for key, value in node.items()}
        arguments = node.get("arguments") or []
        if (
            on_path
            and node.get("class") == "FUNCTION"
            and str(node.get("function_name", "")).lower() in JSON_TEXT_FUNCTIONS
            and len(arguments) == 2
            and arguments[1].get("expression", {}).get("class") == "CONSTANT"  # one path, not a list of them
        ):
            changed = True
            value = dict(node, function_name="->", is_operator=True, qualified_name={"path": ["->"]})
            return dict(
                node, function_name="segflow_json_text", is_operator=False,
                qualified_name={"path": ["segflow_json_text"]}, arguments=[{"name": "", "expression": value}],
            )  # fmt: skip
        return node

    tree = walk(_parse_select(f"select {expression}"), True)
    if not changed or tree.get("error"):
        return expression
    return _render(tree, _select_item(tree))


def _select_item(tree: dict[str, Any]) -> dict[str, Any]:
    """The one expression of a parsed `select <expression>`."""
    return tree["statements"][0]["node"]["select_list"][0]


def _render(tree: dict[str, Any], node: dict[str, Any]) -> str:
    """DuckDB's SQL text of one expression node of a parsed `select` (`tree`)."""
    statement = tree["statements"][0]
    one = dict(tree, statements=[dict(statement, node=dict(statement["node"], select_list=[node]))])
    with _parser_lock:
        sql = (
            _parser()
            .execute("select json_deserialize_sql($tree)", {"tree": json.dumps(one)})
            .fetchall()[0][0]
        )
    return sql.removeprefix("SELECT ")


TRIED = "__segflow_tried__"  # where a conversion stood, in `tried_conversions`' copies of an expression


@lru_cache(maxsize=1024)
def tried_conversions(expression: str) -> tuple[tuple[str, str, str], ...]:
    """For each TRY_CAST and try_strptime of the expression (not inside a lambda, whose input is no column):
    its input, the conversion, and the expression with that conversion given a value (`TRY_CAST('0' AS T)`,
    `TIMESTAMP '2000-01-01'`), as SQL. Where the conversion gives null from an input that has a value and the
    expression would have had a value had it converted, the input is what did not convert; where the
    expression gives no value either way (`CASE WHEN kind = 'view' THEN NULL ELSE try_cast(price ...) END` on
    a view), the failure did not make its null."""
    tree = _parse_select(f"select {expression}")
    if tree.get("error"):
        return ()
    found: list[tuple[str, str, str]] = []
    placeholder = _select_item(_parse_select(f"select {TRIED}"))
    zero = _select_item(_parse_select("select '0'"))

    def replaced(node: Any, target: dict) -> Any:
        if node is target:
            return placeholder
        if isinstance(node, list):
            return [replaced(child, target) for child in node]
        if isinstance(node, dict):
            return {key: replaced(value, target) for key, value in node.items()}
        return node

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for child in node:
                walk(child)
            return
        if not isinstance(node, dict) or node.get("class") == "LAMBDA":
            return
        given = substitute = None
        if node.get("class") == "CAST" and node.get("try_cast"):
            given, substitute = node["child"], _render(tree, dict(node, child=zero))
        elif node.get("class") == "FUNCTION" and str(node.get("function_name", "")).lower() == "try_strptime":
            arguments = node.get("arguments") or []
            if arguments:
                given, substitute = arguments[0]["expression"], "TIMESTAMP '2000-01-01'"
        if given is not None:
            conversion = _render(tree, node)
            whole = _render(tree, replaced(_select_item(tree), node))
            found.append(
                (
                    _render(tree, given),
                    conversion,
                    whole.replace(TRIED, f"coalesce({conversion}, {substitute})"),
                )
            )
        for value in node.values():
            walk(value)

    walk(tree["statements"][0]["node"]["select_list"])
    return tuple(found)


TEXT_TYPES = {"varchar", "text", "string", "char", "bpchar"}
# Functions whose arguments are read as text: a column only ever inside them keeps every character.
TEXT_FUNCTIONS = {
    "||", "concat", "concat_ws", "lower", "upper", "lcase", "ucase", "trim", "ltrim", "rtrim", "replace",
    "substr", "substring", "left", "right", "split_part", "string_split", "regexp_replace", "regexp_extract",
    "regexp_matches", "regexp_full_match", "lpad", "rpad", "md5", "sha256", "hash", "strptime",
    "try_strptime", "starts_with", "ends_with", "prefix", "suffix", "contains", "like", "ilike", "length",
    "strlen", "reverse", "repeat", "json_extract", "json_extract_string", "->", "->>", "format", "printf",
    "nfc_normalize", "strip_accents",
}  # fmt: skip
PASS_THROUGH = {"coalesce", "ifnull"}  # their value is one of their arguments: read as the result is
# Comparisons that read their sides as text where the other side is text written in the expression
# (`code = 'X'`, `event in ('view', 'cart')`); an order (`ts >= '2024-03-01'`) compares as the column's type.
EQUALITIES = {"COMPARE_EQUAL", "COMPARE_NOTEQUAL", "COMPARE_DISTINCT_FROM", "COMPARE_NOT_DISTINCT_FROM"}
NULL_TESTS = {"OPERATOR_IS_NULL", "OPERATOR_IS_NOT_NULL"}  # whether there is a value: read as text


def _is_text_constant(node: Any) -> bool:
    return (
        isinstance(node, dict)
        and node.get("class") == "CONSTANT"
        and node.get("literal", {}).get("kind") == "STRING"
    )


def text_role_columns(expression: str, text_result: bool) -> set[str]:
    """The columns (lowercased) an expression reads only as text: inside `||` and string functions, cast
    to text or try_cast by the expression itself, compared for equality with text (`code = 'X'`, `event in
    ('view', 'cart')`), tested for a value (`is null`), or passed through (coalesce, a CASE's results) to a
    result that is text (`text_result`: the mapping is an id, a type, a title). `'ean:' || ean` keeps 0812;
    `price = 0`, `greatest(a, b)`, `qty * price`, `day >= '2024-03-01'` read their columns as numbers or
    times."""
    roles: dict[str, set[bool]] = {}

    def walk(node: Any, as_text: bool) -> None:
        if isinstance(node, list):
            for child in node:
                walk(child, as_text)
            return
        if not isinstance(node, dict):
            return
        kind = node.get("class")
        if kind == "COLUMN_REF" and node.get("column_names"):
            roles.setdefault(str(node["column_names"][-1]).lower(), set()).add(as_text)
        elif kind == "FUNCTION":
            name = str(node.get("function_name", "")).lower()
            walk(node.get("arguments"), name in TEXT_FUNCTIONS or (name in PASS_THROUGH and as_text))
        elif kind == "OPERATOR" and node.get("type") == "OPERATOR_COALESCE":
            walk(node.get("children"), as_text)
        elif kind == "OPERATOR" and node.get("type") in NULL_TESTS:
            walk(node.get("children"), True)
        elif kind == "OPERATOR" and node.get("type") in ("COMPARE_IN", "COMPARE_NOT_IN"):
            tested, *values = node.get("children") or [None]
            walk(tested, bool(values) and all(_is_text_constant(v) for v in values))
            walk(values, False)
        elif kind == "COMPARISON" and node.get("type") in EQUALITIES:
            left, right = node.get("left"), node.get("right")
            walk(left, _is_text_constant(right))
            walk(right, _is_text_constant(left))
        elif kind == "CASE":
            for check in node.get("case_checks") or []:
                walk(check.get("when_expr"), False)
                walk(check.get("then_expr"), as_text)
            walk(node.get("else_expr"), as_text)
        elif kind == "CAST":
            type_name = str((node.get("type_expr") or {}).get("type_name", "")).lower()
            walk(node.get("child"), bool(node.get("try_cast")) or type_name in TEXT_TYPES)
        else:  # another expression reads its parts as what it needs; a plain container passes the role on
            for key, value in node.items():
                if key not in ("class", "type"):
                    walk(value, as_text if kind is None else False)

    parsed = _parse_select(f"select {expression}")
    if not parsed.get("error"):
        walk(parsed["statements"][0]["node"]["select_list"], text_result)
    return {name for name, seen in roles.items() if seen == {True}}


def expression_columns(expression: str) -> set[str]:
    """The column names an expression refers to, lowercased (DuckDB's names are case-insensitive)."""
    return {ref.parts[-1].lower() for ref in _column_refs(expression)}


def reads_column(expression: str, name: str) -> bool:
    """Whether an expression reads the column `name`, alone or a field of it (`item`, `item.price`,
    `item->>'sku'`)."""
    return any(ref.parts[0].lower() == name.lower() for ref in _column_refs(expression))


# Functions that turn an epoch number into a TIMESTAMP without a zone that means UTC (make_timestamp with one
# argument: microseconds; with six it is a wall-clock time).
EPOCH_FUNCTIONS = frozenset({"epoch_ms", "make_timestamp_ms", "make_timestamp_ns"})


def reads_epoch(expression: str) -> bool:
    """Whether `expression` makes a time from an epoch number (`epoch_ms(t_ms)`, `make_timestamp(t_us)`): an
    absolute time, not the source's wall clock, however it is typed."""

    def walk(node: Any) -> bool:
        if isinstance(node, list):
            return any(walk(child) for child in node)
        if not isinstance(node, dict):
            return False
        if node.get("class") == "FUNCTION":
            name = str(node.get("function_name", "")).lower()
            if name in EPOCH_FUNCTIONS or (
                name == "make_timestamp" and len(node.get("arguments") or []) == 1
            ):
                return True
        return any(walk(value) for value in node.values())

    return walk(_parse_select(f"select ({expression})")["statements"][0]["node"]["select_list"])


def named_columns(expression: str) -> set[str]:
    """The names an expression certainly reads as columns of the file, as written: plain names outside any
    lambda (a dotted name may be a struct's field, a lambda's name its parameter) that DuckDB does not read
    without a table (`current_date`, `user`: a column of that name comes first, else the value)."""
    return {
        ref.parts[0]
        for ref in _column_refs(expression)
        if len(ref.parts) == 1 and not ref.in_lambda and not _binds_without_a_table(ref.parts[0])
    }


@lru_cache(maxsize=1024)
def _binds_without_a_table(name: str) -> bool:
    if not BARE_NAME.fullmatch(name):  # only a bare identifier is put into the query
        return False
    with _parser_lock:
        try:
            _parser().execute(f"describe select {name}")
        except duckdb.Error:
            return False
    return True


def quote_column_name(expression: str) -> str:
    """A file column written bare whose name does not read as an expression, as its quoted name: a name like
    an SQL keyword (`at`, `order`, `from`) or words with spaces between (`Lineitem sku`, `Created at`, as
    spreadsheet exports name them; `sku as item` is an alias, refused) can only mean that column. Anything
    else as written."""
    name = expression.strip()
    if (
        (BARE_NAME.fullmatch(name) or (SPACED_NAME.fullmatch(name) and "as" not in name.lower().split()))
        and (check_expression(name) is not None or name.lower() == "default")  # DEFAULT parses, means nothing
        and check_expression(f'"{name}"') is None
    ):
        return f'"{name}"'
    return expression


def check_feed_expressions(feed: Feed) -> None:
    """A SourceSpecError naming the spec line of the first refused expression of the feed (its row filter
    and the list it unnests too)."""
    for name, expression in feed.expressions(with_unnest=True).items():
        why = check_expression(expression)
        if why is not None:
            raise SourceSpecError(
                f"{feed.origin(name)}: the expression for {name} = {feed.as_written(name)!r} is refused: {why}. "
                "A column expression is one scalar DuckDB expression over the file's own columns"
            )


class Feed(BaseModel):
    """Files of one layout and how their columns map onto canonical ones."""

    kind: Literal["events", "items"]
    path: str
    format: str | None = None
    columns: dict[str, str]
    # A row filter: a DuckDB condition over the file's own columns. A row it does not keep (false or null) is
    # counted as filtered, neither inserted nor quarantined (Segment's page calls in a dump of track calls).
    where: str | None = None
    # One row per element of a list: {element name: expression giving the list (a list, or a JSON array)}.
    # The element is a column of that name; the row's other columns are its record's (GA4's `items`).
    unnest: dict[str, str] | None = None
    delimiter: str | None = None
    # The CSV quote character; "" reads every character as it is (a TSV whose values hold quotes).
    # None: '"', or no quoting with a delimiter of several characters.
    quote: str | None = None
    header: bool = True
    file_columns: list[str] | None = None
    encoding: str = "utf-8"
    # Where each mapping was written (for error messages), e.g. {"value": "shop.toml line 12"}.
    origins: dict[str, str] = Field(default_factory=dict)
    # The mappings as the spec wrote them (`columns` quotes a keyword column): what error messages echo.
    written: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _remember_written(cls, data):
        if isinstance(data, dict) and isinstance(data.get("columns"), dict) and "written" not in data:
            return data | {"written": dict(data["columns"])}
        return data

    @field_validator("columns")
    @classmethod
    def _bare_names_are_columns(cls, columns: dict[str, str]) -> dict[str, str]:
        return {name: quote_column_name(expression) for name, expression in columns.items()}

    def expressions(self, with_unnest: bool = False) -> dict[str, str]:
        """Every expression of the feed over a row: its mappings, and its row filter under the name `where`;
        with `with_unnest`, first the list it unnests, under `unnest` (evaluated on the records, before the
        rows the others read)."""
        unnest = {UNNEST: self.unnested()[1]} if with_unnest and self.unnest else {}
        return unnest | self.columns | ({WHERE: self.where} if self.where is not None else {})

    def unnested(self) -> tuple[str, str] | tuple[None, None]:
        """(the element's name, the expression giving the list), or (None, None) for a row per record."""
        return next(iter(self.unnest.items())) if self.unnest else (None, None)

    def as_written(self, name: str) -> str:
        """The mapping of `name` (or the row filter, `where`, or the list, `unnest`) as the spec wrote it."""
        return self.written.get(name, self.expressions(with_unnest=True)[name])

    def origin(self, name: str) -> str:
        """Where the spec wrote the mapping of `name` (or the row filter): a file and line, or its table."""
        return self.origins.get(
            name, f"[{self.kind}]" if name in (WHERE, UNNEST) else f"[{self.kind}.columns]"
        )

    def files(self) -> list[Path]:
        """The files this feed names, sorted; a folder means every supported file inside it."""
        path = Path(self.path)
        if path.is_dir():
            found = [p for p in sorted(path.rglob("*")) if p.is_file() and format_of(p)]
        elif glob.has_magic(self.path):
            found = [Path(p) for p in sorted(glob.glob(self.path, recursive=True)) if Path(p).is_file()]
        else:
            found = [path] if path.is_file() else []
        others = (
            [p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")]
            if path.is_dir()
            else []
        )
        if not found and others:
            by_ending = Counter("".join(p.suffixes[-2:]) or p.name for p in others)
            endings = [ending for ending, _ in by_ending.most_common()]
            nested = any(p.parent != path for p in others)
            example = Path(self.path) / ("**" if nested else "") / ("*" + endings[0])
            raise SourceSpecError(
                f"{self.kind} path {self.path!r} is a folder of {len(others):,} "
                f"file{'s' if len(others) != 1 else ''}, none named as a format segflow reads by its name "
                f"({', '.join(endings[:5])}{', ...' if len(endings) > 5 else ''}; known: "
                f"{', '.join(EXTENSION_FORMATS)}): name them with a glob and set their format, e.g. "
                f'path = "{example}" and format = one of {", ".join(FORMATS)}'
            )
        if not found:
            raise SourceSpecError(
                f"{self.kind} path {self.path!r} matches no files: fix the path in the spec (a relative one "
                "is read from the spec's folder) or put the files there"
            )
        return found

    def format_for(self, path: Path) -> str:
        found = self.format or format_of(path)
        if found is None:
            raise SourceSpecError(
                f"cannot tell the format of {path.name}: name it with one of "
                f"{', '.join(EXTENSION_FORMATS)} or set format = one of {', '.join(FORMATS)}"
            )
        return found


class SourceSpec(BaseModel):
    """A named source: event feeds, an optional item catalogue, and the event types it may contain."""

    name: str
    events: list[Feed]
    items: list[Feed] = Field(default_factory=list)
    event_types: tuple[str, ...] = DEFAULT_EVENT_TYPES
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    # Optional CSV of (user_id, segment): known segments to score the found ones against (ARI / NMI).
    ground_truth: str | None = None
    # The --source this spec was read from, with absolute paths (`movielens:/data/ml`, `/data/shop.toml`):
    # kept in the warehouse, so a run of the workspace without --source reads the same source again.
    location: str | None = None
    # The source's local time zone (an IANA name): a time its files write without a zone is read in it, and
    # a run's day parts and weekends are measured in it (tasks/features). None: not named, UTC. Stored times
    # are UTC.
    timezone: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str | None) -> str | None:
        return None if name is None else check_timezone(name)

    def truth(self) -> dict[str, int] | None:
        if not self.ground_truth or not Path(self.ground_truth).is_file():
            return None
        with open(self.ground_truth, newline="") as handle:
            return {row["user_id"]: int(row["segment"]) for row in csv.DictReader(handle)}


def format_of(path: Path) -> str | None:
    name = path.name.lower()
    for extension, fmt in sorted(EXTENSION_FORMATS.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(extension):
            return fmt
    return None


def resolve_source(source: str, sources_dir: Path) -> SourceSpec:
    """`demo`, `movielens:DIR` or `PATH.toml` to a SourceSpec, its `location` the source with absolute paths."""
    return _read_source(source, sources_dir).model_copy(update={"location": source_location(source)})


def source_location(source: str) -> str:
    """The source as it reads from any folder: its path made absolute (`movielens:DIR`, `PATH.toml`)."""
    if source.startswith("movielens:"):
        return "movielens:" + str(Path(source.split(":", 1)[1]).expanduser().resolve())
    if source.endswith(".toml"):
        return str(Path(source).expanduser().resolve())
    return source


def _read_source(source: str, sources_dir: Path) -> SourceSpec:
    if source == "demo" or source.startswith("demo:"):
        from tasks.ingest.demo import demo_config, write_demo_data

        config = demo_config(source)
        out_dir = sources_dir / f"demo-{config.n_users}{'-titles' if config.titles_only else ''}"
        spec_path = out_dir / "source.toml"
        if not spec_path.exists():
            write_demo_data(out_dir, config)
        return parse_source_spec(spec_path)
    if source.startswith("movielens:"):
        return movielens_spec(Path(source.split(":", 1)[1]))
    if source.endswith(".toml"):
        return parse_source_spec(Path(source))
    raise SourceSpecError(f"unknown source {source!r}: use demo, movielens:DIR or a PATH.toml source spec")


def _header_name(stripped: str) -> str | None:
    """The table a TOML header line opens (`[a.b]` or `[[a.b]]`: "a.b"), None for any other line."""
    header = stripped.split("#")[0].strip()
    if not header.startswith("["):
        return None
    return header.strip("[]").strip()


def _line_of(lines: list[str], section: str, key: str | None = None, start: int = 0) -> int | None:
    """1-based line of `[section]` (or of `key = ` inside it) in a TOML text; None if not found.
    `start` (0-based) skips the lines before it: the element of an array of tables (`[[events]]`)."""
    in_section = section == ""
    for number, line in enumerate(lines[start:], start=start + 1):
        stripped = line.strip()
        if stripped.startswith("["):
            if section == "" and key is not None and re.match(rf"^\[\[?{re.escape(key)}[\].]", stripped):
                return number
            in_section = _header_name(stripped) == section
            if in_section and key is None:
                return number
            continue
        if in_section and key is not None and re.match(rf'^\s*"?{re.escape(key)}"?\s*=', line):
            return number
    return None


def _element_starts(lines: list[str], kind: str) -> list[int]:
    """0-based lines of each `[[kind]]` header, in order."""
    return [i for i, line in enumerate(lines) if line.strip().split("#")[0].strip() == f"[[{kind}]]"]


def parse_source_spec(spec_path: Path) -> SourceSpec:
    """Read a source spec; every mistake is a SourceSpecError naming the line and the allowed names."""
    spec_path = Path(spec_path)
    if not spec_path.is_file():
        raise SourceSpecError(f"source spec {spec_path} does not exist")
    text = spec_path.read_text()
    lines = text.splitlines()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SourceSpecError(f"{spec_path}: not valid TOML: {error}") from None

    def where(section: str, key: str | None = None, start: int = 0) -> str:
        line = _line_of(lines, section, key, start)
        return f"{spec_path.name} line {line}" if line else spec_path.name

    def check_keys(table: dict, allowed: tuple[str, ...], section: str, start: int = 0) -> None:
        for key in table:
            if key not in allowed:
                label = f"[{section}]" if section else "the top level"
                raise SourceSpecError(
                    f"{where(section, key, start)}: unknown key {key!r} in {label}; "
                    f"allowed: {', '.join(allowed)}"
                )

    check_keys(raw, SPEC_KEYS, "")
    if not isinstance(raw.get("name"), str) or not raw["name"].strip():
        raise SourceSpecError(f'{spec_path.name}: missing `name = "..."` (recorded as events.source)')
    if "events" not in raw:
        raise SourceSpecError(f"{spec_path.name}: missing the [events] table (path and columns)")

    def read_feeds(kind: Literal["events", "items"]) -> list[Feed]:
        """`[kind]`: one feed; `[[kind]]` (an array of tables): one feed per element, each its own layout."""
        tables = raw[kind]
        if isinstance(tables, dict):
            return [read_feed(kind, tables, 0)]
        if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
            raise SourceSpecError(
                f"{where('', kind)}: {kind} must be a table ([{kind}]) or an array of tables ([[{kind}]])"
            )
        starts = _element_starts(lines, kind)
        return [
            read_feed(kind, table, starts[i] if len(starts) == len(tables) else 0)
            for i, table in enumerate(tables)
        ]

    def read_feed(kind: Literal["events", "items"], table: dict, start: int) -> Feed:
        def at(section: str, key: str | None = None) -> str:
            return where(section, key, start)

        check_keys(table, FEED_KEYS, kind, start)
        if "path" not in table:
            raise SourceSpecError(f'{at(kind)}: [{kind}] needs path = "..." (file, folder or glob)')
        if table.get("format") is not None and table["format"] not in FORMATS:
            raise SourceSpecError(
                f"{at(kind, 'format')}: unknown format {table['format']!r}; allowed: {', '.join(FORMATS)}"
            )
        quote = table.get("quote")
        if quote is not None and (not isinstance(quote, str) or len(quote) > 1):
            raise SourceSpecError(
                f'{at(kind, "quote")}: quote must be one character, or "" to read quotes as text'
            )
        columns = table.get("columns")
        section = f"{kind}.columns"
        allowed, required = (
            (EVENT_COLUMNS, REQUIRED_EVENT_COLUMNS)
            if kind == "events"
            else (ITEM_COLUMNS, REQUIRED_ITEM_COLUMNS)
        )
        if not isinstance(columns, dict):
            raise SourceSpecError(
                f"{at(kind)}: missing [{section}]; required: {', '.join(required)}; "
                f"allowed: {', '.join(allowed)}"
            )
        for name, expression in columns.items():
            if name in (WHERE, UNNEST):
                raise SourceSpecError(
                    f"{at(section, name)}: {name} is a key of [{kind}], not a column: write it above "
                    f"[{section}] (a TOML key below a table's header belongs to that table)"
                )
            if name not in allowed:
                raise SourceSpecError(
                    f"{at(section, name)}: unknown column {name!r} in [{section}]; "
                    f"allowed: {', '.join(allowed)}"
                )
            if not isinstance(expression, str) or not expression.strip():
                raise SourceSpecError(
                    f"{at(section, name)}: {name} must be a non-empty DuckDB SQL expression (a string)"
                )
        missing = [name for name in required if name not in columns]
        if missing:
            raise SourceSpecError(
                f"{at(section)}: [{section}] is missing required column(s) {', '.join(missing)}; "
                f"required: {', '.join(required)}; allowed: {', '.join(allowed)}"
            )
        path = table["path"]
        if not Path(path).is_absolute():
            path = str(spec_path.parent.resolve() / path)
        row_filter = table.get(WHERE)
        if row_filter is not None and (not isinstance(row_filter, str) or not row_filter.strip()):
            raise SourceSpecError(
                f"{at(kind, WHERE)}: where must be a non-empty DuckDB SQL condition (a string), e.g. "
                "where = \"type = 'track'\""
            )
        unnest = table.get(UNNEST)
        if unnest is not None:
            _check_unnest(unnest, at(kind, UNNEST))
        options = {key: table[key] for key in FEED_KEYS if key not in ("path", "columns") and key in table}
        origins = {name: at(section, name) for name in columns}
        origins |= {key: at(kind, key) for key in (WHERE, UNNEST) if table.get(key) is not None}
        feed = Feed(kind=kind, path=path, columns=columns, origins=origins, **options)
        check_feed_expressions(feed)
        return feed

    event_types = raw.get("event_types", DEFAULT_EVENT_TYPES)
    if not isinstance(event_types, list | tuple) or not all(isinstance(t, str) for t in event_types):
        raise SourceSpecError(f"{where('', 'event_types')}: event_types must be a list of strings")
    try:
        validation = ValidationSettings(**raw.get("validation", {}))
    except (ValidationError, TypeError) as error:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in getattr(error, "errors", lambda: [])()
        ) or str(error)
        allowed = ", ".join(ValidationSettings.model_fields)
        raise SourceSpecError(
            f"{where('validation')}: bad [validation] table: {details}; allowed: {allowed}"
        ) from None
    timezone = raw.get("timezone")
    if timezone is not None and not isinstance(timezone, str):
        raise SourceSpecError(f'{where("", "timezone")}: timezone must be a string, e.g. "Europe/Berlin"')
    try:
        timezone = None if timezone is None else check_timezone(timezone)
    except ValueError as error:
        raise SourceSpecError(f"{where('', 'timezone')}: {error}") from None
    return SourceSpec(
        name=raw["name"].strip(),
        timezone=timezone,
        events=read_feeds("events"),
        items=read_feeds("items") if "items" in raw else [],
        event_types=tuple(t.strip().lower() for t in event_types),
        validation=validation,
        ground_truth=str(spec_path.parent.resolve() / raw["ground_truth"])
        if raw.get("ground_truth")
        else None,
    )


def _check_unnest(unnest: object, origin: str) -> None:
    """A SourceSpecError unless `unnest` names one element and the expression of its list."""
    example = 'unnest = { item = "items" } (the element\'s name = the list: a column or an expression)'
    if not isinstance(unnest, dict) or len(unnest) != 1:
        raise SourceSpecError(f"{origin}: unnest must name one element and its list, e.g. {example}")
    ((name, expression),) = unnest.items()
    if not ELEMENT_NAME.fullmatch(name):
        raise SourceSpecError(
            f"{origin}: unnest's element name {name!r} must be a plain name (letters, digits, _), e.g. {example}"
        )
    if name.lower() == "_row" or name.lower().startswith("_segflow"):
        raise SourceSpecError(
            f"{origin}: unnest's element name {name!r} is segflow's own (_row, _segflow_...)"
        )
    if not isinstance(expression, str) or not expression.strip():
        raise SourceSpecError(
            f"{origin}: unnest's list {name} must be a non-empty DuckDB SQL expression (a string), e.g. {example}"
        )


ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip


def movielens_spec(folder: Path) -> SourceSpec:
    """A MovieLens folder in any of its layouts: latest/20M/25M/32M (csv), 1M/10M (.dat), 100K (u.data)."""
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise SourceSpecError(f"movielens:{folder}: not a folder")
    rating = {
        "user_id": "userId",
        "item_id": "movieId",
        "event_type": "'rate'",
        "ts": "timestamp",
        "value": "rating",
    }
    # Several tags by one user on one movie share a timestamp: the tag text makes each a distinct event.
    tag = {
        "user_id": "userId",
        "item_id": "movieId",
        "event_type": "'tag'",
        "ts": "timestamp",
        "event_id": "'tag:' || md5(concat_ws('|', userId, movieId, tag, timestamp))",
    }
    movie = {
        "item_id": "movieId",
        "title": "title",
        "category": "nullif(genres, '(no genres listed)')",
        "text": "concat_ws(' ', title, replace(nullif(genres, '(no genres listed)'), '|', ' '))",
    }
    events: list[Feed] = []
    items: list[Feed] = []
    if (folder / "ratings.csv").exists():
        events.append(Feed(kind="events", path=str(folder / "ratings.csv"), format="csv", columns=rating))
        if (folder / "tags.csv").exists():
            events.append(Feed(kind="events", path=str(folder / "tags.csv"), format="csv", columns=tag))
        if (folder / "movies.csv").exists():
            items.append(Feed(kind="items", path=str(folder / "movies.csv"), format="csv", columns=movie))
    elif (folder / "ratings.dat").exists():
        # 1M and 10M: '::'-separated, no header; 1M is latin-1 encoded.
        dat = {"format": "csv", "delimiter": "::", "header": False, "encoding": "latin-1"}
        events.append(
            Feed(kind="events", path=str(folder / "ratings.dat"), columns=rating,
                 file_columns=["userId", "movieId", "rating", "timestamp"], **dat)
        )  # fmt: skip
        if (folder / "tags.dat").exists():
            events.append(
                Feed(kind="events", path=str(folder / "tags.dat"), columns=tag,
                     file_columns=["userId", "movieId", "tag", "timestamp"], **dat)
            )  # fmt: skip
        if (folder / "movies.dat").exists():
            items.append(
                Feed(kind="items", path=str(folder / "movies.dat"), columns=movie,
                     file_columns=["movieId", "title", "genres"], **dat)
            )  # fmt: skip
    elif (folder / "u.data").exists():
        events.append(
            Feed(kind="events", path=str(folder / "u.data"), format="csv", delimiter="\t", header=False,
                 columns=rating, file_columns=["userId", "movieId", "rating", "timestamp"])
        )  # fmt: skip
        if (folder / "u.item").exists():
            flags = [f"g{i}" for i in range(len(ML100K_GENRES))]
            genres = ", ".join(
                f"case when {flag} = '1' then '{name.replace(chr(39), chr(39) * 2)}' end"
                for flag, name in zip(flags, ML100K_GENRES, strict=True)
                if name != "unknown"
            )
            items.append(
                Feed(
                    kind="items",
                    path=str(folder / "u.item"),
                    format="csv",
                    delimiter="|",
                    header=False,
                    encoding="latin-1",
                    file_columns=[
                        "movieId",
                        "title",
                        "release_date",
                        "video_release_date",
                        "imdb_url",
                        *flags,
                    ],
                    columns={
                        "item_id": "movieId",
                        "title": "title",
                        "category": f"nullif(concat_ws('|', {genres}), '')",
                        "text": f"concat_ws(' ', title, {genres})",
                    },
                )
            )
    else:
        raise SourceSpecError(
            f"movielens:{folder}: no MovieLens files found (expected ratings.csv, ratings.dat or u.data)"
        )
    return SourceSpec(
        name=f"movielens-{folder.name}",
        events=events,
        items=items,
        validation=ValidationSettings(value_ranges={"rate": (0.5, 5.0)}),
    )
