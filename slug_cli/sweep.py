"""``slug sweep``: a ``dvc.yaml``'s stages run as tasks on a Ray cluster, recorded by DVC.

1. ``dvc repro`` of the stages upstream of the file (the shared inputs, in other ``dvc.yaml``
   files), as usual;
2. the file's stages that ``dvc status`` calls changed run as tasks (``pipeline.cluster``), each
   stage's command exactly as DVC would run it, in waves: a stage waits for the changed stages it
   depends on (the UnlearnCanvas sweep: every target at once, then the table);
3. after each wave ``dvc commit`` records the stages that succeeded (deps, outs and params in
   ``dvc.lock``), so DVC caches them as if ``dvc repro`` had run them;
4. ``dvc repro`` of the file then finds everything up to date (or runs what a failure left).

A failed stage is named with the end of its output; what succeeded before it stays committed.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

from pipeline import cluster
from pipeline.errors import DataError


def _dvc(*args: str, root: Path) -> str:
    proc = subprocess.run(["dvc", *args], cwd=root, capture_output=True, text=True)
    if proc.returncode:
        raise DataError(f"dvc {' '.join(args[:2])} failed: {(proc.stderr or proc.stdout)[-800:]}")
    return proc.stdout


def plan(target: str, root: Path, waves: bool = True
         ) -> tuple[list[str], list[list[cluster.Job]]]:
    """The stages upstream of ``target``'s file, and (``waves``) the file's changed stages in
    waves; without ``waves`` no status is computed (hashing every output of a large sweep)."""
    import networkx as nx
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    dvcfile = (root / target).resolve()
    try:
        with contextlib.chdir(root), Repo(str(root)) as repo:  # DVC names stages from the cwd
            stages = repo.stage.collect(target, with_deps=True)
            own = [s for s in stages if Path(s.path).resolve() == dvcfile]
            asked = [s.addressing for s in own] if waves else []
            changed = repo.status(targets=asked) if asked else {}
            graph = repo.index.graph
            ups = {s.addressing: {u.addressing for u in nx.descendants(graph, s)} for s in own}
    except DvcException as exc:
        raise DataError(f"dvc cannot read {target!r}: {exc}") from None
    upstream = [s.addressing for s in stages if Path(s.path).resolve() != dvcfile]
    pending = {s.addressing: s for s in own if s.addressing in changed}
    order = []
    while pending:
        ready = [a for a in pending if not ups[a] & pending.keys()]
        order.append([cluster.Job(a, pending[a].cmd, str(Path(pending[a].wdir).resolve()))
                      for a in ready])
        for a in ready:
            del pending[a]
    return upstream, order


def sweep(target: str, *, address: str | None, workers: int, threads: int, gpus: float,
          root: Path = Path(".")) -> tuple[list[cluster.Done], int]:
    """The tasks' results and how many stages the closing ``dvc repro`` still ran (0 when every
    wave was committed)."""
    root = root.resolve()
    upstream, _ = plan(target, root, waves=False)
    if upstream:
        _dvc("repro", *upstream, root=root)
    _, waves = plan(target, root)  # what the upstream run left changed
    print(f"sweep: {sum(map(len, waves))} stage(s) of {target} to run as tasks in {len(waves)} "
          f"wave(s) ({workers if address is None else 'cluster'} worker(s), {threads} thread(s) "
          f"each)")
    done: list[cluster.Done] = []
    with cluster.engine(address, workers, threads, gpus) if waves else contextlib.nullcontext() as run:
        for jobs in waves:
            done += (ran := run(jobs))
            if ok := [d.name for d in ran if d.returncode == 0]:
                _dvc("commit", "--force", *ok, root=root)
            if failed := [d for d in ran if d.returncode]:
                raise DataError(f"{len(failed)} of {len(ran)} task(s) of a wave failed (what "
                                f"succeeded is committed): " + "; ".join(
                                    f"{d.name} on {d.node}: {d.tail[-400:]}" for d in failed))
    reran = _dvc("repro", target, root=root).count("Running stage")
    return done, reran
