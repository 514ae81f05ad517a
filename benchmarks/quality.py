"""Segment quality against baselines, by the recommendation protocol of tasks/evaluate/, per data set.

    .venv/bin/python benchmarks/quality.py [--data ../shared/data]

Prints one table: global popularity, a reference ItemKNN (item-item cosine over the binary training matrix,
a personalised recommender that segments cannot beat, only approach), every embedding family `auto` trained
(its segments fit on the training part with the run's K) and svd (ids only, the reference the
text family must beat on titles-only data), and what a default run publishes (segments,
micro-segments, blended per-user lists), for the demo shop, its titles-only variant and every MovieLens
folder found under --data. Reference figures for
ml-latest-small with this protocol: popularity 0.039, ItemKNN 0.0555, EASE 0.068 (Recall@10).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.preprocessing import normalize

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.workspace import DEFAULT_ENVIRONMENT, QUIET_ENVIRONMENT  # noqa: E402

for name, value in (DEFAULT_ENVIRONMENT | QUIET_ENVIRONMENT).items():  # the table alone, as `segflow run`
    os.environ.setdefault(name, value)


def itemknn_metrics(warehouse: Path) -> dict[str, float]:
    from tasks.evaluate.holdout import split_events
    from tasks.evaluate.metrics import ranking_metrics
    from tasks.features.events import read_warehouse_events
    from tasks.features.interactions import interaction_matrix
    from tasks.features.user_features import FeatureModel
    from tasks.segment.settings import SegmentSettings

    events, items = read_warehouse_events(warehouse)
    split = split_events(events)
    _, features = FeatureModel.fit(split.train, items, SegmentSettings().weights)
    train = interaction_matrix(features.interactions)
    columns = normalize(train.matrix.T.tocsr().astype(np.float64))
    similarity = (columns @ columns.T).tocsr()
    similarity.setdiag(0)
    scores = np.asarray((train.matrix @ similarity).todense())
    rows = {u: i for i, u in enumerate(train.users)}
    return ranking_metrics(train, split.heldout, scores, rows)


def svd_reference(warehouse: Path, k: int) -> dict[str, float]:
    """The svd family (item ids only, with the behaviour block, as for people), fit on the same training part
    and clustered with the run's K: what the text family must beat where items have only titles."""
    from tasks.evaluate.holdout import split_events
    from tasks.features.events import read_warehouse_events
    from tasks.segment.families import fit_family
    from tasks.segment.segmenter import fit_features
    from tasks.segment.settings import SegmentSettings

    events, items = read_warehouse_events(warehouse)
    split = split_events(events)
    settings = SegmentSettings(embedding="svd")
    _, features = fit_features(split.train, items, settings)
    return fit_family("svd", features, split, settings, k).metrics


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    sources = {"demo (3,000 users)": "demo", "demo titles-only": "demo:titles"}
    for folder in sorted(args.data.glob("*")) if args.data.is_dir() else []:
        if any((folder / name).exists() for name in ("ratings.csv", "ratings.dat", "u.data")):
            sources[folder.name] = f"movielens:{folder}"
    base = Path(tempfile.mkdtemp(prefix="segflow-quality-"))
    os.environ["PREFECT_HOME"] = str(base / "prefect")
    from flows.segment_users import segment_users
    from tasks.track.report import choice

    print(f"{'data set':<22}{'method':<22}{'Recall@10':>10}{'NDCG@10':>10}{'Recall@20':>10}   notes")
    for label, source in sources.items():
        workspace = base / re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")  # one per data set
        started = time.perf_counter()
        summary = segment_users(source=source, workspace=str(workspace))
        seconds = time.perf_counter() - started
        m = summary.metrics
        knn = itemknn_metrics(workspace / "warehouse.duckdb")
        planted = f", planted ARI {m['planted/ari']:.3f}" if "planted/ari" in m else ""
        rows = [
            ("popularity", m["popularity/recall@10"], m["popularity/ndcg@10"], m["popularity/recall@20"], ""),
            ("ItemKNN", knn["recall@10"], knn["ndcg@10"], knn["recall@20"], "personalised reference"),
        ]
        # Every family the run trained, as segments of people fit on the training part (the same K).
        rows += [
            (f"family {f['family']}", f["recall@10"], f["ndcg@10"], None,
             ", ".join(filter(None, [choice(f), f"fit {f['fit_seconds']:.1f} s"])))
            for f in summary.families if f["recall@10"] is not None
        ]  # fmt: skip
        if "svd" not in {f["family"] for f in summary.families}:
            svd = svd_reference(workspace / "warehouse.duckdb", int(m["k"]))
            rows.append(("family svd", svd["recall@10"], svd["ndcg@10"], None, "reference, not in auto"))
        rows += [
            ("segments", m["segments/recall@10"], m["segments/ndcg@10"], m["segments/recall@20"],
             f"K={int(m['k'])}, lift {m['lift/recall@10']:.2f}x{planted}, run {seconds:.0f} s"),
            ("micro-segments", m["micro/recall@10"], m["micro/ndcg@10"], m.get("micro/recall@20"),
             f"{int(m['micro_k'])} micro-segments"),
            ("blended per user", m["blended/recall@10"], m["blended/ndcg@10"], m.get("blended/recall@20"),
             f"lift {m['lift/blended/recall@10']:.2f}x"),
        ]  # fmt: skip
        for method, recall, ndcg, recall20, note in rows:
            at20 = f"{recall20:>10.4f}" if recall20 is not None else f"{'':>10}"
            print(f"{label:<22}{method:<22}{recall:>10.4f}{ndcg:>10.4f}{at20}   {note}", flush=True)


if __name__ == "__main__":
    main()
