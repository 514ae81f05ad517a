"""The `items` suite: a staged catalogue batch, or the whole `items` table."""

from __future__ import annotations

from validation.gate import Check, Suite, SuitePart, load_great_expectations


def items_suite(items_table: str) -> Suite:
    gx = load_great_expectations()

    e = gx.expectations
    return Suite(
        "items",
        [
            SuitePart(
                "rows",
                f"select item_id, price from {items_table}",
                [
                    Check(
                        "item_id_not_null",
                        "item_id not null",
                        e.ExpectColumnValuesToNotBeNull(column="item_id"),
                    ),
                    Check(
                        "item_id_unique", "item_id unique", e.ExpectColumnValuesToBeUnique(column="item_id")
                    ),
                    Check(
                        "price_not_negative",
                        "price >= 0 when present",
                        e.ExpectColumnValuesToBeBetween(column="price", min_value=0),
                    ),
                ],
                id_columns=["item_id"],
                chunk_key="item_id",
            )
        ],
    )
