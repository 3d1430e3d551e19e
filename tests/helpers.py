"""The one way tests get params: the repository's params.yaml with a test's overrides on top (no
second copy of the defaults)."""

from __future__ import annotations

from pathlib import Path

import yaml

from pipeline import params as params_mod

ROOT = Path(__file__).resolve().parents[1]


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def params_dict(over: dict | None = None) -> dict:
    """params.yaml as a dict, with ``over`` merged in (nested mappings merge, the rest replaces)."""
    return merge(yaml.safe_load((ROOT / "params.yaml").read_text()), over or {})


def make_params(over: dict | None = None) -> params_mod.Params:
    return params_mod.from_dict(params_dict(over))


def write_params(path: Path, over: dict | None = None) -> Path:
    path.write_text(yaml.safe_dump(params_dict(over), sort_keys=False))
    return path


def world_config(seed: int = 0, **tinyworld):
    """A ``WorldConfig`` from params.yaml's ``tinyworld`` group with ``tinyworld`` overrides."""
    from pipeline.tinyworld.generate import WorldConfig

    return WorldConfig.from_params(make_params({"tinyworld": tinyworld}).tinyworld, seed)
