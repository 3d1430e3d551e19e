"""``slug sweep``: a sweep's ``dvc.yaml`` run with its matrix / foreach items as cluster tasks.

1. ``dvc repro`` of the stages upstream of the sweep (the shared inputs), as usual;
2. every item stage of the sweep's own ``dvc.yaml`` that ``dvc status`` calls changed runs as one
   task on the engine (``pipeline.cluster``), its command exactly as DVC would run it;
3. ``dvc commit`` records the items that succeeded (their deps, outs and params in ``dvc.lock``),
   so DVC caches them as if ``dvc repro`` had run them;
4. ``dvc repro`` of the sweep then runs what is left (the table) and finds the items up to date.

A failed item is named with the end of its output and left changed; the others stay committed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from pipeline import cluster
from pipeline.errors import DataError


def _dvc(*args: str, root: Path) -> None:
    proc = subprocess.run(["dvc", *args], cwd=root, capture_output=True, text=True)
    if proc.returncode:
        raise DataError(f"dvc {' '.join(args[:2])} failed: {(proc.stderr or proc.stdout)[-800:]}")


def plan(target: str, root: Path) -> tuple[list[str], list[cluster.Job]]:
    """The upstream stages of ``target`` and the jobs of its changed item stages."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    dvcfile = (root / target).resolve()
    try:
        with Repo(str(root)) as repo:
            stages = repo.stage.collect(target, with_deps=True)
            own = [s for s in stages if Path(s.path).resolve() == dvcfile]
            items = [s for s in own if "@" in s.addressing]
            changed = repo.status(targets=[s.addressing for s in items]) if items else {}
    except DvcException as exc:
        raise DataError(f"dvc cannot read {target!r}: {exc}") from None
    if not items:
        raise DataError(f"{target} has no matrix or foreach stages to fan out")
    upstream = [s.addressing for s in stages if Path(s.path).resolve() != dvcfile]
    jobs = [cluster.Job(s.addressing, s.cmd, str(Path(s.wdir).resolve())) for s in items
            if s.addressing in changed]
    return upstream, jobs


def sweep(target: str, *, address: str | None, workers: int, threads: int, gpus: float,
          root: Path = Path(".")) -> list[cluster.Done]:
    root = root.resolve()
    upstream, _ = plan(target, root)
    if upstream:
        _dvc("repro", *upstream, root=root)
    _, jobs = plan(target, root)  # what the upstream run left changed
    print(f"sweep: {len(jobs)} item(s) of {target} to run as tasks "
          f"({workers if address is None else 'cluster'} worker(s), {threads} thread(s) each)")
    done = cluster.run_jobs(jobs, address=address, workers=workers, threads=threads, gpus=gpus)
    ok = [d.name for d in done if d.returncode == 0]
    if ok:
        _dvc("commit", "--force", *ok, root=root)
    failed = [d for d in done if d.returncode]
    if failed:
        raise DataError(f"{len(failed)} of {len(done)} sweep task(s) failed (the others are "
                        f"committed): " + "; ".join(f"{d.name} on {d.node}: {d.tail[-400:]}"
                                                    for d in failed))
    _dvc("repro", target, root=root)
    return done
