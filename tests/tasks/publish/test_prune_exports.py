"""Old export folders and run segmenters go; the current ones and the newest others stay."""

from __future__ import annotations

import os

import pytest

from tasks.publish.publish import export_folder, prune_exports, prune_segmenters, switch_current_export


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


def test_only_the_newest_run_segmenters_are_kept_and_this_runs_always(tmp_path):
    for age, name in enumerate(["r6", "r5", "r4", "r3", "r2", "r1"]):  # r6 newest
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(b"x")
        os.utime(path, (1_000_000 - age * 100, 1_000_000 - age * 100))
    (tmp_path / "notes.txt").write_text("not a segmenter")
    # r1 is this run's (a clock set back made it look oldest): it stays and counts as one of the 3.
    assert sorted(prune_segmenters(tmp_path, keep=3, current=tmp_path / "r1.pkl")) == [
        "r2.pkl",
        "r3.pkl",
        "r4.pkl",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "r1.pkl", "r5.pkl", "r6.pkl"]
    assert prune_segmenters(tmp_path, keep=3, current=tmp_path / "r1.pkl") == []
    assert sorted(prune_segmenters(tmp_path, keep=1, current=tmp_path / "r6.pkl")) == ["r1.pkl", "r5.pkl"]


def test_a_write_killed_halfway_takes_no_kept_snapshots_place(tmp_path):
    """Helper 38: a run killed while writing its export left a folder of 3 files among the 5 newest, and
    prune deleted a complete snapshot for it. A folder is written as `.partial-<name>` and renamed whole."""
    for age, name in enumerate(["r3", "r2", "r1"]):  # r3 newest, current
        folder = tmp_path / name
        folder.mkdir()
        (folder / "user_segments.parquet").write_bytes(b"x")
        os.utime(folder, (1_000_000 - age * 100, 1_000_000 - age * 100))
    switch_current_export(tmp_path, "r3")
    with pytest.raises(KeyboardInterrupt), export_folder(tmp_path, "r4") as folder:
        (folder / "user_segments.parquet").write_bytes(b"x")
        raise KeyboardInterrupt  # killed before the folder's other files
    assert not (tmp_path / "r4").exists()
    assert prune_exports(tmp_path, keep=3) == [".partial-r4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "r1", "r2", "r3"]

    with export_folder(tmp_path, "r5") as folder:
        (folder / "user_segments.parquet").write_bytes(b"y")
        assert not (tmp_path / "r5").exists()  # nobody lists it before it is whole
    assert (tmp_path / "r5" / "user_segments.parquet").read_bytes() == b"y"
