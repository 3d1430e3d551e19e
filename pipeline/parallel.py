"""An ordered map over worker processes on one machine: the shard scans (``filter``,
``build_sets``) and the tiny world's drawing. Results come back in input order, so what a stage
writes does not depend on the number of workers (byte for byte)."""

from __future__ import annotations

import multiprocessing as mp
from typing import Callable, Iterable, Iterator, TypeVar

from .progress import progress

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], jobs: Iterable[T], workers: int, desc: str,
                chunksize: int = 1) -> Iterator[R]:
    """``map(fn, jobs)`` with a progress bar, over ``workers`` processes when more than one
    (``fn`` and the jobs must pickle). A worker's exception is raised here, as in the serial
    map."""
    jobs = list(jobs)
    if workers <= 1 or len(jobs) <= 1:
        yield from progress(map(fn, jobs), total=len(jobs), desc=desc)
        return
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    with ctx.Pool(min(workers, len(jobs))) as pool:
        yield from progress(pool.imap(fn, jobs, chunksize=chunksize), total=len(jobs), desc=desc)
