"""Every module of the project imports (benchmarks and tools too, which no other test runs)."""

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                 for pkg in ("pipeline", "stages", "slug_cli", "bench")
                 for p in (ROOT / pkg).rglob("*.py") if p.name != "__main__.py")


@pytest.mark.parametrize("module", MODULES)
def test_module_imports(module):
    importlib.import_module(module)
