"""Clusterers: fitted objects that group user vectors into segments and place any new vector in one.

Every family implements the `Clusterer` protocol (tasks/cluster/base.py) and is one entry in CLUSTERERS
(tasks/cluster/registry.py): `kmeans` (default), `hdbscan`, `agglomerative`. The choice of K is in
tasks/cluster/choose_k.py.
"""
