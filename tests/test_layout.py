"""The house layout holds: torch code in models/ imports neither Prefect nor DuckDB; flows/ hold no SQL."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_models_import_neither_prefect_nor_duckdb():
    offenders = {
        str(path.relative_to(ROOT)): imported_modules(path) & {"prefect", "duckdb"}
        for path in (ROOT / "models").rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_tasks_do_not_import_flows():
    offenders = [
        str(p.relative_to(ROOT)) for p in (ROOT / "tasks").rglob("*.py") if "flows" in imported_modules(p)
    ]
    assert offenders == []
