"""What every stage entry point shares: params loading, one-line errors, and where a stage's
metrics and plots go.

Stages live in ``stages/``; each reads its params groups, calls the library and writes its
declared outputs. They import this module and the library, never each other, and hand the library
params *groups* or values, never the whole ``Params`` (so that the dependency check,
``slug_cli.deps``, sees every key a stage reads in the stage's own module).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

from . import params as params_mod
from .errors import SlugError
from .params import Params

METRICS_DIR = Path("metrics")
PLOTS_DIR = Path("plots")


def metrics_path(name: str) -> Path:
    """A stage's metrics file: ``metrics/<name>.json`` (declared in dvc.yaml under ``metrics``)."""
    return METRICS_DIR / f"{name}.json"


def plots_dir(name: str) -> Path:
    """A stage's plot tables and figures: ``plots/<name>/``."""
    return PLOTS_DIR / name


def params_file() -> str:
    """params.yaml, or the file ``$SLUG_PARAMS`` names (stages and ``slug`` alike)."""
    return os.environ.get("SLUG_PARAMS", "params.yaml")


def run(main: Callable[[Params], None], name: str | None = None, embedded: bool = False) -> None:
    """Load and validate params (``params_file()``), run the checks every stage shares (the
    model references, the device: ``pipeline.preflight``), call ``main``; expected errors exit 1
    with one line. ``embedded``: a stage of the embedded default (``tiny/dvc.yaml``), which
    refuses to run under ``world: real``."""
    from . import preflight

    name = name or Path(sys.modules[main.__module__].__file__).stem
    try:
        p = params_mod.load(params_file())
        preflight.references(p)
        preflight.world(p, embedded)
        preflight.device(p.device)
        main(p)
    except SlugError as exc:
        print(f"error: {name}: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"error: {name}: interrupted", file=sys.stderr)
        sys.exit(130)
