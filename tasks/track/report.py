"""The run report: one self-contained HTML page (charts inlined as PNG data) with the segments, the metrics
and where everything is."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from validation.report import html_page

HEADLINE = (
    ("blended/recall@10", "Recall@10 (blended per-user lists)"),
    ("micro/recall@10", "Recall@10 (micro-segment lists)"),
    ("segments/recall@10", "Recall@10 (segment lists)"),
    ("popularity/recall@10", "Recall@10 (popularity)"),
    ("itemknn/recall@10", "Recall@10 (ItemKNN, reference)"),
    ("lift/blended/recall@10", "lift over popularity (blended, Recall@10)"),
    ("lift/recall@10", "lift over popularity (segments, Recall@10)"),
    ("blended/ndcg@10", "NDCG@10 (blended per-user lists)"),
    ("segments/ndcg@10", "NDCG@10 (segment lists)"),
    ("popularity/ndcg@10", "NDCG@10 (popularity)"),
    ("segments/recall@20", "Recall@20 (segment lists)"),
    ("blended/recall@20", "Recall@20 (blended per-user lists)"),
    ("intrinsic/silhouette", "silhouette"),
    ("intrinsic/davies_bouldin", "Davies-Bouldin"),
    ("intrinsic/calinski_harabasz", "Calinski-Harabasz"),
    ("intrinsic/within_variance", "within-segment variance"),
    ("intrinsic/between_centroid_distance", "mean distance between centroids"),
    ("intrinsic/smallest_share", "smallest segment share"),
    ("intrinsic/largest_share", "largest segment share"),
    ("intrinsic/size_entropy", "size entropy (0-1)"),
    ("stability/ari", "stability (ARI, two seeds)"),
    ("stability/moved", "stability: share of users another seed puts elsewhere"),
    ("reach", "the segments' reach (Q3 + 3 IQR of the users' distances)"),
    ("planted/ari", "ARI vs planted segments"),
    ("planted/nmi", "NMI vs planted segments"),
    ("micro_k", "micro-segments"),
    ("personal_weight", "personal weight of the per-user lists (0: the micro-segment blend alone)"),
    ("drift/size_psi", "drift: segment size PSI vs the published run"),
    ("drift/changed_share", "drift: share of users who changed segment"),
    ("drift/centroid_shift", "drift: mean centroid shift (in segment radii)"),
)


def headline_metrics(metrics: dict[str, float]) -> list[tuple[str, str]]:
    return [(label, f"{metrics[key]:.4g}") for key, label in HEADLINE if key in metrics]


def write_run_report(
    path: Path,
    run_id: str,
    summary: dict,
    profiles: list[dict],
    metrics: dict[str, float],
    charts: dict[str, bytes],
    notes: list[str] = (),
    families: list[dict] = (),
    micro_segments: list[dict] = (),
) -> Path:
    # Items without categories (Last.fm's artists): no column of empty cells; the top items name the taste.
    by_category = any(p["top_categories"] for p in profiles)
    rows = "".join(
        f"<tr><td>{p['segment_id']}</td><td>{escape(p['label'])}</td><td>{p['size']:,}</td><td>{p['share']:.1%}</td>"
        + (f"<td>{escape(', '.join(p['top_categories']))}</td>" if by_category else "")
        + f"<td>{escape(', '.join(p['top_items'][:3]))}</td></tr>"
        for p in profiles
    )
    metric_rows = "".join(f"<tr><td>{escape(k)}</td><td>{v}</td></tr>" for k, v in headline_metrics(metrics))
    where = "".join(
        f"<tr><td>{escape(k)}</td><td><code>{escape(str(v))}</code></td></tr>" for k, v in summary.items()
    )
    images = "".join(
        f"<figure><img alt='{escape(name)}' style='max-width:100%' src='data:image/png;base64,"
        f"{base64.b64encode(png).decode()}'></figure>"
        for name, png in charts.items()
    )
    body = (
        f"<h1>segflow run <code>{escape(run_id)}</code></h1>"
        "<h2>Segments (for people)</h2><table><tr><th>id</th><th>label</th><th>users</th><th>share</th>"
        + ("<th>top categories</th>" if by_category else "")
        + f"<th>top items</th></tr>{rows}</table>"
        + "".join(f"<p><strong>{escape(note)}</strong></p>" for note in notes)
        + f"<h2>Metrics</h2><table><tr><th>metric</th><th>value</th></tr>{metric_rows}</table>"
        + _micro_table(micro_segments)
        + _families_table(families)
        + f"<h2>Where everything is</h2><table>{where}</table><h2>Charts</h2>{images}"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_page(f"segflow run {run_id}", body, extra_style=" figure { margin: 1rem 0; }"))
    return path


def figure(value: float | None, digits: int = 4) -> str:
    """A figure of the family comparison: blank when not measured (a family not trained, or failed)."""
    return "" if value is None else f"{value:.{digits}f}"


def choice(family: dict) -> str:
    """The last cell of a family's row in the comparison: published or not, and why (its note)."""
    if family["chosen"]:
        return f"published: {family['note']}" if family["note"] else "published"
    return family["note"]


def _families_table(families: list[dict]) -> str:
    """The embedding families the run compared on the holdout, best first; the published one marked."""
    if not families:
        return ""
    rows = "".join(
        f"<tr><td>{escape(f['family'])}</td><td>{figure(f['recall@10'])}</td><td>{figure(f['ndcg@10'])}</td>"
        f"<td>{figure(f['silhouette'], 3)}</td><td>{figure(f['fit_seconds'], 1)}</td>"
        f"<td>{escape(choice(f))}</td></tr>"
        for f in families
    )
    return (
        "<h2>Embedding families (segments fit on the training part, scored on the holdout)</h2>"
        "<table><tr><th>family</th><th>segment Recall@10</th><th>NDCG@10</th><th>silhouette</th>"
        f"<th>fit seconds</th><th>choice</th></tr>{rows}</table>"
    )


def _micro_table(micro_segments: list[dict], shown: int = 30) -> str:
    """The micro-segments for recommenders, largest first (the first `shown`)."""
    if not micro_segments:
        return ""
    ordered = sorted(micro_segments, key=lambda m: (-m["size"], m["micro_segment_id"]))
    by_category = any(m["top_categories"] for m in ordered)
    rows = "".join(
        f"<tr><td>{m['micro_segment_id']}</td><td>{m['size']:,}</td><td>{m['segment_id']}</td>"
        + (f"<td>{escape(', '.join(m['top_categories'] or []))}</td>" if by_category else "")
        + "</tr>"
        for m in ordered[:shown]
    )
    more = f"<p>and {len(ordered) - shown} more in micro_segments</p>" if len(ordered) > shown else ""
    return (
        f"<h2>Micro-segments (for recommenders): {len(ordered)}</h2>"
        "<table><tr><th>id</th><th>users</th><th>segment most members are in</th>"
        + ("<th>top categories</th>" if by_category else "")
        + f"</tr>{rows}</table>{more}"
    )
