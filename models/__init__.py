"""Torch code only: per model family a plain `nn.Module` (the network), a LightningModule (loss, metrics,
optimiser) and a DataModule (reading a Parquet/Arrow snapshot handed over by tasks/). Nothing here imports
Prefect or DuckDB: the embedders in tasks/embed/ wrap these models, so they can be trained and tested alone."""
