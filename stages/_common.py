"""What every stage entry point shares: params loading and turning expected errors into one line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

from pipeline import params as params_mod
from pipeline.errors import SlugError


def run(main: Callable[[params_mod.Params], None]) -> None:
    """Load and validate params.yaml, call ``main``; expected errors exit 1 with one line."""
    name = Path(sys.modules[main.__module__].__file__).stem
    try:
        p = params_mod.load(os.environ.get("SLUG_PARAMS", "params.yaml"))
        main(p)
    except SlugError as exc:
        print(f"error: {name}: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"error: {name}: interrupted", file=sys.stderr)
        sys.exit(130)
