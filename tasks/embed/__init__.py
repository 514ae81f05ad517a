"""Embedders: fitted objects that turn user features into one vector per user.

Every family implements the `Embedder` protocol (tasks/embed/base.py) and is one entry in EMBEDDERS
(tasks/embed/registry.py): `behaviour`, `svd` and `combined` (the default).
"""
