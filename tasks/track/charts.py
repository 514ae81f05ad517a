"""Charts for MLflow and the run report, as PNG bytes (matplotlib, no display needed)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def k_sweep_chart(sweep: list[dict], chosen_k: int) -> bytes:
    """What the people rule (tasks/cluster/choose_k.py) reads: silhouette and stability (left), the segment
    lists' Recall@10 on the inner split (right), and the K each floor gives (dotted) beside the K chosen."""
    from tasks.cluster.choose_k import k_floors

    figure, left = plt.subplots(figsize=(7, 4))
    ks = [row["k"] for row in sweep]
    left.plot(ks, [row["silhouette"] for row in sweep], "o-", color="#0969da", label="silhouette")
    stable = [row for row in sweep if "stability" in row]
    if stable:
        left.plot([r["k"] for r in stable], [r["stability"] for r in stable], "^", color="#8250df",
                  label="stability (ARI)")  # fmt: skip
    left.set_xlabel("K (number of segments)")
    left.set_ylabel("silhouette, stability", color="#0969da")
    right = left.twinx()
    right.plot(ks, [row["recall@10"] for row in sweep], "s-", color="#1a7f37", label="Recall@10")
    right.set_ylabel("Recall@10 (inner validation)", color="#1a7f37")
    by_structure, by_usefulness = k_floors(sweep)
    left.axvline(by_structure, color="#0969da", linestyle=":")
    if by_usefulness is not None:
        left.axvline(by_usefulness, color="#1a7f37", linestyle=":")
    left.axvline(chosen_k, color="#cf222e", linestyle="--")
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize=7, frameon=False
    )
    floors = f"structure {by_structure}" + (f", usefulness {by_usefulness}" if by_usefulness else "")
    left.set_title(f"K sweep: chose K = {chosen_k} (floors: {floors})")
    return _png(figure)


def projection_chart(vectors: np.ndarray, labels: np.ndarray, seed: int = 0, sample: int = 5000) -> bytes:
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(vectors), size=min(sample, len(vectors)), replace=False)
    points = (
        PCA(n_components=2, random_state=seed).fit_transform(vectors[rows])
        if vectors.shape[1] > 1
        else np.c_[vectors[rows], np.zeros(len(rows))]
    )
    figure, axes = plt.subplots(figsize=(6, 5))
    scatter = axes.scatter(points[:, 0], points[:, 1], c=labels[rows], cmap="tab20", s=6, alpha=0.8)
    axes.set_title("users (PCA of the embedding), coloured by segment")
    axes.legend(*scatter.legend_elements(num=None), title="segment", fontsize=7, loc="best", markerscale=0.8)
    return _png(figure)


def sizes_chart(labels: list[str], sizes: list[int]) -> bytes:
    figure, axes = plt.subplots(figsize=(7, 0.35 * len(sizes) + 1))
    axes.barh(range(len(sizes)), sizes, color="#8250df")
    axes.set_yticks(range(len(sizes)), labels, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("users")
    axes.set_title("segment sizes")
    return _png(figure)
