#!/usr/bin/env python3
"""Set up the project and run its main job or its tests, on a machine with only python3 and git.

    python3 dev.py demo   # create .venv, install, run the whole DVC pipeline (dvc repro)
    python3 dev.py test   # create .venv, install, lint (ruff) and run the test suite
    python3 dev.py canvas # the UnlearnCanvas sweep: every style and object, then the table

The virtual environment is (re)installed only when pyproject.toml changed since the last install.
pip (not uv or poetry) is used on purpose: it honours the machine's local torch wheels.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed-pyproject-sha256"
OFFLINE_TEMPLATE = ROOT / ".dvc" / "plots" / "offline.html"


def sh(*cmd: str | Path, **kw) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    rc = subprocess.call([str(c) for c in cmd], cwd=ROOT, **kw)
    if rc:
        sys.exit(rc)


def setup() -> None:
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == want and (BIN / "python").exists():
        return
    if not (BIN / "python").exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    sh(BIN / "python", "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check",
       "-e", ".[test]")
    STAMP.write_text(want)


def offline_plots() -> None:
    """`dvc plots` pages that render without network (see slug_cli/offline_plots.py)."""
    if not OFFLINE_TEMPLATE.exists():
        sh(BIN / "python", "-m", "slug_cli.offline_plots", OFFLINE_TEMPLATE)


def env() -> dict:
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e["VIRTUAL_ENV"] = str(VENV)
    e.setdefault("DVC_NO_ANALYTICS", "1")
    return e


def main(argv: list[str]) -> None:
    if len(argv) < 1 or argv[0] not in ("demo", "test", "setup", "canvas"):
        sys.exit(__doc__)
    setup()
    offline_plots()
    if argv[0] == "demo":
        sh(BIN / "dvc", "repro", *argv[1:], env=env())
    elif argv[0] == "canvas":
        sh(BIN / "dvc", "repro", "benchmarks/unlearncanvas/dvc.yaml", *argv[1:], env=env())
    elif argv[0] == "test":
        sh(BIN / "ruff", "check", ".", env=env())  # dead code and unused imports never land
        # pytest-xdist workers, one per core up to 4 (each test process one thread:
        # tests/conftest.py); the micro repository is built in the background meanwhile
        workers = str(min(4, max(2, os.cpu_count() or 2)))
        sh(BIN / "python", "-m", "pytest", "-n", workers, "--dist", "worksteal", *argv[1:],
           env=env())


if __name__ == "__main__":
    main(sys.argv[1:])
