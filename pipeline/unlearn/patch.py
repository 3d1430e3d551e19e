"""An unlearning as an artifact: the edited tensor(s) plus a manifest.

The base model is never rewritten. A patch applies in milliseconds, reverts exactly (``apply``
returns the original tensors), and exports to a full open_clip checkpoint. It refuses a base model
whose state-dict hash differs from the one it was made for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..errors import ModelError
from ..io import atomic_dir, save_tensors, write_json
from ..models.structure import state_dict_hash

TENSORS = "patch.safetensors"
MANIFEST = "manifest.json"


@dataclass
class Patch:
    tensors: dict[str, torch.Tensor]  # parameter name -> its new value
    manifest: dict

    @property
    def numel(self) -> int:
        return sum(t.numel() for t in self.tensors.values())


def save(patch: Patch, folder: str | Path) -> None:
    folder = Path(folder)
    save_tensors(folder / TENSORS, patch.tensors)
    write_json(folder / MANIFEST, patch.manifest)


def load(folder: str | Path) -> Patch:
    folder = Path(folder)
    for f in (TENSORS, MANIFEST):
        if not (folder / f).exists():
            raise ModelError(f"{folder / f} is missing; is {folder} a patch folder?")
    return Patch(load_file(str(folder / TENSORS)), json.loads((folder / MANIFEST).read_text()))


def size_bytes(folder: str | Path) -> int:
    """What a patch costs to store: its tensors and its manifest."""
    return sum((Path(folder) / f).stat().st_size for f in (TENSORS, MANIFEST))


def check_base(model: torch.nn.Module, patch: Patch) -> None:
    want = patch.manifest.get("base_model_sha256")
    have = state_dict_hash(model)
    if want != have:
        raise ModelError(f"this patch was made for base model {str(want)[:12]}..., but the model "
                         f"given has hash {have[:12]}...; use the base model named in the manifest "
                         f"({patch.manifest.get('base_model', {})})")


@torch.no_grad()
def apply(model: torch.nn.Module, patch: Patch, check: bool = True) -> dict[str, torch.Tensor]:
    """Write the patch into ``model``; return the replaced tensors (for ``revert``)."""
    if check:
        check_base(model, patch)
    params = dict(model.named_parameters())
    missing = [k for k in patch.tensors if k not in params]
    if missing:
        raise ModelError(f"the model has no parameter {missing[0]!r}")
    for k, v in patch.tensors.items():
        if params[k].shape != v.shape:
            raise ModelError(f"{k}: patch shape {tuple(v.shape)} != model {tuple(params[k].shape)}")
    originals = {k: params[k].detach().clone() for k in patch.tensors}
    for k, v in patch.tensors.items():
        params[k].copy_(v.to(params[k].device, params[k].dtype))
    return originals


@torch.no_grad()
def revert(model: torch.nn.Module, originals: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for k, v in originals.items():
        params[k].copy_(v)


EXPORT_WEIGHTS = "open_clip_model.safetensors"  # the names open_clip's 'local-dir:' loader reads
EXPORT_CONFIG = "open_clip_config.json"


def export(model: torch.nn.Module, patch: Patch, out: str | Path, model_cfg: dict) -> Path:
    """Apply to (a copy of the weights of) ``model`` and write an open_clip model folder: the
    weights and the architecture's config, so that the folder loads on its own, without this
    project: ``open_clip.create_model_and_transforms('local-dir:<out>')``."""
    from open_clip.push_to_hf_hub import save_config_for_hf

    originals = apply(model, patch)
    try:
        with atomic_dir(out) as tmp:
            save_tensors(tmp / EXPORT_WEIGHTS, model.state_dict(), {
                "slug_patch": {k: patch.manifest.get(k) for k in ("concept", "layers", "lambda")}})
            save_config_for_hf(model, tmp / EXPORT_CONFIG, model_cfg)
        return Path(out)
    finally:
        revert(model, originals)
