"""The segmenter: a fitted feature model, embedder and clusterer that assign any user a segment."""
