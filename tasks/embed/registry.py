"""Every embedder family by name: a new family is one module and one entry here."""

from __future__ import annotations

from collections.abc import Callable

from tasks.embed.autoencoder import AutoencoderEmbedder
from tasks.embed.base import Embedder, FitOptions
from tasks.embed.behaviour import BehaviourEmbedder
from tasks.embed.combined import CombinedEmbedder
from tasks.embed.fusion import FusionEmbedder
from tasks.embed.lightgcn import LightGCNEmbedder
from tasks.embed.sequence import SequenceEmbedder
from tasks.embed.svd import SvdEmbedder
from tasks.embed.text import TextEmbedder

EMBEDDERS: dict[str, Callable[[int], Embedder]] = {
    "behaviour": BehaviourEmbedder,
    "svd": SvdEmbedder,
    "combined": CombinedEmbedder,
    "sequence": SequenceEmbedder,
    "lightgcn": LightGCNEmbedder,
    "autoencoder": AutoencoderEmbedder,
    "text": TextEmbedder,
    "fusion": FusionEmbedder,
}


# The families that learn with Lightning: they take FitOptions (epochs, time budget, accelerator, logger).
LEARNED = ("autoencoder", "lightgcn", "sequence", "text")
# The families that read the items' text vectors (fusion: when most items have a title).
READS_ITEM_TEXT = ("text", "fusion")


def make_embedder(name: str, seed: int = 0, options: FitOptions | None = None) -> Embedder:
    """A new, unfitted embedder of the family `name`, trained as `options` say."""
    if name not in EMBEDDERS:
        raise ValueError(f"unknown embedding {name!r}; choose one of {', '.join(EMBEDDERS)}")
    embedder = EMBEDDERS[name](seed)
    if options is not None and hasattr(embedder, "configure"):
        embedder.configure(options)
    return embedder
