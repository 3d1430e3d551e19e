"""Model references: what ``model.pretrained``, ``sd.pipeline`` and ``canvas.pipeline`` name.

A reference is one of

* a **local file** (``models/tiny-clip.safetensors``, ``/ckpt/vit-b-32.safetensors``),
* a **local folder** (an open_clip folder with ``open_clip_config.json``, a diffusers pipeline
  folder with ``model_index.json``), or
* a **name**: an open_clip pretrained tag (``laion400m_e32``) or a Hugging Face hub id already in
  the local cache (``stabilityai/stable-diffusion-2-1``).

DVC can hash a file or a folder but not a name, and a ``dvc.yaml`` dependency cannot be
conditional. So a reference that is a local path is listed, by the same path, under ``refs`` in
params.yaml: the ``track`` stage (one per entry) hashes it into ``data/refs/<name>/``, and every
stage that loads the model depends on that folder. A name is left out of ``refs``; the stages
that load it declare it as a param, so DVC reruns them when it changes. ``check`` keeps the two
in agreement, before any stage does work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from .errors import ParamsError
from .io import sha256_file, sha256_tree

TRACK_DIR = Path("data/refs")  # data/refs/<name>/ref.json, written by the track stage
RECORD = "ref.json"


def track_dir(name: str) -> Path:
    return TRACK_DIR / name


def kind(value: str) -> str:
    """``file``, ``folder`` or ``name`` (not on this machine: a tag or a hub id)."""
    path = Path(value)
    if path.is_file():
        return "file"
    if path.is_dir():
        return "folder"
    return "name"


def fingerprint(name: str, value: str) -> dict:
    """What the track stage records for a local reference: its kind, size and sha256."""
    path = Path(value)
    k = kind(value)
    if k == "name":
        raise ParamsError(f"refs.{name}: {value} is neither a file nor a folder on this machine")
    files = [path] if k == "file" else sorted(q for q in path.rglob("*") if q.is_file())
    return {"name": name, "path": value, "kind": k, "files": len(files),
            "bytes": sum(q.stat().st_size for q in files),
            "sha256": sha256_file(path) if k == "file" else sha256_tree(path)}


def check(values: Mapping[str, str], refs: Mapping[str, str],
          produced: frozenset[str] = frozenset()) -> None:
    """Refuse a ``refs`` table that disagrees with the references.

    ``values``: param key -> reference (``{"model.pretrained": "laion400m_e32", ...}``) for the
    keys of ``params.ref_keys()``; ``produced``: paths a pipeline stage writes (they may not exist
    yet and count as local)."""
    from .params import ref_keys

    names = ref_keys()
    for key, value in values.items():
        name = names[key]
        listed = refs.get(name)
        local = kind(value) != "name" or value in produced
        if listed is not None and Path(listed) != Path(value):
            raise ParamsError(f"params.yaml: refs.{name} is {listed!r} but {key} is {value!r}; "
                              f"list {key}'s own path there, or remove refs.{name} if it is a "
                              f"tag or a hub id")
        if listed is None and local:
            raise ParamsError(f"params.yaml: {key} is the local {kind(value)} {value!r}, which "
                              f"refs.{name} must list so that DVC hashes it (refs: {{{name}: "
                              f"{value}}})")
