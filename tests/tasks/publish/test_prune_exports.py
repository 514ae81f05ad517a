"""Old export folders go; the current one and the newest others stay."""

from __future__ import annotations

import os

from tasks.publish.publish import prune_exports, switch_current_export


def test_the_current_folder_and_the_newest_others_are_kept_and_crash_leftovers_go(tmp_path):
    for age, name in enumerate(["r6", "r5", "r4", "r3", "r2", "r1"]):  # r6 newest
        folder = tmp_path / name
        folder.mkdir()
        (folder / "user_segments.parquet").write_bytes(b"x")
        os.utime(folder, (1_000_000 - age * 100, 1_000_000 - age * 100))
    switch_current_export(tmp_path, "r2")  # an older run is current, e.g. r3..r6 were never published
    (tmp_path / ".current-r9").symlink_to("r9")  # a switch that a crash cut short
    deleted = prune_exports(tmp_path, keep=3)
    assert sorted(deleted) == [".current-r9", "r1", "r3", "r4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "r2", "r5", "r6"]
    assert (
        os.readlink(tmp_path / "current") == "r2"
        and (tmp_path / "current" / "user_segments.parquet").exists()
    )
    assert prune_exports(tmp_path, keep=3) == []  # nothing more to delete
    assert sorted(prune_exports(tmp_path, keep=1)) == ["r5", "r6"]
