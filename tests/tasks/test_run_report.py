"""The run's HTML report on items with and without categories: no column of empty cells (helper 32 found the
Last.fm report's "top categories" empty in all 20 segment rows and 16 micro-segment rows)."""

from __future__ import annotations

from tasks.track.report import write_run_report


def profile(segment_id: int, categories: list[str]) -> dict:
    return {"segment_id": segment_id, "label": f"s{segment_id}", "size": 10, "share": 0.5,
            "top_categories": categories, "top_items": ["The Beatles", "Radiohead", "Muse", "Blur"]}  # fmt: skip


def report(tmp_path, categories: list[str]) -> str:
    micro = [
        {"micro_segment_id": i, "size": 5, "segment_id": i, "top_categories": categories} for i in range(2)
    ]
    path = write_run_report(tmp_path / "run.html", "r1", {}, [profile(0, categories), profile(1, [])], {}, {},
                            micro_segments=micro)  # fmt: skip
    return path.read_text()


def test_a_catalogue_without_categories_gets_no_category_columns(tmp_path):
    html = report(tmp_path, [])
    assert "top categories" not in html and "<td></td>" not in html
    assert "<th>share</th><th>top items</th>" in html
    assert "<td>50.0%</td><td>The Beatles, Radiohead, Muse</td>" in html
    assert "<th>segment most members are in</th></tr><tr><td>0</td><td>5</td><td>0</td></tr>" in html


def test_categories_show_where_items_have_them(tmp_path):
    html = report(tmp_path, ["rock", "pop"])
    assert "<th>share</th><th>top categories</th><th>top items</th>" in html
    assert "<td>50.0%</td><td>rock, pop</td><td>The Beatles, Radiohead, Muse</td>" in html
    assert "<th>top categories</th></tr><tr><td>0</td><td>5</td><td>0</td><td>rock, pop</td></tr>" in html
