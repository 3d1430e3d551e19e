"""Independent commands of a sweep fanned out as tasks on a Ray cluster.

A sweep (the UnlearnCanvas targets, a list of concepts) is many commands that share nothing but
their inputs. ``engine`` runs each as one Ray task: ``num_cpus=threads`` (torch pinned to that
many threads, as in the serial run, so a target's numbers do not depend on where it ran) and
``num_gpus=gpus`` (1 on a GPU cluster: one GPU per target). The commands write their outputs where
the serial run would; on a cluster the repository must sit on a filesystem every node shares, at
the same path. Nothing here knows DVC: ``slug sweep`` (``slug_cli/sweep.py``) picks the commands
from a ``dvc.yaml`` and records the outputs with ``dvc commit``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from .errors import ParamsError
from .progress import progress


@dataclass(frozen=True)
class Job:
    name: str
    cmd: str  # a shell command line, run in ``cwd``
    cwd: str


@dataclass(frozen=True)
class Done:
    name: str
    returncode: int
    seconds: float
    tail: str  # the last lines of its output, for a failure's message
    node: str


def run_job(job: Job, threads: int) -> Done:
    """One command, torch and every OpenMP pool pinned to ``threads``; the Python that runs
    the tasks comes first on ``PATH`` (the ``python`` of a stage's command)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}"}
    start = time.time()
    proc = subprocess.run(job.cmd, shell=True, cwd=job.cwd, env=env, capture_output=True,
                          text=True)
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
    return Done(job.name, proc.returncode, round(time.time() - start, 2), tail, os.uname().nodename)


@contextlib.contextmanager
def engine(address: str | None = None, workers: int = 2, threads: int = 1, gpus: float = 0.0
           ) -> Iterator[Callable[[Sequence[Job]], list[Done]]]:
    """A Ray cluster for the duration; yields ``run(jobs)``, which runs every job as a task and
    returns their results in the jobs' order. ``address``: an existing cluster (``auto``,
    ``ray://host:10001``); ``None`` starts a local one of ``workers`` task slots."""
    if threads < 1 or workers < 1 or gpus < 0:
        raise ParamsError(f"threads and workers must be >= 1 and gpus >= 0 (got {threads}, "
                          f"{workers}, {gpus})")
    try:
        import ray
    except ImportError:
        raise ParamsError("the cluster engine is Ray: pip install 'slug-pipeline[cluster]'"
                          ) from None
    local = address is None
    if local:  # Ray starts its workers at niceness 15: a task then yields to any other job on
        os.environ.setdefault("RAY_worker_niceness", "0")  # the host (measured: 33.5 s vs 16 s)
    try:
        ray.init(address=address, num_cpus=workers * threads if local else None,
                 num_gpus=workers * gpus if local else None,
                 include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    except Exception as exc:  # noqa: BLE001 - Ray raises many kinds; the user gets one line
        raise ParamsError(f"cannot {'start a local' if local else f'reach the {address}'} Ray "
                          f"cluster: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    task = ray.remote(run_job).options(num_cpus=threads, num_gpus=gpus, max_retries=0)

    def run(jobs: Sequence[Job]) -> list[Done]:
        refs = {task.remote(job, threads): job.name for job in jobs}
        done: dict[str, Done] = {}
        pending = list(refs)
        with progress(total=len(jobs), desc="tasks") as bar:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    try:
                        done[refs[ref]] = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - the task's worker died: a failure
                        done[refs[ref]] = Done(refs[ref], -1, 0.0, f"{type(exc).__name__}: {exc}",
                                               "?")
                    bar.update(1)
        return [done[job.name] for job in jobs]

    try:
        yield run
    finally:
        ray.shutdown()


def run_jobs(jobs: Sequence[Job], **engine_kw) -> list[Done]:
    """``engine(**engine_kw)`` for one batch of jobs (none: no cluster is started)."""
    if not jobs:
        return []
    with engine(**engine_kw) as run:
        return run(jobs)
