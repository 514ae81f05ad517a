"""The `dec` clusterer: on blobs with clear structure it keeps k-means' ARI, its soft memberships are
distributions that agree with its labels, new vectors are placed without training, and save/load and seeds
reproduce the segments."""

from __future__ import annotations

import csv
from dataclasses import replace

import numpy as np
import pytest
from pytorch_lightning.loggers import CSVLogger
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from tasks.cluster.dec import TRAIN, DecClusterer
from tasks.cluster.kmeans import KMeansClusterer
from tasks.cluster.registry import make_clusterer
from tasks.embed.base import Embedding, FitOptions
from tasks.segment.segmenter import fit_clusterer
from tasks.segment.settings import SegmentSettings

FEW_EPOCHS = replace(TRAIN, max_epochs=3)


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """300 points in 6 dimensions from 4 well-separated blobs of unequal spread."""
    return make_blobs(
        n_samples=300, centers=4, n_features=6, cluster_std=[0.6, 1.0, 1.4, 2.0], random_state=4
    )


@pytest.fixture(scope="module")
def fitted(blobs) -> DecClusterer:
    return DecClusterer(0, dim=4, train=FEW_EPOCHS).fit(blobs[0], 4)


def test_dec_does_not_lower_the_ari_of_k_means_on_clear_blobs(blobs):
    x, truth = blobs
    kmeans = adjusted_rand_score(truth, KMeansClusterer(0).fit(x, 4).labels_)
    dec = DecClusterer(0).fit(x, 4)  # the defaults: full width, until labels settle
    assert adjusted_rand_score(truth, dec.labels_) >= kmeans >= 0.95
    assert dec.k == 4 and dec.centroids.shape == (4, 6)
    sizes = np.bincount(dec.labels_)
    assert (np.diff(sizes) <= 0).all()  # segment 0 is the largest, as with every clusterer


def test_soft_memberships_are_distributions_whose_largest_is_the_segment(fitted, blobs):
    x, _ = blobs
    memberships = fitted.soft_memberships(x)
    assert memberships.shape == (300, 4) and (memberships >= 0).all()
    np.testing.assert_allclose(memberships.sum(axis=1), 1.0, rtol=1e-6)
    assert (memberships.argmax(axis=1) == fitted.predict(x)[0]).all()
    assert (fitted.predict(x)[0] == fitted.labels_).all()
    # Points near a centre belong to it more clearly than points on the way between two.
    assert memberships.max(axis=1).mean() > 0.5


def test_new_vectors_get_the_segment_of_their_neighbours_and_the_distance_to_its_centroid(fitted, blobs):
    x, _ = blobs
    nudged = x + np.random.default_rng(0).normal(scale=0.01, size=x.shape)
    labels, distances = fitted.predict(nudged)
    assert (labels == fitted.labels_).all()
    np.testing.assert_allclose(
        distances, np.linalg.norm(nudged - fitted.centroids[labels], axis=1), rtol=1e-6
    )


def test_one_epoch_logs_both_losses_and_merged_segments_are_redefined(blobs, tmp_path):
    x, _ = blobs
    dec = DecClusterer(0, train=replace(TRAIN, max_epochs=1), logger=CSVLogger(tmp_path, name="dec")).fit(
        x, 4
    )
    (metrics,) = tmp_path.glob("dec/*/metrics.csv")
    rows = list(csv.DictReader(metrics.open()))
    assert {name for row in rows for name in ("train/loss", "val/loss") if row.get(name)} == {
        "train/loss",
        "val/loss",
    }
    merged = np.where(dec.labels_ == 3, 2, dec.labels_)
    dec.set_segments(x, merged)
    assert dec.k == 3 and dec.soft_memberships(x).shape == (300, 3)
    assert set(np.unique(dec.predict(x)[0])) == {0, 1, 2}


def test_save_load_and_the_seed_reproduce_segments_and_memberships(fitted, blobs, tmp_path):
    x, _ = blobs
    reloaded = DecClusterer.load(fitted.save(tmp_path / "dec.pkl"))
    for other in (reloaded, DecClusterer(0, dim=4, train=FEW_EPOCHS).fit(x, 4)):
        np.testing.assert_array_equal(other.predict(x)[0], fitted.predict(x)[0])
        np.testing.assert_array_equal(other.soft_memberships(x), fitted.soft_memberships(x))


def test_the_runs_accelerator_epochs_and_budget_reach_dec_but_not_its_processes(blobs):
    """`--accelerator cpu`, `--max-epochs`, `--time-budget` say how DEC trains too (a GPU machine trained DEC
    on its GPU under `--accelerator cpu`); `--devices` does not: DEC trains in one process."""
    options = FitOptions(max_epochs=2, time_budget_s=60.0, accelerator="cpu", devices=4, num_nodes=2)
    dec = make_clusterer("dec", 0, options)
    assert dec.train == replace(TRAIN, max_epochs=2, max_time_s=60.0, accelerator="cpu")
    settings = SegmentSettings(clusterer="dec", max_epochs=1, accelerator="cpu", min_segment_size=1)
    fitted = fit_clusterer(Embedding("blobs", np.arange(300).astype(str), blobs[0]), settings, 4)
    assert fitted.train.max_epochs == 1 and fitted.train.accelerator == "cpu" and fitted.k == 4


def test_the_targets_move_with_the_module_as_a_gpu_moves_it(blobs):
    """The targets and labels DEC trains towards are the module's buffers, so `.to()` takes them wherever the
    module goes: on an H200 they stayed on the CPU while a batch's row indices were on the GPU, and the first
    step failed ("indices should be either on cpu or on the same device as the indexed tensor"). The dtype
    stands in for the device here: a buffer follows both, a plain attribute neither."""
    import torch

    _, module = DecClusterer(0, dim=4, train=FEW_EPOCHS).training_parts(blobs[0].astype(np.float32), 4)
    assert {"targets", "labels"} <= dict(module.named_buffers()).keys()
    assert "targets" not in module.state_dict()  # made from the data at each epoch's end, not saved
    moved = module.to(torch.float64)
    assert moved.targets.dtype == torch.float64 and moved.targets.shape == (300, 4)
    x, rows = torch.as_tensor(blobs[0][:8]), torch.arange(8)
    assert torch.isfinite(moved.training_loss((x, rows)))
