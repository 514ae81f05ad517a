"""The champion gate end to end: a run that scores worse than the champion on the same holdout publishes
nothing and leaves the alias where it is; `force` publishes it and moves the alias."""

from __future__ import annotations

import os

import duckdb
import pytest

from flows.segment_users import segment_users
from tasks.publish import publish
from tasks.segment.settings import SegmentSettings
from tests.helpers import query

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]
PUBLISHED = (
    "user_segments",
    "segment_recommendations",
    "segment_profiles",
    "segment_runs",
    "user_memberships",
    "fct_interactions",
    "fct_user_activity",
    "user_embedding",  # combined's columns: the worse run's (behaviour's) are fewer
)

EMBEDDING_COLUMNS = "select count(*) from information_schema.columns where table_name = 'user_embedding'"


def published(workspace) -> dict:
    tables = {t: query(workspace, f"select * from {t} order by all") for t in PUBLISHED}
    return tables | {"current": os.readlink(workspace / "exports" / "current")}


def champion_version(workspace):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")
    return client, client.get_model_version_by_alias("user-segmenter", "champion")


def test_a_worse_run_leaves_the_champion_and_its_tables_and_force_moves_both(tmp_path, monkeypatch):
    workspace = tmp_path / "workspace"
    first = segment_users(
        source="demo:400", workspace=str(workspace), settings=SegmentSettings(embedding="combined")
    )
    assert first.published and "champion" not in " ".join(first.notes)
    client, version = champion_version(workspace)
    assert version.version == 1 and version.tags["segflow.run_id"] == first.run_id
    before = published(workspace)
    combined_columns = query(workspace, EMBEDDING_COLUMNS)[0][0]

    # How people shop alone, without what they buy: segment lists that predict less on the same holdout.
    settings = SegmentSettings(embedding="behaviour", k=9)
    worse = segment_users(source="demo:400", workspace=str(workspace), settings=settings)
    assert not worse.published
    ours = worse.metrics["segments/recall@10"]
    theirs = first.metrics["segments/recall@10"]  # the same configuration on the same holdout
    assert ours < theirs
    assert worse.notes[-1] == (
        f"not published, the champion stays: segment Recall@10 {ours:.4f} against {theirs:.4f} for the "
        f"champion (run {first.run_id}, combined + kmeans, K = 9) on this holdout; the published tables are "
        "unchanged (--force publishes anyway)"
    )
    assert published(workspace) == before
    assert champion_version(workspace)[1].version == 1
    # Its lists are not the published ones: the summary does not send the reader to them (a newcomer did).
    assert not [n for n in worse.notes if n.startswith("use the ")]
    assert [n for n in worse.notes if n.startswith("this run's ")][0].endswith("keeps the champion's")
    runs = client.search_runs(
        [client.get_experiment_by_name("segflow").experiment_id],
        "attributes.run_name = '" + worse.run_id + "'",
    )
    assert [r.data.tags["segflow.published"] for r in runs] == ["false"]

    # Where segflow kept embeddings before: one emb_<family> table per family ever published.
    duckdb.connect(str(workspace / "warehouse.duckdb")).execute(
        "create table emb_combined as select 1 as x"
    ).close()
    # The switch of exports/current fails once after the swap committed (a full disk): the task's retry only
    # switches (it wrote the exports and swapped again, and failed: the staged tables were gone).
    switch = publish.switch_current_export
    failures = [OSError(28, "No space left on device")]

    def flaky_switch(exports_dir, name):
        if failures:
            raise failures.pop()
        return switch(exports_dir, name)

    monkeypatch.setattr(publish, "switch_current_export", flaky_switch)
    forced = segment_users(
        source="demo:400", workspace=str(workspace), settings=settings.model_copy(update={"force": True})
    )
    assert not failures and os.readlink(workspace / "exports" / "current") == forced.run_id
    assert forced.published and forced.notes[-1].startswith(
        f"published with --force although worse: segment Recall@10 {ours:.4f} against {theirs:.4f}"
    )
    version = champion_version(workspace)[1]
    assert version.version == 2 and version.tags["segflow.run_id"] == forced.run_id
    assert version.tags["segflow.family"] == "behaviour"
    assert query(workspace, "select run_id from segment_runs where is_current") == [(forced.run_id,)]
    assert query(workspace, EMBEDDING_COLUMNS)[0][0] < combined_columns  # behaviour's embedding, published
    assert query(
        workspace, "select count(*) from information_schema.tables where table_name like 'emb%'"
    ) == [(0,)]


def test_the_champion_is_scored_again_at_the_k_its_objective_was_measured_at_not_the_k_it_published(tmp_path):
    # 100 users, K = 10 asked: segments under the minimum size (20 users) merge, so fewer are published. The
    # champion was scored again at the published K, a configuration it never had: 0.1096 against its own
    # 0.1542, and any later run looked better than it (helper 26).
    workspace = tmp_path / "workspace"
    settings = SegmentSettings(embedding="combined", k=10)
    first = segment_users(source="demo:100", workspace=str(workspace), settings=settings)
    published_k = query(workspace, "select k from segment_runs where is_current")[0][0]
    assert published_k < 10
    tags = champion_version(workspace)[1].tags
    assert (tags["segflow.k"], tags["segflow.fit_k"]) == (str(published_k), "10")
    again = segment_users(source="demo:100", workspace=str(workspace), settings=settings)
    merged = "of the K = 10 segments had fewer than 20 users (--min-segment-size) and were merged into their "
    assert any(merged in note and note.endswith(f"nearest: {published_k} published") for note in again.notes)
    ours = again.metrics["segments/recall@10"]
    assert ours == first.metrics["segments/recall@10"]  # the same data, settings and seed
    assert again.notes[-1] == (
        f"new champion, as good as the last (a tie goes to the newer run): segment Recall@10 {ours:.4f} against "
        f"{ours:.4f} for the champion (run {first.run_id}, combined + kmeans, K = {published_k}) on this holdout"
    )


def test_a_run_whose_export_switch_fails_is_published_as_its_tables_say_and_the_next_writer_serves_it(
    tmp_path, monkeypatch
):
    """Helper 38: the switch of exports/current failed after the swap committed: the run exited with an
    IsADirectoryError, its tables were published, MLflow called it unpublished, the champion stayed on the run
    before, and the next writer served it without a word of why."""
    workspace = tmp_path / "workspace"
    settings = SegmentSettings(embedding="combined", k=4)
    first = segment_users(source="demo:100", workspace=str(workspace), settings=settings)
    replace = os.replace

    def full_disk(source, target):  # injected fault: the rename onto exports/current fails
        if os.path.basename(target) == "current":
            raise OSError(28, "No space left on device")
        return replace(source, target)

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(publish.ExportSwitchError) as raised:
        segment_users(source="demo:100", workspace=str(workspace), settings=settings)
    monkeypatch.undo()
    [(second,)] = query(workspace, "select run_id from segment_runs where is_current")
    assert second != first.run_id
    assert str(raised.value) == (
        f"{second} is published in the warehouse, but {workspace / 'exports' / 'current'} could not be pointed "
        "at its folder (OSError: [Errno 28] No space left on device): the published tables are "
        f"{second}'s, and readers of the exports serve the previous folder until the next `segflow run` or "
        "`segflow score` on this workspace points it there (the first thing each does)"
    )
    assert os.readlink(workspace / "exports" / "current") == first.run_id
    client, version = champion_version(workspace)
    assert version.tags["segflow.run_id"] == second
    assert client.get_run(version.run_id).data.tags["segflow.published"] == "true"

    con = duckdb.connect(str(workspace / "warehouse.duckdb"))
    try:
        assert (
            publish.restore_current_export(con, workspace / "exports") == second
        )  # what the next writer does
    finally:
        con.close()
    assert os.readlink(workspace / "exports" / "current") == second
