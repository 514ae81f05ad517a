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
    figure, left = plt.subplots(figsize=(7, 3.6))
    ks = [row["k"] for row in sweep]
    left.plot(ks, [row["silhouette"] for row in sweep], "o-", color="#0969da", label="silhouette")
    left.set_xlabel("K (number of segments)")
    left.set_ylabel("silhouette", color="#0969da")
    right = left.twinx()
    right.plot(
        ks, [row["usefulness"] for row in sweep], "s-", color="#1a7f37", label="NDCG@10 (inner validation)"
    )
    right.set_ylabel("NDCG@10 (inner validation)", color="#1a7f37")
    left.axvline(chosen_k, color="#cf222e", linestyle="--")
    left.set_title(f"K sweep: chose K = {chosen_k}")
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
