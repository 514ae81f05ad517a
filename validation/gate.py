"""The validation gate: run a suite of Great Expectations over frames that DuckDB hands over, in bounded
chunks, and turn the results into one verdict per expectation.

A suite is a list of parts; a part is a SQL query (its rows are the data) plus the expectations on it.
Large parts are read in chunks that partition the rows by a key (`_chunk_key`), so per-row expectations add
up exactly and uniqueness of that key holds across chunks. GX's DuckDB SQL source fails silently (with
duckdb-engine every expectation fails, an IndexError hidden in its `exception_info`), so frames always come
from DuckDB as pandas, and every result's `exception_info` is checked.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import duckdb
from pydantic import BaseModel, ConfigDict, Field, field_validator

Severity = Literal["critical", "warning"]

# Great Expectations logs at INFO for every batch it validates ("Created temporary directory ... for
# ephemeral docs site"): 600 lines for 300 files. Quiet unless asked for (`set_verbose`, `SEGFLOW_VERBOSE=1`).
LIBRARY_LOGGERS = ("great_expectations",)
_verbose: bool | None = None


def set_verbose(verbose: bool | None) -> None:
    """Show (True) or hide (False) the validation libraries' own log lines; None follows SEGFLOW_VERBOSE."""
    global _verbose
    _verbose = verbose


def is_verbose() -> bool:
    if _verbose is not None:
        return _verbose
    return os.environ.get("SEGFLOW_VERBOSE", "").strip().lower() in ("1", "true", "yes", "on")


def quiet_library_logs() -> None:
    """Set the level of every Great Expectations logger: WARNING, or INFO when verbose. Some of its
    modules set INFO on their own logger, which overrides the parent's level, so each one is set."""
    level = logging.INFO if is_verbose() else logging.WARNING
    names = [*LIBRARY_LOGGERS, *logging.root.manager.loggerDict]
    for name in names:
        if any(name == root or name.startswith(root + ".") for root in LIBRARY_LOGGERS):
            logger = logging.getLogger(name)
            if logger.level != level:  # setLevel clears every logger's cache: only when it changes
                logger.setLevel(level)


class ValidationFailedError(RuntimeError):
    """A critical expectation failed; the message lists each one with what was observed."""


class ValidationSettings(BaseModel):
    """Thresholds and severities, per source (the `[validation]` table of a source spec)."""

    model_config = ConfigDict(extra="forbid")

    value_ranges: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="event_type -> [min, max] of `value`, e.g. rate = [0.5, 5.0]"
    )
    max_missing_item_share: float = Field(
        0.05, ge=0, le=1, description="share of events whose item is not in the catalogue"
    )
    max_event_type_shift: float = Field(
        0.25, ge=0, le=1, description="largest change of one event type's share vs the warehouse"
    )
    max_format_shift: float = Field(
        0.25, ge=0, le=1, description="largest change of one id or timestamp format's share vs the warehouse"
    )
    chunk_rows: int = Field(500_000, gt=0, description="rows handed to Great Expectations at once")
    severity: dict[str, Severity] = Field(
        default_factory=dict, description="check name -> critical | warning"
    )

    @field_validator("value_ranges")
    @classmethod
    def _event_types_as_ingested(
        cls, ranges: dict[str, tuple[float, float]]
    ) -> dict[str, tuple[float, float]]:
        # Event types are lowercased and trimmed at ingest: `Purchase = [...]` checked no event at all.
        return {name.strip().lower(): bounds for name, bounds in ranges.items()}

    @field_validator("severity")
    @classmethod
    def _known_checks(cls, severity: dict[str, Severity]) -> dict[str, Severity]:
        # A misspelt name (`event_mix`) left the check at its default without a word.
        named = {_as_check_name(name): level for name, level in severity.items()}
        unknown = [
            name for name in named if name not in SPEC_CHECKS and not name.startswith(SPEC_CHECK_PREFIXES)
        ]
        if unknown:
            known = ", ".join([*SPEC_CHECKS, *(f"{prefix}<...>" for prefix in SPEC_CHECK_PREFIXES)])
            raise ValueError(f"no check is named {unknown[0]!r}; the checks: {known}")
        return named


# The checks a source's `[validation.severity]` can set: validation/events_batch.py and items.py (a test
# builds both suites and checks every name is here).
SPEC_CHECKS = (
    "at_least_one_row", "event_type_in_set", "ts_in_range", "event_id_unique", "items_in_catalogue",
    "event_type_mix", "event_type_present", "ts_format", "ts_spread", "user_id_format", "item_id_format",
    "value_format", "item_id_not_null", "item_id_unique", "price_not_negative",
)  # fmt: skip
SPEC_CHECK_PREFIXES = ("not_null:", "value_range:")


def _as_check_name(name: str) -> str:
    """`value_range:Purchase` as the check is named: for the event type as ingested."""
    prefix, _, event_type = name.partition(":")
    return f"{prefix}:{event_type.strip().lower()}" if prefix == "value_range" and event_type else name


@dataclass
class Check:
    """One expectation of a part: a stable name (used in config), its severity and what it means."""

    name: str
    description: str
    expectation: Any  # a great_expectations.expectations.Expectation
    severity: Severity = "critical"
    unit: str = "rows"
    format_example: Callable[[Any], str] | None = None  # how an unexpected value is shown


@dataclass
class SuitePart:
    """Rows from one SQL query, and the checks that run on them."""

    name: str
    sql: str
    checks: list[Check]
    params: dict[str, Any] = field(default_factory=dict)
    id_columns: list[str] = field(default_factory=list)  # shown next to unexpected values
    chunk_key: str | None = None  # SQL expression: rows with equal keys land in the same chunk


@dataclass
class Suite:
    name: str
    parts: list[SuitePart]


@dataclass
class CheckResult:
    name: str
    description: str
    severity: Severity
    success: bool
    element_count: int | None = None
    unexpected_count: int | None = None
    observed_value: Any = None
    examples: list[str] = field(default_factory=list)
    error: str | None = None
    unit: str = "rows"

    @property
    def observed(self) -> str:
        """What was seen, as a person reads it: '412 of 80,112 rows unexpected, e.g. 'teleport''."""
        if self.error:
            return f"could not run: {self.error}"
        if self.unexpected_count is not None and self.element_count is not None:
            text = f"{self.unexpected_count:,} of {self.element_count:,} {self.unit} unexpected"
            if self.examples:
                text += ", e.g. " + ", ".join(self.examples[:3])
            return text
        if isinstance(self.observed_value, int):
            return f"{self.observed_value:,} {self.unit}"
        return f"observed {self.observed_value}"


@dataclass
class SuiteResult:
    suite: str
    batch_id: str
    checks: list[CheckResult]
    at: datetime = field(default_factory=lambda: datetime.now(UTC).replace(tzinfo=None))
    report_path: str | None = None
    subject: str = ""  # what was validated, as a person names it: the file of a batch

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success and c.severity == "critical"]

    @property
    def warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success and c.severity == "warning"]

    @property
    def success(self) -> bool:
        return not self.failures

    def describe_failures(self) -> str:
        lines = [f"{self.suite} validation failed for batch {self.batch_id}:"]
        lines += [f"  - {c.description}: {c.observed}" for c in self.failures]
        if self.report_path:
            lines.append(f"  report: {self.report_path}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        data["success"] = self.success
        for check, result in zip(data["checks"], self.checks, strict=True):
            check["observed"] = result.observed
        return data


def _example(value: Any, ids: dict[str, Any] | None = None, fmt: Callable[[Any], str] | None = None) -> str:
    value = value.item() if hasattr(value, "item") else value
    text = fmt(value) if fmt else repr(value)
    if ids:
        text += " (" + ", ".join(f"{k}={v}" for k, v in ids.items()) + ")"
    return text


def load_great_expectations():
    """The great_expectations module, imported with its loggers quiet: on import it logs ~200 INFO lines."""
    quiet_library_logs()
    import great_expectations as gx

    return gx


def _new_context():
    gx = load_great_expectations()
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.execution_engine import pandas_execution_engine

    # After the imports: the loggers exist only once their modules are loaded.
    quiet_library_logs()
    # GX fingerprints every pandas batch by hashing all of it (~40% of validation time); segflow never uses
    # the fingerprint (batches are identified by batch_id), so skip it.
    pandas_execution_engine.HASH_THRESHOLD = 0

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def _frame(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]):
    """A pandas frame of the query's rows, through Arrow: 3-4x faster than `.df()` for text columns."""
    relation = con.sql(sql, params=params) if params else con.sql(sql)
    return relation.to_arrow_table().to_pandas()


def _chunks(con: duckdb.DuckDBPyConnection, part: SuitePart, chunk_rows: int):
    """The part's rows as pandas frames of at most ~chunk_rows rows, partitioned by its chunk key."""
    n_rows = con.execute(f"select count(*) from ({part.sql})", part.params).fetchall()[0][0]
    n_chunks = max(1, math.ceil(n_rows / chunk_rows))
    if n_chunks == 1 or part.chunk_key is None:
        yield _frame(con, part.sql, part.params)
        return
    # Stored in chunk order, so that each chunk's query reads its own row groups only (DuckDB skips the others
    # by their min/max); unordered, every chunk scanned the whole table (25M rows: 50 scans, 195 s).
    con.execute(
        f"create or replace temp table val_chunks as select *, hash({part.chunk_key}) % {n_chunks} as _chunk "
        f"from ({part.sql}) order by _chunk",
        part.params,
    )
    try:
        for chunk in range(n_chunks):
            frame = _frame(con, f"select * exclude (_chunk) from val_chunks where _chunk = {chunk}", {})
            if len(frame):
                yield frame
    finally:
        con.execute("drop table if exists val_chunks")


def run_suite(
    con: duckdb.DuckDBPyConnection, suite: Suite, batch_id: str, settings: ValidationSettings
) -> SuiteResult:
    """Validate every part of the suite; results of chunks add up to one result per check."""
    gx = load_great_expectations()

    context = _new_context()
    source = context.data_sources.add_pandas("segflow")
    results: list[CheckResult] = []
    for part in suite.parts:
        for check in part.checks:
            check.severity = settings.severity.get(check.name, check.severity)
        batch_definition = source.add_dataframe_asset(part.name).add_batch_definition_whole_dataframe("chunk")
        gx_suite = context.suites.add(
            gx.ExpectationSuite(
                name=f"{suite.name}.{part.name}", expectations=[c.expectation for c in part.checks]
            )
        )
        by_id = {str(c.expectation.id): c for c in part.checks}
        totals = {
            name: CheckResult(c.name, c.description, c.severity, True, unit=c.unit)
            for name, c in by_id.items()
        }
        result_format: dict[str, Any] = {"result_format": "SUMMARY"}
        if part.id_columns:
            result_format["unexpected_index_column_names"] = part.id_columns
        for frame in _chunks(con, part, settings.chunk_rows):
            validation = batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(
                gx_suite, result_format=result_format
            )
            for item in validation.results:
                total = totals[str(item.expectation_config.id)]
                _add_chunk_result(total, item, by_id[str(item.expectation_config.id)], part.id_columns)
        for name, total in totals.items():
            check = by_id[name]
            mostly = getattr(check.expectation, "mostly", None)
            mostly = 1.0 if mostly is None else mostly  # 0 allows every row (`or` made it 1: none)
            if total.error is None and total.unexpected_count is not None and total.element_count:
                total.success = total.unexpected_count <= (1 - mostly) * total.element_count + 1e-9
            results.append(total)
    return SuiteResult(suite=suite.name, batch_id=batch_id, checks=results)


def _add_chunk_result(total: CheckResult, item: Any, check: Check, id_columns: list[str]) -> None:
    info = item.exception_info or {}
    raised = info.get("raised_exception") if isinstance(info, dict) else False
    if not raised and isinstance(info, dict):  # GX nests exception info per metric in some versions
        raised = any(isinstance(v, dict) and v.get("raised_exception") for v in info.values())
    if raised:
        message = info.get("exception_message") if isinstance(info, dict) else None
        if message is None:
            message = next(
                (v.get("exception_message") for v in info.values() if isinstance(v, dict)), "unknown error"
            )
        total.error, total.success = str(message), False
        return
    result = item.result or {}
    if "unexpected_count" in result and result.get("element_count") is not None:
        total.element_count = (total.element_count or 0) + int(result["element_count"])
        total.unexpected_count = (total.unexpected_count or 0) + int(result.get("unexpected_count") or 0)
        if len(total.examples) < 5:
            indexed = result.get("partial_unexpected_index_list") or []
            if indexed and id_columns:
                for row in indexed[: 5 - len(total.examples)]:
                    value = (
                        row.get(check.expectation.column) if hasattr(check.expectation, "column") else None
                    )
                    ids = {k: row[k] for k in id_columns if k in row}
                    total.examples.append(_example(value, ids, check.format_example))
            else:
                # Each value once: a repeated value (one missing item in many rows) must not fill the list.
                for value in result.get("partial_unexpected_list") or []:
                    example = _example(value, None, check.format_example)
                    if len(total.examples) < 5 and example not in total.examples:
                        total.examples.append(example)
    else:
        observed = result.get("observed_value")
        if isinstance(total.observed_value, int | float) and isinstance(observed, int | float):
            total.observed_value += observed
        else:
            total.observed_value = observed
        total.success = total.success and bool(item.success)


def record_validation_run(con: duckdb.DuckDBPyConnection, result: SuiteResult) -> None:
    con.execute(
        "insert into validation_runs values ($suite, $batch_id, $success, $n, $n_failed, $n_warnings, $report, $at)",
        {
            "suite": result.suite,
            "batch_id": result.batch_id,
            "success": result.success,
            "n": len(result.checks),
            "n_failed": len(result.failures),
            "n_warnings": len(result.warnings),
            "report": result.report_path or "",
            "at": result.at,
        },
    )
