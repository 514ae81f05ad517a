"""A run measures how far its segments moved from the published ones, and warns past the thresholds."""

from __future__ import annotations

import pytest

from flows.segment_users import segment_users
from tasks.segment.settings import SegmentSettings

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]


def test_the_second_run_measures_drift_from_the_first_and_a_known_shift_warns(tmp_path):
    workspace = str(tmp_path / "workspace")
    settings = SegmentSettings(embedding="combined", k=9, keep_exports=2)
    first = segment_users(source="demo:400", workspace=workspace, settings=settings)
    assert not any(key.startswith("drift/") for key in first.metrics)  # nothing published before it
    same = segment_users(source="demo:400", workspace=workspace, settings=settings)
    # The same data and settings: the same segments, renumbered or not.
    assert same.metrics["drift/changed_share"] == 0.0
    assert same.metrics["drift/size_psi"] == pytest.approx(0.0, abs=1e-9)
    assert same.metrics["drift/n_common_users"] == 400
    assert not [n for n in same.notes if n.startswith("drift:")]
    # Three segments instead of nine: most users land in a merged segment, sizes shift.
    merged = segment_users(
        source="demo:400", workspace=workspace, settings=settings.model_copy(update={"k": 3, "force": True})
    )
    assert merged.metrics["drift/size_psi"] > 0.25 and merged.metrics["drift/changed_share"] > 0.3
    # Three runs, two kept: the exports and the run segmenters alike (every run's is in MLflow).
    runs = {summary.run_id for summary in (same, merged)}
    assert {p.stem for p in (tmp_path / "workspace" / "segmenters").iterdir()} == runs
    assert {p.name for p in (tmp_path / "workspace" / "exports").iterdir()} == runs | {"current"}
    # A K changed on purpose says the shift is expected (a newcomer read it as a warning about the data).
    assert [n for n in merged.notes if n.startswith("drift:")] == [
        f"drift: segment sizes shifted: PSI {merged.metrics['drift/size_psi']:.3f} > 0.25 (K = 3, the published run's 9: expected)",
        f"drift: {merged.metrics['drift/changed_share']:.1%} of users changed segment since the previous run (> 30%) (K = 3, the published run's 9: expected)",
    ]
