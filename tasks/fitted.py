"""Saving and loading fitted objects (feature models, embedders, clusterers, segmenters) as one file each."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Self


class Saveable:
    """`save(path)` / `load(path)` for a fitted object: a pickle, written to a temporary name then renamed,
    so a reader never sees half a file."""

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        with open(partial, "wb") as handle:
            pickle.dump(self, handle, protocol=pickle.HIGHEST_PROTOCOL)
        partial.replace(path)
        return path

    @classmethod
    def load(cls, path: Path | str) -> Self:
        with open(path, "rb") as handle:
            loaded = pickle.load(handle)
        if not isinstance(loaded, cls):
            raise TypeError(f"{path} holds a {type(loaded).__name__}, not a {cls.__name__}")
        return loaded
