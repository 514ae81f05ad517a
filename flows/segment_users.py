"""The `segment-users` flow: finish an interrupted publish, ingest, then each stage of segmenting as its own
task, visible in the run graph.

holdout split -> features of all users -> the families to train (and, when one reads item text, the texts
encoded alongside what follows) -> choose K -> (features -> embed each candidate family -> choose the family
-> cluster -> evaluate) on the training part -> (embed -> cluster -> assign) on all users ->
describe -> profile -> validate -> save -> track -> judge against the champion -> publish and register. Tasks
take and return values (frames, fitted objects) or paths, never a connection.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import polars as pl
import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from pydantic import Field

from flows.ingest import IngestReport, ingest_events
from flows.recovery import finish_interrupted_publish, restored_notes
from flows.runners import make_task_runner, runs_in_parallel
from tasks.clock import new_id, utc_now
from tasks.cluster.base import Clusterer
from tasks.cluster.choose_k import choose_k, choose_micro, k_note
from tasks.cluster.registry import FINDS_ITS_OWN_K
from tasks.embed.base import Embedder, Embedding
from tasks.embed.registry import LEARNED, READS_ITEM_TEXT
from tasks.evaluate.drift import measure_drift
from tasks.evaluate.holdout import EventSplit, sample_notes, split_events
from tasks.features.events import read_warehouse_events
from tasks.features.interactions import event_type_notes
from tasks.features.user_features import FeatureModel, UserFeatures
from tasks.ingest.sources import resolve_source
from tasks.publish import profile, publish
from tasks.segment import segmenter as seg
from tasks.segment.evaluate import (
    describe_segments,
    holdout_k_notes,
    score_holdout,
    stability_notes,
    usefulness_notes,
)
from tasks.segment.families import (
    FamilyFit,
    candidate_families,
    choose_family,
    comparison_rows,
    fit_family,
    time_budget_notes,
    try_fit_family,
)
from tasks.segment.micro import MicroSegments, micro_tables
from tasks.segment.reach import Reach, reach_metrics, reach_notes
from tasks.segment.segmenter import Segmenter, merged_note
from tasks.segment.settings import SegmentSettings
from tasks.segment.sweep import Sweep, sweep_k
from tasks.serve import find_snapshot
from tasks.track import champion, charts, tracking
from tasks.track.champion import Champion
from tasks.track.report import choice, figure, headline_metrics, write_run_report
from tasks.validate import validate_table
from tasks.warehouse import connect_warehouse
from tasks.workspace import Workspace, hold_workspace, open_workspace
from validation.gate import ValidationFailedError, ValidationSettings

# Pure computation is not retried (the same inputs fail the same way); I/O that can fail for a passing
# reason (MLflow's SQLite store, file writes) is.
IO_RETRIES = {"retries": 2, "retry_delay_seconds": 1}


@dataclass
class RunSummary:
    """What a pipeline run did and where its outputs are."""

    run_id: str
    source: str
    ingest: IngestReport
    profiles: list[dict]
    metrics: dict[str, float]
    locations: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    families: list[dict] = field(default_factory=list)  # the family comparison, best first
    published: bool = True


@task(cache_policy=NO_CACHE)
def load_events(
    warehouse_path: str, memory_limit: str, settings: SegmentSettings
) -> tuple[pa.Table, pa.Table]:
    """Every event of the warehouse and the catalogue's item categories; refuses data too small to segment."""
    events, items = read_warehouse_events(warehouse_path, memory_limit)
    seg.check_segmentable(events, settings)
    return events, items


@task(cache_policy=NO_CACHE)
def split_holdout(events: pa.Table, seed: int) -> EventSplit:
    """Hold out each user's last 20% of items (users with >= 5): the training part is all a fit may read.
    Past 50,000 users, of a fixed random sample of 50,000 (tasks/evaluate/holdout.py)."""
    return split_events(events, seed)


@task(cache_policy=NO_CACHE)
def choose_segment_count(
    train: pa.Table, items: pa.Table, settings: SegmentSettings
) -> tuple[int, int, float, Sweep]:
    """K for people (by structure), K for micro-segments and the personal weight of the per-user lists (by
    usefulness): as given, or swept on the training part."""
    sweep_people = settings.k == "auto" and settings.clusterer not in FINDS_ITS_OWN_K
    sweep_micro = settings.micro_k == "auto" or settings.personal_weight == "auto"
    sweep = (
        sweep_k(train, items, settings, people=sweep_people) if sweep_people or sweep_micro else Sweep([], [])
    )
    if settings.clusterer in FINDS_ITS_OWN_K:
        k = 0
    else:
        k = choose_k(sweep.people) if sweep_people else int(settings.k)
    if settings.micro_k == "auto" or settings.personal_weight == "auto":
        micro_k, weight = choose_micro(sweep.micro)
    else:
        micro_k, weight = int(settings.micro_k), float(settings.personal_weight)
    return k, micro_k, weight, sweep


@task(cache_policy=NO_CACHE, task_run_name="features ({part})")
def features(
    events: pa.Table, items: pa.Table, settings: SegmentSettings, part: str
) -> tuple[FeatureModel, UserFeatures]:
    """Per-user features (sql/features/) with the statistics they are fitted with."""
    return seg.fit_features(events, items, settings)


@task(cache_policy=NO_CACHE)
def list_families(
    settings: SegmentSettings, events: pa.Table, items: pa.Table
) -> tuple[list[str], dict[str, str]]:
    """The families to train (auto: those the data support) and those left out, with why."""
    return candidate_families(settings, events, items)


@task(cache_policy=NO_CACHE)
def encode_item_texts(items: pa.Table, text_cache: str, accelerator: str) -> int:
    """Encode the item texts the workspace's cache lacks, while K is chosen and the other families train, so
    the families that read them find them cached: a workspace's first run on ml-latest-small spent 55 s of its
    3 min 31 s encoding 9,742 titles before. In a process of its own on half of the cores (at least one): the
    stages beside it keep the rest, and their torch threads, so their numbers are those of a run without it.
    Returns the texts encoded; a failure is logged and left to those families' own fits, which encode what is
    still missing and report their error in the comparison."""
    from tasks.embed.item_text import encode_in_process

    try:
        return encode_in_process(items, Path(text_cache), max(1, (os.cpu_count() or 1) // 2), accelerator)
    except Exception as error:  # noqa: BLE001 - the families that need the vectors report it
        get_run_logger().warning("encoding the item texts ahead failed: %s", error)
        return 0


@task(cache_policy=NO_CACHE, task_run_name="embed {family} (train)")
def embed_family(
    family: str, user_features: UserFeatures, split: EventSplit, settings: SegmentSettings, k: int,
    text_cache: str,
) -> FamilyFit:  # fmt: skip
    """Fit one family on the training part; cluster it and score its segments on the held-out items. When
    several families compete, one that fails is reported in the comparison and the others go on."""
    if len(settings.families) > 1:
        return try_fit_family(family, user_features, split, settings, k, text_cache)
    return fit_family(family, user_features, split, settings, k, text_cache)


@task(cache_policy=NO_CACHE)
def choose_embedding(fits: list[FamilyFit], skipped: dict[str, str]) -> tuple[str, list[dict]]:
    """The family to publish (best segment Recall@10 on the holdout, then silhouette) and the comparison."""
    chosen = choose_family(fits)
    return chosen, comparison_rows(fits, chosen, skipped)


@task(cache_policy=NO_CACHE, task_run_name="embed ({part})")
def embed(
    user_features: UserFeatures, settings: SegmentSettings, part: str, text_cache: str,
    fitted: Embedder | None = None,
) -> tuple[Embedder, Embedding]:  # fmt: skip
    """Fit the chosen family and embed the users; with `fitted` (see `reused_fit`), embed them with it."""
    if fitted is not None:
        return fitted, fitted.transform(user_features)
    options = seg.fit_options(settings, text_cache=Path(text_cache))
    return seg.fit_embedder(user_features, settings, options=options)


def reused_fit(chosen: FamilyFit, split: EventSplit) -> Embedder | None:
    """The chosen family's fit on the training part, when it is a learned family and the split was made on a
    sample of the users: the published embedder is then that fit (the one the holdout scored), and every
    other user is embedded as a new user is. Fitting it again on all users would make a learned family's
    cost grow with the users: lightgcn on the 462,963 users of 25M events took 308 s (on the 50,000
    sampled, 45 s). Below the sample's size, the chosen family is fit again on all events."""
    if chosen.family in LEARNED and split.n_users < split.n_users_total:
        return chosen.embedder
    return None


def reuse_note(family: str, split: EventSplit) -> str:
    others = split.n_users_total - split.n_users
    return (
        f"{family} is the fit on the sample (the one the holdout scored), not fit again on all users: it embeds "
        f"the other {others:,} users as it would new users"
    )


@task(cache_policy=NO_CACHE, task_run_name="cluster ({part})")
def cluster(embedding: Embedding, settings: SegmentSettings, k: int, part: str) -> Clusterer:
    """Fit the clusterer: the segments."""
    return seg.fit_clusterer(embedding, settings, k)


@task(cache_policy=NO_CACHE, task_run_name="micro-segments ({part})")
def micro_segments(
    user_features: UserFeatures, settings: SegmentSettings, micro_k: int, part: str
) -> tuple[MicroSegments, Embedding]:
    """Fit the micro level: the taste embedding, its clusters and the membership weights."""
    return seg.fit_micro_segments(user_features, settings, micro_k)


@task(cache_policy=NO_CACHE)
def evaluate(
    user_features: UserFeatures, embedding: Embedding, clusterer: Clusterer, micro: MicroSegments,
    taste: Embedding, split: EventSplit,
) -> dict[str, float]:  # fmt: skip
    """Score every list fit on the training part (segments, micro-segments, blended per user) against the
    held-out items, next to popularity and ItemKNN."""
    return score_holdout(user_features, embedding, clusterer, micro, taste, split)


@task(cache_policy=NO_CACHE)
def check_usefulness(metrics: dict[str, float], require_lift: bool) -> list[str]:
    """The usefulness gate: notes for the summary; with `require_lift`, a refusal to publish lists that are
    not more useful than popularity."""
    return usefulness_notes(metrics, require_lift)


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def look_up_champion(ws_root: str) -> Champion | None:
    """The registered champion, if any."""
    return champion.find_champion(Workspace(workspace=Path(ws_root)).mlflow_uri)


@task(cache_policy=NO_CACHE)
def score_champion(
    found: Champion, fits: list[FamilyFit], user_features: UserFeatures, split: EventSplit,
    settings: SegmentSettings, k: int, text_cache: str,
) -> float | None:  # fmt: skip
    """The champion's configuration fit on this training part, scored on this holdout (reused from the
    family comparison when this run fit the same configuration)."""
    # At the K its objective was measured at, not the K it published.
    same = found.clusterer == settings.clusterer and found.fit_k == k and found.seed == settings.seed
    for fit in fits:
        if same and fit.family == found.family and fit.error is None:
            return fit.metrics.get("recall@10")
    champion_settings = settings.model_copy(
        update={"embedding": found.family, "clusterer": found.clusterer, "seed": found.seed}
    )
    fit = fit_family(found.family, user_features, split, champion_settings, found.fit_k, text_cache)
    return fit.metrics.get("recall@10")


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def register(ws_root: str, mlflow_run_id: str, run_id: str, settings: SegmentSettings, k: int,
             objective: float | None, fit_k: int) -> str:  # fmt: skip
    """Register the published segmenter as a version of `user-segmenter` and make it the champion: `k` its
    published segments, `fit_k` the K its objective was measured at (a later run scores it again at that)."""
    uri = Workspace(workspace=Path(ws_root)).mlflow_uri
    return champion.register_champion(
        uri, mlflow_run_id, run_id, settings.embedding, settings.clusterer, k, settings.seed, objective, fit_k
    )


@task(cache_policy=NO_CACHE)
def compare_with_published(
    exports_dir: str, assignments: pl.DataFrame, embedding: Embedding, settings: SegmentSettings
) -> tuple[dict[str, float], list[str]]:
    """Drift from the published run (tasks/evaluate/drift.py): size PSI, users who changed segment, centroid
    shift; a warning line per measure past its threshold. Nothing when nothing is published yet."""
    snapshot = find_snapshot(Path(exports_dir))
    if snapshot is None:
        return {}, []
    previous = pl.read_parquet(snapshot.path("user_segments"), columns=["user_id", "segment_id"])
    drift = measure_drift(
        dict(zip(previous["user_id"], previous["segment_id"], strict=True)),
        dict(zip(assignments["user_id"], assignments["segment_id"], strict=True)),
        [str(u) for u in embedding.user_ids],
        embedding.vectors,
    )
    warnings = drift.warnings(settings.drift_max_psi, settings.drift_max_changed_share)
    k_before, k_now = previous["segment_id"].n_unique(), assignments["segment_id"].n_unique()
    if k_before != k_now:  # a K asked for or chosen anew: sizes and memberships shift by design
        warnings = [f"{line} (K = {k_now}, the published run's {k_before}: expected)" for line in warnings]
    return drift.metrics(), warnings


@task(cache_policy=NO_CACHE)
def micro_lists(
    user_features: UserFeatures, micro: MicroSegments, taste: Embedding, assignments: pl.DataFrame,
    settings: SegmentSettings,
) -> dict[str, pl.DataFrame]:  # fmt: skip
    """The micro-segments, their lists, every user's memberships and blended list, as tables."""
    return micro_tables(
        user_features, micro, taste, assignments, settings.n_recommendations, settings.n_user_recommendations
    )


@task(cache_policy=NO_CACHE)
def assign(
    embedding: Embedding, clusterer: Clusterer, taste: Embedding, user_features: UserFeatures
) -> tuple[pl.DataFrame, Reach]:
    """The segments' reach (tasks/segment/reach.py), and every user's segment, distance and how they were
    placed, as the saved segmenter assigns them."""
    events = seg.n_events(user_features)
    reach = seg.fit_reach(embedding, clusterer, taste, events)
    return seg.assignment_frame(embedding, clusterer, taste, reach, events), reach


@task(cache_policy=NO_CACHE)
def describe(
    embedding: Embedding,
    assignments: pl.DataFrame,
    clusterer: Clusterer,
    settings: SegmentSettings,
    source: str,
    sources_dir: str,
) -> dict[str, float]:
    """Intrinsic metrics, stability and (when the source has planted segments) agreement with them."""
    truth = resolve_source(source, Path(sources_dir)).truth()
    labels = assignments["segment_id"].to_numpy()
    return describe_segments(
        embedding, labels, settings.clusterer, clusterer.k, settings.seed, truth, seg.fit_options(settings)
    )


@task(cache_policy=NO_CACHE)
def profile_segments(
    warehouse_path: str, memory_limit: str, user_features: UserFeatures, embedding: Embedding,
    assignments: pl.DataFrame, micro: dict[str, pl.DataFrame], run_id: str, settings: SegmentSettings,
) -> list[dict]:  # fmt: skip
    """Stage user_segments, segment_recommendations and segment_profiles (labels, top lists) as `seg_*`."""
    con = connect_warehouse(warehouse_path, memory_limit)
    try:
        profile.store_features(con, user_features, embedding)
        profile.write_assignments(con, assignments)
        profile.build_recommendations(con, run_id, settings.n_recommendations)
        profile.build_profiles(con, run_id)
        publish.stage_user_segments(con, run_id)
        publish.stage_tables(con, micro, run_id)
        return con.sql("select * from seg_segment_profiles order by segment_id").pl().to_dicts()
    finally:
        con.close()


@task(cache_policy=NO_CACHE)
def validate_segments(warehouse_path: str, memory_limit: str, run_id: str, reports_dir: str) -> None:
    """The gate before publishing: a critical failure stops here, leaving the published tables as they were."""
    con = connect_warehouse(warehouse_path, memory_limit)
    try:
        result = validate_table(
            con, "published_segments", "seg_", run_id, Path(reports_dir), ValidationSettings()
        )
    finally:
        con.close()
    if not result.success:
        raise ValidationFailedError(result.describe_failures())


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def save_segmenter(segmenter: Segmenter, profiles: list[dict], workspace_root: str, run_id: str) -> str:
    """The fitted segmenter, with its segment labels, saved in the workspace."""
    labelled = segmenter.with_labels({p["segment_id"]: p["label"] for p in profiles})
    return str(labelled.save(seg.segmenter_path(workspace_root, run_id)))


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def track(
    ws_root: str, run_id: str, params: dict, metrics: dict, embedding: Embedding, assignments: pl.DataFrame,
    sweep: Sweep, k: int, profiles: list[dict], segmenter_path: str, example: pa.Table, fits: list[FamilyFit],
    families: list[dict], train_model: FeatureModel, clusterer_epochs: list[dict[str, float]],
) -> tuple[str, dict[str, bytes]]:  # fmt: skip
    """Log the run to MLflow (params, metrics, charts, the segmenter and every family's embedder as pyfunc
    models, with `example`, a few events, as their input example, and a trained clusterer's epochs); returns
    its run id."""
    import json

    from tasks.track.pyfunc import FamilyModel  # imports MLflow: only when a run is tracked

    ws = Workspace(workspace=Path(ws_root))
    figures = {
        "segment_sizes.png": charts.sizes_chart(
            [f"{p['segment_id']}: {p['label']}" for p in profiles], [p["size"] for p in profiles]
        ),
        "projection.png": charts.projection_chart(embedding.vectors, assignments["segment_id"].to_numpy()),
    }
    if sweep.people:
        figures = {"k_sweep.png": charts.k_sweep_chart(sweep.people, k), **figures}
    tables = {
        "segment_profiles.json": json.dumps(profiles, indent=2, default=str),
        "k_sweep.json": json.dumps(sweep.people, indent=2),
        "micro_k_sweep.json": json.dumps(sweep.micro, indent=2),
        "families.json": json.dumps(families, indent=2),
    }
    example = pl.from_arrow(example).to_pandas()
    mlflow_run_id = tracking.log_run(
        ws.mlflow_uri, ws.mlartifacts_dir, run_id, params, metrics,
        f"{params['segments']['embedding']}/{params['segments']['clusterer']}", {**figures, **tables},
        segmenter_path=segmenter_path, input_example=example,
        families=[
            tracking.FamilyRun(f.family, f.metrics, f.epochs, f.embedding, FamilyModel(train_model, f.embedder))
            for f in fits if f.error is None
        ],
        clusterer_epochs=clusterer_epochs,
    )  # fmt: skip
    return mlflow_run_id, figures


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def publish_segments(
    warehouse_path: str,
    memory_limit: str,
    exports_dir: str,
    run: dict,
    segmenter_path: str,
    keep_exports: int,
) -> str:
    """Write exports/<run_id>/, swap the published tables in one transaction, switch exports/current, then
    delete all but the `keep_exports` newest export folders."""
    con = connect_warehouse(warehouse_path, memory_limit)
    try:
        if publish.published_folder(con) != run["run_id"]:  # a retry after the swap committed only switches
            publish.write_exports(con, Path(exports_dir), run["run_id"], Path(segmenter_path), run)
            publish.swap_published(con, run)
    finally:
        con.close()
    current = publish.switch_current_export(Path(exports_dir), run["run_id"])
    publish.prune_exports(Path(exports_dir), keep_exports)
    return str(current)


@task(cache_policy=NO_CACHE)
def published_run(warehouse_path: str, memory_limit: str) -> str | None:
    """The run whose segments the published tables hold (None before the first publish)."""
    con = connect_warehouse(warehouse_path, memory_limit)
    try:
        return publish.published_folder(con)
    finally:
        con.close()


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def mark_published(ws_root: str, mlflow_run_id: str) -> None:
    """Tag the MLflow run as published (it stays `false` when a run stops between tracking and publishing)."""
    tracking.mark_published(Workspace(workspace=Path(ws_root)).mlflow_uri, mlflow_run_id)


@task(cache_policy=NO_CACHE)
def discard_staged(warehouse_path: str, memory_limit: str) -> None:
    """Drop the staged `seg_*` tables (after a publish, or when a run stops before it)."""
    con = connect_warehouse(warehouse_path, memory_limit)
    try:
        publish.drop_staged(con)
    finally:
        con.close()


@flow(name="segment-users")
def segment_users(
    source: str = "demo",
    workspace: str | None = None,
    settings: SegmentSettings | None = None,
    max_bad_fraction: Annotated[float, Field(ge=0, le=1)] = 0.05,
) -> RunSummary:
    """Ingest a source, then build, evaluate and publish user segments for recommenders.

    Args:
        source: Where events come from: demo, demo:N, demo:N:titles, movielens:DIR or the path of a source
            spec (.toml).
        workspace: The workspace folder (default: env SEGFLOW_WORKSPACE, else ./workspace, relative to the
            worker's working directory).
        settings: How segments are made (embedding families, clusterer, K, micro-segments, training budget,
            champion gate); every field has its own description and default.
        max_bad_fraction: Reject a file whose share of bad rows is above this (0 to 1).
    """
    settings = settings or SegmentSettings()
    ws = open_workspace(workspace)
    run_id = new_id()
    warehouse, memory = str(ws.warehouse_path), ws.duckdb_memory_limit
    encoding = None  # the item texts encoded ahead, while other stages work (encode_item_texts)

    def texts_ready(family: str) -> list:
        return [encoding] if encoding is not None and family in READS_ITEM_TEXT else []

    with hold_workspace(ws):
        restored = finish_interrupted_publish(warehouse, memory, str(ws.exports_dir))
        report = ingest_events(source=source, workspace=str(ws.root), max_bad_fraction=max_bad_fraction)
        if settings.timezone is None:  # the users' clock: the source's local time (None: UTC, unnamed)
            settings = settings.model_copy(update={"timezone": report.timezone})
        try:
            events, items = load_events(warehouse, memory, settings)
            split = split_holdout(events, settings.seed)
            model, user_features = features(events, items, settings, "all")
            # From here the events are read only through the features (which keep the columns sequences
            # need): the full table goes, and a copy of its first rows stays as the models' input example
            # (a slice would keep every event alive). At 25M events: 0.9 of 1.8 GB freed for the rest.
            example = events.take(list(range(min(20, events.num_rows))))
            type_notes = event_type_notes(events, settings.weights.other)
            # The share of events the UTC clock measures because nobody named another (profile.clock_notes).
            unzoned = (
                0.0 if settings.timezone else events.column("timezone").null_count / max(events.num_rows, 1)
            )
            del events
            names, skipped = list_families(settings, split.train, items)
            text_cache = str(ws.root / "cache" / "item_text_vectors.parquet")
            if any(family in READS_ITEM_TEXT for family in names):  # every item text the run will meet
                encoding = encode_item_texts.submit(user_features.items, text_cache, settings.accelerator)
            k, micro_k, personal_weight, sweep = choose_segment_count(split.train, items, settings)
            settings = settings.model_copy(update={"personal_weight": personal_weight})

            train_model, train_features = features(split.train, items, settings, "train")
            run_context = FlowRunContext.get()  # None when the body runs outside a flow run (.fn)
            if run_context is not None and runs_in_parallel(run_context.task_runner):  # the families at once
                futures = [
                    embed_family.submit(
                        family, train_features, split, settings, k, text_cache, wait_for=texts_ready(family)
                    )
                    for family in names
                ]
                fits = [future.result() for future in futures]
            else:
                fits = [
                    embed_family(
                        family, train_features, split, settings, k, text_cache, wait_for=texts_ready(family)
                    )
                    for family in names
                ]
            chosen, families = choose_embedding(fits, skipped)
            settings = settings.model_copy(update={"embedding": chosen})
            chosen_fit = next(f for f in fits if f.family == chosen)
            train_embedding = chosen_fit.embedding
            train_clusterer = cluster(train_embedding, settings, k, "train")
            train_micro, train_taste = micro_segments(train_features, settings, micro_k, "train")
            metrics = evaluate(
                train_features, train_embedding, train_clusterer, train_micro, train_taste, split
            )
            reused = reused_fit(chosen_fit, split)
            k_notes = [note for note in [k_note(sweep.people)] if note] if sweep.people else []
            # A refusal (--require-lift) comes before anything else.
            useful = check_usefulness(metrics, settings.require_lift)
            notes = [
                *restored_notes(restored), *type_notes, *sample_notes(split), *k_notes,
                *([reuse_note(chosen, split)] if reused is not None else []), *time_budget_notes(fits),
            ]  # fmt: skip
            n_fit_notes = len(notes)  # the notes about how the run fit; usefulness and the champion's after
            objective = metrics.get("segments/recall@10")
            found = look_up_champion(str(ws.root))
            champion_score = (
                score_champion(found, fits, train_features, split, settings, k, text_cache)
                if found is not None and objective is not None
                else None
            )
            verdict = champion.judge(objective, found, champion_score, settings.force)
            if not verdict.publish:  # the lists it names are not the ones published
                useful = usefulness_notes(metrics, False, published=False)
            notes = [*notes, *useful, *([verdict.note] if verdict.note else [])]

            embedder, embedding = embed(user_features, settings, "all", text_cache, reused)
            clusterer = cluster(embedding, settings, k, "all")
            merged = merged_note(k, clusterer, len(embedding.vectors), settings)
            micro, taste = micro_segments(user_features, settings, micro_k, "all")
            assignments, reach = assign(embedding, clusterer, taste, user_features)
            metrics |= reach_metrics(reach, assignments)
            metrics |= describe(embedding, assignments, clusterer, settings, source, str(ws.sources_dir))
            fitted = [
                *merged,
                *holdout_k_notes(metrics),
                *stability_notes(metrics),
                *reach_notes(metrics, assignments.height),
            ]
            notes = [
                *notes[:n_fit_notes],
                *fitted,
                *notes[n_fit_notes:],
            ]  # beside the K note, before the verdict
            metrics["micro_k"] = float(micro.clusterer.k)
            metrics["personal_weight"] = float(settings.personal_weight)
            drift, drift_warnings = compare_with_published(
                str(ws.exports_dir), assignments, embedding, settings
            )
            metrics |= drift
            notes = [*notes, *(f"drift: {line}" for line in drift_warnings)]
            micro_frames = micro_lists(user_features, micro, taste, assignments, settings)

            profiles = profile_segments(
                warehouse, memory, user_features, embedding, assignments, micro_frames, run_id, settings
            )
            notes = [*notes, *profile.clock_notes(profiles, unzoned)]
            validate_segments(warehouse, memory, run_id, str(ws.reports_dir / "validation"))
            segmenter_path = save_segmenter(
                Segmenter(model, embedder, clusterer, settings, micro, reach=reach),
                profiles,
                str(ws.root),
                run_id,
            )
            params = {
                "source": source,
                "max_bad_fraction": max_bad_fraction,
                # As chosen (auto K, micro-K, family and personal weight resolved), so runs compare in MLflow
                # by what they did; the requested ones are in the segmenter's settings.
                "segments": settings.model_dump()
                | {
                    "k": clusterer.k,
                    "micro_k": micro.clusterer.k,
                    "timezone": settings.timezone or "UTC (none named)",
                },
                "clusterer": tracking.hyperparameters(clusterer),  # DEC's width, gamma, tol and training
            }
            mlflow_run_id, figures = track(
                str(ws.root), run_id, params, metrics, embedding, assignments, sweep, clusterer.k, profiles,
                segmenter_path, example, fits, families, train_model,
                getattr(clusterer, "epochs", []),  # a clusterer that trains (DEC) keeps its epochs
            )  # fmt: skip
            run = {
                "run_id": run_id, "created_at": utc_now(), "source": report.source,
                "embedding": settings.embedding, "clusterer": settings.clusterer, "k": clusterer.k,
                "metrics": metrics, "mlflow_run_id": mlflow_run_id,
            }  # fmt: skip
            if verdict.publish:
                try:
                    current = publish_segments(
                        warehouse, memory, str(ws.exports_dir), run, segmenter_path, settings.keep_exports
                    )
                finally:  # the tables are this run's once the swap committed, whether or not the switch failed
                    if published_run(warehouse, memory) == run_id:
                        mark_published(str(ws.root), mlflow_run_id)
                        register(str(ws.root), mlflow_run_id, run_id, settings, clusterer.k, objective, k)
            else:
                current = "not published (the champion's segments stay)"
            publish.prune_segmenters(Path(segmenter_path).parent, settings.keep_exports, Path(segmenter_path))
        finally:
            if encoding is not None:  # no encoding of this run goes on writing once the workspace is let go
                encoding.wait()
            discard_staged(warehouse, memory)
    report_path = ws.reports_dir / f"run-{run_id}.html"
    locations = {
        "warehouse": str(ws.warehouse_path),
        # A later publish or scoring points exports/current elsewhere: the report names this run's own folder.
        "exports": f"{current} (now {ws.exports_dir / run_id})" if verdict.publish else current,
        "segmenter": segmenter_path,
        "run report": str(report_path),
        "validation reports": str(ws.reports_dir / "validation" / "index.html"),
        "MLflow UI": f"mlflow ui --backend-store-uri {ws.mlflow_uri} --workers 1",
        "MLflow model": f"runs:/{mlflow_run_id}/segmenter",
    }
    write_run_report(
        report_path, run_id, locations, profiles, metrics, figures, notes, families,
        micro_frames["micro_segments"].to_dicts(),
    )  # fmt: skip
    create_markdown_artifact(
        key="segment-summary",
        markdown=_markdown(run_id, profiles, metrics, locations, notes, families),
        description=f"segflow run {run_id}",
    )
    create_table_artifact(
        key="segments",
        table=[
            {
                "segment": p["segment_id"],
                "label": p["label"],
                "users": p["size"],
                "share": round(p["share"], 4),
                "top categories": ", ".join(p["top_categories"] or []),
            }
            for p in profiles
        ],  # fmt: skip
        description=f"segments of run {run_id}" + ("" if verdict.publish else " (not published)"),
    )
    create_link_artifact(
        key="run-report", link=report_path.resolve().as_uri(), link_text=f"run report {run_id}",
        description="The run's HTML report: segments, metrics, the families compared, charts",
    )  # fmt: skip
    return RunSummary(
        run_id, report.source, report, profiles, metrics, locations, notes, families, verdict.publish
    )


def segment_users_with_runner(settings: SegmentSettings):
    """`segment_users` on the task runner `settings` name (`thread`: the flow as it is)."""
    if settings.task_runner == "thread":
        return segment_users
    return segment_users.with_options(
        task_runner=make_task_runner(settings.task_runner, settings.cluster_address)
    )


@flow(name="segment-users-on-cluster")
def segment_users_on_cluster(
    source: str = "demo",
    workspace: str | None = None,
    settings: SegmentSettings | None = None,
    max_bad_fraction: Annotated[float, Field(ge=0, le=1)] = 0.05,
    task_runner: Literal["dask", "ray"] = "dask",
    cluster_address: str | None = None,
) -> RunSummary:
    """`segment-users` with its independent tasks (the embedding families) run in parallel on a cluster.

    Args:
        source: As segment-users.
        workspace: As segment-users; the cluster's workers must reach the same folder.
        settings: As segment-users (its task_runner and cluster_address are replaced by the two below).
        max_bad_fraction: As segment-users.
        task_runner: dask (prefect-dask) or ray (prefect-ray, the `[ray]` extra).
        cluster_address: The Dask scheduler (tcp://host:8786) or Ray cluster (ray://host:10001); none: a
            local cluster started for the run.
    """
    settings = (settings or SegmentSettings()).model_copy(
        update={"task_runner": task_runner, "cluster_address": cluster_address}
    )
    return segment_users_with_runner(settings)(
        source=source, workspace=workspace, settings=settings, max_bad_fraction=max_bad_fraction
    )


def _markdown(
    run_id: str, profiles: list[dict], metrics: dict, locations: dict, notes: list[str], families: list[dict]
) -> str:
    lines = [f"# segflow run {run_id}", "", "| segment | label | users | share |", "|---|---|---|---|"]
    lines += [f"| {p['segment_id']} | {p['label']} | {p['size']} | {p['share']:.1%} |" for p in profiles]
    lines += ["", "| metric | value |", "|---|---|"] + [
        f"| {k} | {v} |" for k, v in headline_metrics(metrics)
    ]
    lines += ["", "| family | Recall@10 | silhouette | fit s | choice |", "|---|---|---|---|---|"]
    lines += [
        f"| {f['family']} | {figure(f['recall@10'])} | {figure(f['silhouette'])} | "
        f"{figure(f['fit_seconds'], 1)} | {choice(f)} |"
        for f in families
    ]
    lines += ["", *(f"> {note}" for note in notes)]
    lines += ["", *(f"- {k}: `{v}`" for k, v in locations.items())]
    return "\n".join(lines)
