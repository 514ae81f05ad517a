"""Features: per-user behaviour in SQL (sql/features/*.sql) and the wide user-feature frame in Polars.

`FeatureModel.fit` learns what a transform must not recompute from whatever data it is given (the reference
time for recency, category idf, item popularity, the item categories, the category columns);
`FeatureModel.transform` computes the same features for any events, old or new users alike.
"""
