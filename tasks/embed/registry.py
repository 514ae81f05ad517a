"""Every embedder family by name: a new family is one module and one entry here.

The entries name each class by where it lives and are imported on first use: checking a family's name (the
CLI's options, SegmentSettings) must not import torch and Lightning, which take 10 s here.
"""

from __future__ import annotations

import importlib

from tasks.embed.base import Embedder, FitOptions

EMBEDDERS: dict[str, str] = {
    "behaviour": "tasks.embed.behaviour:BehaviourEmbedder",
    "svd": "tasks.embed.svd:SvdEmbedder",
    "combined": "tasks.embed.combined:CombinedEmbedder",
    "sequence": "tasks.embed.sequence:SequenceEmbedder",
    "lightgcn": "tasks.embed.lightgcn:LightGCNEmbedder",
    "autoencoder": "tasks.embed.autoencoder:AutoencoderEmbedder",
    "text": "tasks.embed.text:TextEmbedder",
    "fusion": "tasks.embed.fusion:FusionEmbedder",
}


# The families that learn with Lightning: they take FitOptions (epochs, time budget, accelerator, logger).
LEARNED = ("autoencoder", "lightgcn", "sequence", "text")
# The families that read the items' text vectors (fusion: when most items have a title).
READS_ITEM_TEXT = ("text", "fusion")


def make_embedder(name: str, seed: int = 0, options: FitOptions | None = None) -> Embedder:
    """A new, unfitted embedder of the family `name`, trained as `options` say."""
    if name not in EMBEDDERS:
        raise ValueError(f"unknown embedding {name!r}; choose one of {', '.join(EMBEDDERS)}")
    embedder = load_class(EMBEDDERS[name])(seed)
    if options is not None and hasattr(embedder, "configure"):
        embedder.configure(options)
    return embedder


def load_class(where: str) -> type:
    """The class a registry entry names ("package.module:Class")."""
    module, name = where.split(":")
    return getattr(importlib.import_module(module), name)
