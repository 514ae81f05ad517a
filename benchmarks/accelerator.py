"""Where the learned families train, and what the accelerator changes: each family fit with `--accelerator
cpu` and with `auto` (a GPU when the process sees one) on the same data and holdout, at a fixed K.

    .venv/bin/python benchmarks/accelerator.py [--data ../shared/data/ml-latest-small] [--k 7]
                                               [--families sequence,lightgcn,autoencoder,dec]
                                               [--accelerators cpu,auto] [--new-share 0.1]

Per family and accelerator: where it trained (`cuda` when the fit took CUDA memory, `cuda MB` its peak beyond
what was held before; else `cpu`), fit seconds (training and embedding the fit's users), epochs, the segments'
Recall@10 on the held-out items, and whether users the fit never saw embed (finite vectors of the fit's width:
every learned family must embed a new user without retraining), and whether the fitted embedder and
clusterer, pickled and loaded in a process that sees no GPU, segment those users (a model trained on a GPU
served from a CPU machine). Then, per family, the adjusted Rand index
between the first fit's segments and each other's (the same seed: 1 is the same segments; floating point on
another device gives other weights, so expect less across devices; `--accelerators cpu,auto,auto` shows
whether two fits on the GPU agree). `dec` is the DEC clusterer over the autoencoder: the autoencoder, then
DEC, both on the accelerator (its epochs are the autoencoder's). The data are read as benchmarks/train.py
reads them (MovieLens ratings, else the demo shop); a share of the users (`--new-share`, chosen by the seed)
is kept out of the fit as new users. The text family is left out unless named: it encodes every item first
with the packaged MiniLM.

Made for a session lent a GPU (the machine here has none): run it there, and see which rows say `cuda`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from train import load_events  # noqa: E402


def fit_row(family: str, accelerator: str, features, new_features, split, k: int) -> tuple[dict, object]:
    """One family fit on `accelerator`: its row of figures and its labels of the fit's users."""
    import numpy as np
    import torch

    from tasks.segment.families import fit_family
    from tasks.segment.segmenter import fit_clusterer
    from tasks.segment.settings import SegmentSettings

    embedding = "autoencoder" if family == "dec" else family
    clusterer = "dec" if family == "dec" else "kmeans"
    settings = SegmentSettings(embedding=embedding, clusterer=clusterer, accelerator=accelerator)
    cuda = torch.cuda.is_available()
    if cuda:  # what an earlier fit left allocated is not this one's
        torch.cuda.reset_peak_memory_stats()
        held = torch.cuda.memory_allocated()
    started = time.perf_counter()
    fit = fit_family(embedding, features, split, settings, k)
    seconds = time.perf_counter() - started
    clusterer = fit_clusterer(fit.embedding, settings, k)
    labels = clusterer.predict(fit.embedding.vectors)[0]
    new = fit.embedder.transform(new_features).vectors
    peak = torch.cuda.max_memory_allocated() - held if cuda else 0
    row = {
        "family": family, "accelerator": accelerator, "device": "cuda" if peak > 0 else "cpu",
        "cuda_mb": peak / 2**20, "seconds": seconds, "epochs": fit.metrics.get("epochs", float("nan")),
        "recall": fit.metrics.get("recall@10", float("nan")), "dim": fit.embedding.vectors.shape[1],
        "new_users": len(new),
        "new_ok": bool(np.isfinite(new).all() and new.shape[1] == fit.embedding.vectors.shape[1]),
        "reload": reload_on_cpu(fit.embedder, clusterer, new_features),
    }  # fmt: skip
    return row, labels


# Run in a process that sees no GPU: loads what a fit saved and segments the new users, as a CPU machine
# serving a model trained on a GPU would.
RELOAD = """
import pickle, sys
embedder, clusterer, features = (pickle.load(open(sys.argv[i], "rb")) for i in (1, 2, 3))
labels = clusterer.predict(embedder.transform(features).vectors)[0]
print(f"ok {len(labels)}")
"""


def reload_on_cpu(embedder, clusterer, features) -> str:
    """`ok N` when the fitted embedder and clusterer, saved and loaded where no GPU is seen, segment the N new
    users; else the error's last line."""
    import pickle
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="segflow-accelerator-") as folder:
        paths = [Path(folder) / name for name in ("embedder.pkl", "clusterer.pkl", "features.pkl")]
        for thing, path in zip((embedder, clusterer, features), paths, strict=True):
            path.write_bytes(pickle.dumps(thing, protocol=pickle.HIGHEST_PROTOCOL))
        done = subprocess.run(
            [sys.executable, "-c", RELOAD, *map(str, paths)], capture_output=True, text=True,
            env=os.environ | {"CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": os.pathsep.join(sys.path)},
        )  # fmt: skip
    lines = (done.stdout.strip() or done.stderr.strip() or "?").splitlines()
    return lines[-1][:60]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ml-latest-small")
    parser.add_argument("--k", type=int, default=7, help="segments (fixed, so the rows compare)")
    parser.add_argument("--families", default="sequence,lightgcn,autoencoder,dec")
    parser.add_argument("--accelerators", default="cpu,auto")
    parser.add_argument("--new-share", type=float, default=0.1, help="users kept out of the fit as new users")
    args = parser.parse_args()

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import torch
    from sklearn.metrics import adjusted_rand_score

    from tasks.evaluate.holdout import split_events
    from tasks.features.user_features import FeatureModel
    from tasks.segment.settings import SegmentSettings

    label, events, items = load_events(args.data)
    users = pc.unique(events.column("user_id"))
    new_mask = np.random.default_rng(0).random(len(users)) < args.new_share
    new_users = pa.array(np.asarray(users.to_pylist(), dtype=object)[new_mask].tolist(), pa.string())
    is_new = pc.is_in(events.column("user_id"), value_set=new_users)
    split = split_events(events.filter(pc.invert(is_new)), 0)
    model, features = FeatureModel.fit(split.train, items, SegmentSettings().weights)
    new_features = model.transform(events.filter(is_new))
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(
        f"{label}: {len(events):,} events, {len(features.users):,} users fit, {len(new_users):,} new; "
        f"K = {args.k}; GPU: {gpu}; torch {torch.__version__}, {torch.get_num_threads()} threads",
        flush=True,
    )
    print(
        f"{'family':<12}{'accel':<6}{'trained':<8}{'cuda MB':>8}{'fit s':>8}{'epochs':>7}{'recall@10':>10}"
        f"{'dim':>5}{'new users':>10}  {'new ok':<7}{'saved, loaded without GPU'}",
        flush=True,
    )
    for family in args.families.split(","):
        labels = []
        for accelerator in args.accelerators.split(","):
            try:
                row, found = fit_row(family, accelerator, features, new_features, split, args.k)
            except Exception as error:  # noqa: BLE001 - a family that fails is a row, the others still run
                print(f"{family:<12}{accelerator:<6}failed: {type(error).__name__}: {error}", flush=True)
                continue
            labels.append((accelerator, found))
            print(
                f"{row['family']:<12}{row['accelerator']:<6}{row['device']:<8}{row['cuda_mb']:>8.0f}"
                f"{row['seconds']:>8.1f}{row['epochs']:>7.0f}{row['recall']:>10.4f}{row['dim']:>5}"
                f"{row['new_users']:>10,}  {row['new_ok']!s:<7}{row['reload']}",
                flush=True,
            )
        if len(labels) > 1:
            (first, reference), *others = labels
            figures = ", ".join(
                f"{name} {adjusted_rand_score(reference, found):.3f}" for name, found in others
            )
            print(f"{family:<12}segments' ARI with the first ({first}) fit: {figures}", flush=True)


if __name__ == "__main__":
    main()
