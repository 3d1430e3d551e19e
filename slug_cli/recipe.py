"""``slug recipe FILE``: apply a params overlay (``recipes/*.yaml``) to params.yaml.

An overlay holds only the keys a setup changes, nested as in params.yaml. Its values replace
those of params.yaml (mappings merge key by key); ``null`` removes a key (``refs: {clip: null}``
when ``model.pretrained`` becomes a tag). Comments and order of params.yaml are kept, and the
result is validated (params and references) before the file is replaced.
"""

from __future__ import annotations

import io
from pathlib import Path

from ruamel.yaml import YAML

from pipeline import params as params_mod
from pipeline import preflight
from pipeline.errors import ParamsError
from pipeline.io import write_text


def merge(base: dict, overlay: dict) -> dict:
    """``overlay`` into ``base``, in place (mappings merge key by key, ``None`` removes a key);
    ``base``."""
    for key, value in overlay.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def apply(recipe: str | Path, params_file: str | Path) -> list[str]:
    """Apply ``recipe`` to ``params_file``; the changed top-level groups."""
    yaml = YAML()  # round trip: comments and order stay
    yaml.width = 100
    yaml.preserve_quotes = True
    path, recipe = Path(params_file), Path(recipe)
    if not recipe.exists():
        raise ParamsError(f"recipe {recipe} not found (the recipes are in recipes/)")
    overlay = YAML(typ="safe").load(recipe.read_text()) or {}
    if not isinstance(overlay, dict):
        raise ParamsError(f"recipe {recipe} must be a mapping of params groups")
    doc = yaml.load(path.read_text())
    merge(doc, overlay)
    buf = io.StringIO()
    yaml.dump(doc, buf)
    p = params_mod.from_dict(YAML(typ="safe").load(buf.getvalue()))
    preflight.references(p)
    write_text(path, buf.getvalue())
    return sorted(overlay)
