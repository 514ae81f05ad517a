"""Which embedding families a run trains and which one it publishes.

Every candidate family is fit on the training part of the holdout split, clustered with the run's clusterer
and K, and scored by the Recall@10 of its segment lists on the held-out items. The best is published; a
family whose Recall@10 is below the best by less than one standard error of the paired per-user difference
is a tie (the difference is noise), and among ties the higher silhouette wins. On the demo the families'
Recall@10 differ by 0.001 with a standard error of about 0.003, while only the families that see how people
shop recover its planted segments: recall alone would pick by noise. `--embedding auto` trains the families
the data support: no text family without item words, no sequence family unless most users did at least
three things, and most events at a time of their own (Last.fm's plays carry one date for all, its tags the 1st
of a month: 5% of its events are at distinct times, the steps' order was item ids, and sequence scored a
quarter of the best family's Recall@10 there; ml-latest-small 85%, the demo 100%).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from models.common import EpochLog
from tasks.cluster.choose_k import silhouette
from tasks.embed.base import Embedder, Embedding
from tasks.embed.item_text import item_texts
from tasks.embed.registry import LEARNED
from tasks.evaluate.holdout import EventSplit
from tasks.evaluate.metrics import list_metrics, paired_gaps, segment_user_lists, user_recalls
from tasks.features.interactions import interaction_matrix
from tasks.features.user_features import UserFeatures
from tasks.segment.segmenter import fit_clusterer, fit_embedder, fit_options
from tasks.segment.settings import SegmentSettings

MIN_SEQUENCE_STEPS = 3  # the sequence family needs most users to have done at least this many things,
MIN_DISTINCT_TIMES = 0.5  # and most events at a time of their own (`ordered_share`), else no order to learn
OBJECTIVE = "segments/recall@10"


@dataclass(frozen=True)
class FamilyFit:
    """One family fit on the training part: its embedder and embedding, how it scored, how it trained."""

    family: str
    embedder: Embedder
    embedding: Embedding
    metrics: dict[str, float]
    epochs: list[dict[str, float]] = field(default_factory=list)  # train/loss, val/loss per epoch
    recalls: dict[str, float] = field(default_factory=dict)  # each held-out user's Recall@10
    error: str | None = None  # why the family could not be fit (when it was one of several)


def candidate_families(
    settings: SegmentSettings, events: pa.Table, items: pa.Table
) -> tuple[list[str], dict[str, str]]:
    """The families to train, and those auto leaves out with the reason. Named families are all trained:
    a family the data cannot support fails with its own message."""
    if settings.embedding != "auto":
        return list(settings.families), {}
    skipped = {}
    if not item_texts(items):
        skipped["text"] = "no item has a title, a category or a text"
    steps = pc.value_counts(events.column("user_id")).field("counts")
    if len(steps) and float(np.median(steps.to_numpy())) < MIN_SEQUENCE_STEPS:
        skipped["sequence"] = f"most users did fewer than {MIN_SEQUENCE_STEPS} things"
    elif len(steps) and (ordered := ordered_share(events)) < MIN_DISTINCT_TIMES:
        skipped["sequence"] = (
            f"most events share their time with another of their user's ({math.floor(ordered * 100)}% at "
            "distinct times): the order of the steps is not known"
        )
    return [f for f in settings.families if f not in skipped], skipped


def ordered_share(events: pa.Table) -> float:
    """Each user's distinct (non-null) times, summed, over all events: 1 when no two events of a user tie, 0
    without times. Weighted by events, not a median over users: a few heavy users whose events all tie are
    most of what a sequence model would read."""
    if "ts" not in events.column_names or events.num_rows == 0:
        return 0.0
    times = (
        pl.from_arrow(events.select(["user_id", "ts"]))
        .group_by("user_id")
        .agg(pl.col("ts").drop_nulls().n_unique().alias("distinct"))
    )
    return float(times["distinct"].sum()) / events.num_rows


def fit_family(
    family: str, features: UserFeatures, split: EventSplit, settings: SegmentSettings, k: int,
    text_cache: str | None = None,
) -> FamilyFit:  # fmt: skip
    """Fit `family` on the training part's features and score its segments on the held-out items."""
    log = EpochLog()
    options = fit_options(settings, logger=log, text_cache=Path(text_cache) if text_cache else None)
    started = time.perf_counter()
    embedder, embedding = fit_embedder(features, settings, family, options)
    seconds = time.perf_counter() - started
    labels = fit_clusterer(embedding, settings, k).predict(embedding.vectors)[0]
    metrics = {"fit_seconds": seconds, "dim": float(embedding.vectors.shape[1])}
    if len(np.unique(labels)) > 1:
        metrics["silhouette"] = silhouette(embedding.vectors, labels, settings.seed)
    recalls = {}
    if split.heldout:
        train = interaction_matrix(features.interactions, users=features.users)
        lists = segment_user_lists(train, split.heldout, embedding.user_ids, labels)
        metrics |= {name: value for name, value in list_metrics(train, split.heldout, lists).items()
                    if name in ("recall@10", "ndcg@10")}  # fmt: skip
        recalls = user_recalls(train, split.heldout, lists)
    if family in LEARNED:
        metrics["epochs"] = float(len(log.epochs()))
        metrics["stopped_by_time"] = float(any("stopped_by_time" in row for row in log.rows))
    return FamilyFit(family, embedder, embedding, metrics, log.epochs(), recalls)


def try_fit_family(
    family: str, features: UserFeatures, split: EventSplit, settings: SegmentSettings, k: int,
    text_cache: str | None = None,
) -> FamilyFit:  # fmt: skip
    """`fit_family`, but a family that fails is a row of the comparison with its error, not the end of the
    run: when several families compete, the others still can be published."""
    try:
        return fit_family(family, features, split, settings, k, text_cache)
    except Exception as error:  # noqa: BLE001 - any family's failure is reported, the run goes on
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        return FamilyFit(family, None, None, {}, error=f"{type(error).__name__}: {message}"[:200])


def choose_family(fits: list[FamilyFit]) -> str:
    """The family to publish: among those tied with the best Recall@10 (`tied_with_best`), the best
    silhouette. Without a holdout (no user of 5+ items), the best silhouette of all. Failed fits are left out;
    when every family failed, the first one's error is raised."""
    fitted = [fit for fit in fits if fit.error is None]
    if not fitted:
        raise RuntimeError(
            "no embedding family could be fit: " + "; ".join(f"{f.family}: {f.error}" for f in fits)
        )
    tied = tied_with_best(fitted)
    return max(tied, key=lambda fit: fit.metrics.get("silhouette", -1.0)).family


def tied_with_best(fits: list[FamilyFit]) -> list[FamilyFit]:
    """The families whose Recall@10 is below the best one's by at most one standard error of the paired
    per-user difference (every family, without a holdout)."""
    if not all(fit.recalls for fit in fits):
        return fits
    gaps = paired_gaps({fit.family: fit.recalls for fit in fits})
    return [fit for fit in fits if gaps[fit.family][0] <= gaps[fit.family][1]]


def time_budget_notes(fits: list[FamilyFit]) -> list[str]:
    """A note for the summary when the time budget stopped a family's fit: its epochs, so its vectors and
    maybe the family chosen, then depend on the machine's speed and load, not only on the seed and data."""
    stopped = [
        f"{fit.family} ({fit.metrics['epochs']:.0f} epochs)"
        for fit in fits
        if fit.metrics.get("stopped_by_time")
    ]
    if not stopped:
        return []
    return [
        f"the time budget stopped {', '.join(stopped)}: another run with the same seed may train "
        f"{'it' if len(stopped) == 1 else 'them'} differently (leave --time-budget out to bound fits by "
        "their epochs only)"
    ]


def comparison_rows(fits: list[FamilyFit], chosen: str, skipped: dict[str, str]) -> list[dict]:
    """The comparison table, as the summary, the report and MLflow show it: every family, best first."""
    failed = [fit for fit in fits if fit.error is not None]
    fits = [fit for fit in fits if fit.error is None]
    rows = [
        {
            "family": fit.family,
            "recall@10": _float(fit.metrics.get("recall@10")),
            "ndcg@10": fit.metrics.get("ndcg@10"),
            "silhouette": fit.metrics.get("silhouette"),
            "fit_seconds": fit.metrics["fit_seconds"],
            "epochs": fit.metrics.get("epochs"),
            "chosen": fit.family == chosen,
            "note": note,
        }
        for fit, note in zip(fits, comparison_notes(fits, chosen), strict=True)
    ]
    rows.sort(key=lambda r: (-(r["recall@10"] or 0.0), -(r["silhouette"] or -1.0)))
    rows += [
        {"family": family, "recall@10": None, "ndcg@10": None, "silhouette": None, "fit_seconds": None,
         "epochs": None, "chosen": False, "note": f"not trained: {reason}"}
        for family, reason in skipped.items()
    ]  # fmt: skip
    rows += [
        {"family": fit.family, "recall@10": None, "ndcg@10": None, "silhouette": None, "fit_seconds": None,
         "epochs": None, "chosen": False, "note": f"failed: {fit.error}"}
        for fit in failed
    ]  # fmt: skip
    return rows


def comparison_notes(fits: list[FamilyFit], chosen: str) -> list[str]:
    """Why each family was or was not chosen, with its gap to the best Recall@10 and that gap's standard error
    (paired per user): a tie is a gap within one standard error, so a user sees why a family with a lower
    figure was published, and why the choice can change between two runs whose figures barely differ."""
    if len(fits) < 2 or not all(fit.recalls for fit in fits):
        return ["" for _ in fits]
    gaps = paired_gaps({fit.family: fit.recalls for fit in fits})
    best = max(fits, key=lambda fit: np.mean(list(fit.recalls.values()))).family  # paired_gaps' reference
    tied = {fit.family for fit in tied_with_best(fits)}  # the rule choose_family applies
    notes = []
    for fit in fits:
        gap, error = gap_figures(*gaps[fit.family])
        if fit.family == best:
            notes.append("" if fit.family == chosen else "the best Recall@10")
        elif fit.family in tied:
            tie = f"tied with the best ({gap} below, within its standard error {error})"
            notes.append(f"{tie}; best silhouette of the tied" if fit.family == chosen else tie)
        else:
            notes.append(f"{gap} below the best (standard error {error})")
    return notes


def gap_figures(gap: float, error: float) -> tuple[str, str]:
    """A gap and its standard error, to 5 decimals (trailing zeros cut), or to as many more as they need to
    print apart: printed alike ("0.0009 below the best (standard error 0.0009)"), a user cannot see why one
    family was a tie and another not."""
    for decimals in range(5, 10):
        gap_text, error_text = (f"{v:.{decimals}f}".rstrip("0").rstrip(".") or "0" for v in (gap, error))
        if gap_text != error_text:
            break
    return gap_text, error_text


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)
