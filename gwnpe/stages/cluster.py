"""Dask clients for the training-set stage: a local cluster, an existing scheduler, or Slurm.

The ``dask`` section of the config (see ``config/schema.yaml``) picks the kind:

``local``
    A :class:`distributed.LocalCluster` of ``n_workers`` single-threaded worker
    *processes* (LAL holds the GIL, so threads would not help), no dashboard.
``address``
    :class:`distributed.Client` connected to a running scheduler at ``dask.address``.
``slurm``
    A :class:`dask_jobqueue.SLURMCluster`, one worker process per Slurm job, scaled
    to ``n_workers`` jobs. Chunk files are written by the workers next to the
    output, so that folder must be on a file system shared with the worker nodes.

Workers started here are single-threaded for BLAS/OpenMP (``OMP_NUM_THREADS=1``
etc., which also makes torch use one thread), so that ``n`` workers use ``n`` cores.

Local worker processes are *spawned*, and Python's spawn re-runs the parent's
``__main__`` script in every child unless it is guarded by ``if __name__ ==
"__main__":``. Snakemake ``script:`` files are not guarded, so while a local
cluster runs :func:`dask_client` hides ``__main__.__file__`` (see
:func:`_main_script_hidden`): workers then start from a clean interpreter.
"""

from __future__ import annotations

import contextlib
import os
import logging
import sys
from collections.abc import Iterator

from ..errors import ClusterError

logger = logging.getLogger(__name__)

#: Environment of worker processes: one thread for every BLAS/OpenMP runtime.
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}

#: Seconds to wait for a connection to ``dask.address``.
CONNECT_TIMEOUT = 60.0
#: Seconds to wait for the first Slurm worker job to start (queue wait included).
SLURM_WORKER_TIMEOUT = 1800.0


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Keep spawned worker processes from re-running the parent's ``__main__`` script.

    ``multiprocessing`` (spawn and forkserver) re-imports the parent's main
    *file* in each child; an unguarded script (e.g. a Snakemake ``script:``)
    would run the whole stage again in every worker. Without ``__main__.__file__``
    the children skip that step. Modules run with ``python -m`` (``__spec__`` set)
    are left alone: spawn already handles them safely.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


@contextlib.contextmanager
def _environ_restored(keys: list[str]) -> Iterator[None]:
    """Restore ``os.environ[key]`` (or its absence) for ``keys`` on exit."""

    saved = {k: os.environ.get(k) for k in keys}
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def n_workers_for(dask_settings: dict, threads: int) -> int:
    """Number of workers (local) or Slurm jobs (slurm): ``dask.n_workers``, or ``threads`` when null."""
    n = dask_settings["n_workers"]
    return int(n) if n else max(int(threads), 1)


def slurm_cluster_kwargs(dask_settings: dict) -> dict:
    """Keyword arguments of :class:`dask_jobqueue.SLURMCluster` from the config's ``dask`` section.

    Parameters
    ----------
    dask_settings : dict
        Validated ``dask`` section (its ``slurm`` sub-section is used).

    Returns
    -------
    dict
        One worker process per job with ``cores`` threads, ``memory`` per job,
        ``walltime``, extra ``#SBATCH`` lines, single-threaded BLAS in the job
        script, and the scheduler's host when ``scheduler_host`` is set.
    """
    s = dask_settings["slurm"]
    kwargs = {
        "queue": s["queue"],
        "account": s["account"],
        "cores": int(s["cores"]),
        "processes": 1,
        "memory": s["memory"],
        "walltime": s["walltime"],
        "job_extra_directives": list(s["job_extra_directives"]),
        "job_script_prologue": [f"export {k}={v}" for k, v in SINGLE_THREAD_ENV.items()],
    }
    if s["scheduler_host"]:
        kwargs["scheduler_options"] = {"host": s["scheduler_host"]}
    return kwargs


def make_slurm_cluster(dask_settings: dict):
    """Construct (but do not scale: nothing is submitted) a :class:`dask_jobqueue.SLURMCluster`."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as exc:  # pragma: no cover - dask-jobqueue is a dependency
        raise ClusterError(f"dask.cluster is 'slurm' but dask_jobqueue cannot be imported: {exc}") from exc
    try:
        return SLURMCluster(**slurm_cluster_kwargs(dask_settings))
    except Exception as exc:
        raise ClusterError(
            f"could not set up the Slurm cluster from dask.slurm = {dask_settings['slurm']}: "
            f"{type(exc).__name__}: {exc}. Check dask.slurm.memory/walltime and dask.slurm.scheduler_host."
        ) from exc


@contextlib.contextmanager
def dask_client(dask_settings: dict, threads: int, timeout: float | None = None) -> Iterator:
    """Yield a :class:`distributed.Client` for the configured cluster; close everything on exit.

    Parameters
    ----------
    dask_settings : dict
        Validated ``dask`` section of the config (``cluster``, ``n_workers``,
        ``address``, ``slurm``).
    threads : int
        Threads given to the calling job; the number of workers when
        ``dask.n_workers`` is null.
    timeout : float, optional
        Seconds to wait for the scheduler (address: default :data:`CONNECT_TIMEOUT`)
        or for the first worker (slurm: default :data:`SLURM_WORKER_TIMEOUT`;
        local: 120 s).

    Raises
    ------
    ClusterError
        The scheduler cannot be reached, the cluster cannot start, or no worker
        arrives in time; the message names the ``dask.*`` key to fix.
    """
    from distributed import Client

    kind = dask_settings["cluster"]
    n = n_workers_for(dask_settings, threads)
    with contextlib.ExitStack() as stack:
        if kind == "local":
            from distributed import LocalCluster

            import dask

            stack.enter_context(_main_script_hidden())  # also covers workers the nanny restarts
            # Nannies copy their pre-spawn environment into this process's os.environ before
            # spawning (so that it is set before the worker imports numpy); restore ours on exit.
            pre_spawn = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **SINGLE_THREAD_ENV}
            stack.enter_context(_environ_restored(list(pre_spawn)))
            # Snakemake exports the rule's threads as OMP/OPENBLAS_NUM_THREADS, and dask lets an existing
            # variable win over its pre-spawn config: set them here so workers really are single-threaded
            # (otherwise the bytes of the training set depend on the rule's thread count).
            os.environ.update({k: str(v) for k, v in pre_spawn.items()})
            try:
                with dask.config.set({"distributed.nanny.pre-spawn-environ": pre_spawn}):
                    cluster = LocalCluster(
                        n_workers=n,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                        # no dashboard; the scheduler's small HTTP server (health, metrics) takes a free
                        # localhost port instead of 8787, so concurrent runs never clash
                        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                        # each worker gets an equal share of the machine's (or cgroup's) memory
                        memory_limit="auto",
                    )
            except Exception as exc:
                raise ClusterError(
                    f"could not start a local dask cluster of {n} worker processes: {type(exc).__name__}: {exc}."
                ) from exc
            stack.enter_context(cluster)
            client = stack.enter_context(Client(cluster))
            try:
                client.wait_for_workers(n, timeout=timeout or 120.0)
            except TimeoutError as exc:
                raise ClusterError(f"only {len(client.scheduler_info()['workers'])} of {n} local dask workers started.") from exc
            logger.info("local dask cluster: %d single-threaded worker processes", n)
        elif kind == "address":
            address = dask_settings["address"]
            if not address:
                raise ClusterError("dask.cluster is 'address' but dask.address is not set (e.g. tcp://host:8786).")
            t = timeout or CONNECT_TIMEOUT
            try:
                client = stack.enter_context(Client(address, timeout=t))
            except (OSError, TimeoutError) as exc:
                raise ClusterError(
                    f"could not connect to the dask scheduler at dask.address = '{address}' within {t:g} s "
                    f"({type(exc).__name__}: {exc}). Start the scheduler and workers, or fix dask.address."
                ) from exc
            logger.info("connected to dask scheduler %s (%d workers)", address, len(client.scheduler_info()["workers"]))
        elif kind == "slurm":
            cluster = stack.enter_context(make_slurm_cluster(dask_settings))
            client = stack.enter_context(Client(cluster))
            cluster.scale(jobs=n)
            t = timeout or SLURM_WORKER_TIMEOUT
            try:
                client.wait_for_workers(1, timeout=t)
            except TimeoutError as exc:
                raise ClusterError(
                    f"no dask worker started within {t:g} s after submitting {n} Slurm job(s) "
                    f"(dask.slurm = {dask_settings['slurm']}). Check the queue with squeue, the "
                    "partition/account (dask.slurm.queue/account) and the worker job logs; if the "
                    "workers cannot reach the scheduler, set dask.slurm.scheduler_host to an interface "
                    "they can reach."
                ) from exc
            logger.info("Slurm dask cluster: %d job(s) requested, first worker up", n)
        else:
            raise ClusterError(f"unknown dask.cluster '{kind}'; use local, address or slurm.")
        yield client


@contextlib.contextmanager
def optional_client(dask_settings: dict | None, threads: int) -> Iterator:
    """A :func:`dask_client` when the job has more than one thread and a ``dask`` section, else None
    (likelihoods then run in the job's own process)."""
    if int(threads) > 1 and dask_settings is not None:
        with dask_client(dask_settings, int(threads)) as client:
            yield client
    else:
        yield None
