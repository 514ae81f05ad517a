"""The champion: the published segmenter, registered in MLflow's model registry as `user-segmenter`, with the
alias `champion` on the version whose segments are published.

A run publishes (and moves the alias) only when its holdout objective, the Recall@10 of its segment lists,
is at least the champion's on the same holdout: the champion's configuration (family, clusterer, K, seed) is
fit on this run's training part and scored on this run's held-out items, so both are measured on the same
data. `force` publishes anyway. The published tables and the alias therefore always name the same run.
"""

from __future__ import annotations

from dataclasses import dataclass

MODEL_NAME = "user-segmenter"
ALIAS = "champion"
TAGS = ("family", "clusterer", "k", "seed", "run_id", "objective")


@dataclass(frozen=True)
class Champion:
    """The registered champion: its model version and the configuration it was fit with."""

    version: str
    mlflow_run_id: str
    run_id: str  # segflow's run id
    family: str
    clusterer: str
    k: int  # its published segments
    seed: int
    objective: float | None  # its own run's holdout Recall@10
    # The K its configuration is fit with (asked or chosen; segments under the minimum size merge after, so
    # it may publish fewer): its objective was measured at this K, and it is scored again at it.
    fit_k: int


@dataclass(frozen=True)
class Verdict:
    publish: bool
    note: str | None  # what the summary says about the champion; None when there is nothing to say


def find_champion(tracking_uri: str) -> Champion | None:
    """The version the alias names, or None (no registered model yet, or no alias)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(MODEL_NAME, ALIAS)
    except MlflowException:
        return None
    tags = version.tags
    if not all(f"segflow.{name}" in tags for name in TAGS):
        return None
    objective = tags["segflow.objective"]
    return Champion(
        version=str(version.version), mlflow_run_id=version.run_id, run_id=tags["segflow.run_id"],
        family=tags["segflow.family"], clusterer=tags["segflow.clusterer"], k=int(tags["segflow.k"]),
        seed=int(tags["segflow.seed"]), objective=None if objective == "" else float(objective),
        fit_k=int(tags.get("segflow.fit_k", tags["segflow.k"])),  # versions from before fit_k: their K
    )  # fmt: skip


def judge(
    objective: float | None, champion: Champion | None, champion_score: float | None, force: bool
) -> Verdict:
    """Whether this run publishes, and the line the summary shows about it."""
    if champion is None:
        return Verdict(True, None)
    versus = f"champion (run {champion.run_id}, {champion.family} + {champion.clusterer}, K = {champion.k})"
    if objective is None or champion_score is None:
        return Verdict(True, f"published without comparing with the {versus}: no holdout to compare on")
    figures = (
        f"segment Recall@10 {objective:.4f} against {champion_score:.4f} for the {versus} on this holdout"
    )
    if round(objective, 4) > round(champion_score, 4):
        return Verdict(True, f"new champion: {figures}")
    if round(objective, 4) == round(champion_score, 4):
        return Verdict(True, f"new champion, as good as the last (a tie goes to the newer run): {figures}")
    if force:
        return Verdict(True, f"published with --force although worse: {figures}")
    return Verdict(
        False,
        f"not published, the champion stays: {figures}; the published tables are unchanged "
        "(--force publishes anyway)",
    )


def register_champion(
    tracking_uri: str, mlflow_run_id: str, run_id: str, family: str, clusterer: str, k: int, seed: int,
    objective: float | None, fit_k: int,
) -> str:  # fmt: skip
    """Register the run's segmenter as a new version of `user-segmenter` and point `champion` at it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from tasks.track.pyfunc import MODEL_URI_TAG

    mlflow.set_tracking_uri(tracking_uri)
    values = {
        "family": family,
        "clusterer": clusterer,
        "k": k,
        "fit_k": fit_k,
        "seed": seed,
        "run_id": run_id,
    }
    values["objective"] = "" if objective is None else repr(float(objective))
    client = mlflow.MlflowClient()  # not mlflow.register_model: it prints to stderr whatever the log level
    try:
        client.create_registered_model(MODEL_NAME, description="segflow's published user segmenter")
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    model_uri = client.get_run(mlflow_run_id).data.tags[MODEL_URI_TAG]
    version = client.create_model_version(
        MODEL_NAME, model_uri, run_id=mlflow_run_id, model_id=model_uri.removeprefix("models:/"),
        tags={f"segflow.{name}": str(value) for name, value in values.items()},
    )  # fmt: skip
    client.set_registered_model_alias(MODEL_NAME, ALIAS, version.version)
    return str(version.version)
