"""The task runner a run's flow uses: Prefect's thread pool (the default), Dask (prefect-dask) or Ray
(prefect-ray), on a cluster at an address or on a local one started for the run."""

from __future__ import annotations

from typing import Literal

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

TaskRunnerName = Literal["thread", "dask", "ray"]


def make_task_runner(
    name: TaskRunnerName, address: str | None = None, n_workers: int | None = None
) -> TaskRunner:
    """A new task runner: `thread` runs the flow as it always ran; `dask` and `ray` connect to the cluster at
    `address` (a Dask scheduler `tcp://host:8786`; a Ray address `ray://host:10001` or `auto`) or start a
    local one of `n_workers` single-threaded processes (default: one per core)."""
    if name == "thread":
        return ThreadPoolTaskRunner()
    if name == "dask":
        import dask
        from prefect_dask import DaskTaskRunner

        if address:
            return DaskTaskRunner(address=address)
        # Workers this process starts are not daemonic, so that a fit there can start its DDP processes (a
        # daemonic process may not have children). Set for the process: the runner starts its cluster lazily.
        dask.config.set({"distributed.worker.daemon": False})
        # Single-threaded worker processes: threads sharing one interpreter would wait on each other's GIL.
        return DaskTaskRunner(
            cluster_kwargs={"n_workers": n_workers, "threads_per_worker": 1, "processes": True},
        )
    if name == "ray":
        try:
            from prefect_ray import RayTaskRunner
        except ImportError as error:
            raise ImportError(
                "the ray task runner needs prefect-ray: pip install -e '.[ray]' (ray is large, so it is an extra)"
            ) from error
        return RayTaskRunner(address=address) if address else RayTaskRunner()
    raise ValueError(f"unknown task runner {name!r}; choose thread, dask or ray")


def runs_in_parallel(runner: TaskRunner) -> bool:
    """Whether tasks submitted to `runner` should be: the thread pool keeps the flow's order and timing (a
    fit's time budget, torch's threads) as they always were, so a flow calls its tasks one after another."""
    return not isinstance(runner, ThreadPoolTaskRunner)
