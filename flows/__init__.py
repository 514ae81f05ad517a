"""Prefect flows (orchestration only) and the `segflow` command line that starts them."""
