"""Evaluation: the holdout split (holdout.py) and the metrics (metrics.py): intrinsic cluster quality,
stability, and how well segment top lists predict held-out items."""
