"""What ``dvc repro TARGET`` would run, checked without running it: the stages upstream of the
target, which of them belong to the embedded default (``tiny/dvc.yaml``), and every input that
no planned stage writes and that does not exist. ``dvc repro --dry`` cannot say this on a fresh
setup: it stops at the first output an earlier stage has not written yet (DVC issue 9021)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import DataError

TINY = Path("tiny") / "dvc.yaml"


@dataclass
class Plan:
    stages: list[str]  # upstream of the target, the target included
    tiny: list[str]  # of those, the embedded default's
    missing: list[str]  # inputs nothing planned writes and that do not exist


def plan(target: str, root: Path = Path(".")) -> Plan:
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    root = root.resolve()
    try:
        with Repo(str(root)) as repo:
            stages = repo.stage.collect(target, with_deps=True)
    except DvcException as exc:
        raise DataError(f"dvc cannot plan {target!r}: {exc}") from None
    outs = [Path(o.fs_path) for s in stages for o in s.outs]

    def written(path: Path) -> bool:
        return any(path == o or o in path.parents or path in o.parents for o in outs)

    missing = sorted({os.path.relpath(d.fs_path, root) for s in stages for d in s.deps
                      if not Path(d.fs_path).exists() and not written(Path(d.fs_path))})
    names = [s.addressing for s in stages]
    tiny = [s.addressing for s in stages if Path(s.path).resolve() == root / TINY]
    return Plan(names, tiny, missing)


def describe(target: str, world: str, root: Path = Path(".")) -> str:
    """The ``slug check`` line for ``--target``; raises on a problem."""
    p = plan(target, root)
    if p.missing:
        raise DataError(f"{target} needs {len(p.missing)} input(s) that nothing writes and that do "
                        f"not exist: {', '.join(p.missing[:4])}")
    if world == "real" and p.tiny:
        raise DataError(f"world is real, but {target} would run the embedded default's "
                        f"{', '.join(p.tiny)}; point data.* and the model references at yours")
    return (f"{target}: {len(p.stages)} stages, {len(p.tiny)} of the tiny world"
            f"{' (' + ', '.join(p.tiny) + ')' if p.tiny else ''}; every input exists")
