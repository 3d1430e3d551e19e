"""An unlearning as an artifact: the edited tensor(s) plus a manifest.

The base model is never rewritten. A patch applies in milliseconds, reverts exactly (``apply``
returns the original tensors), and exports to a full open_clip checkpoint. It refuses a base model
whose state-dict hash differs from the one it was made for.
"""

from __future__ import annotations

import hashlib
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


INTEGRITY = "integrity"  # the manifest's key for the hashes below


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> dict[str, str]:
    """SHA-256 of each tensor: its dtype, shape and bytes."""
    out = {}
    for name, t in sorted(tensors.items()):
        t = t.detach().cpu().contiguous()
        h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        out[name] = h.hexdigest()
    return out


def _content_sha256(manifest: dict, tensors: dict) -> str:
    """SHA-256 of the manifest's content and of its tensors' hashes (canonical JSON): one
    fingerprint of the whole patch."""
    body = {k: v for k, v in manifest.items() if k != INTEGRITY}
    return hashlib.sha256(json.dumps([body, tensors], sort_keys=True, separators=(",", ":"),
                                     default=str).encode()).hexdigest()


def save(patch: Patch, folder: str | Path, extra: dict[str, dict] | None = None) -> str:
    """The patch as one folder, written at once (a kill leaves the old folder or the new one,
    never a mix): its tensors, any ``extra`` tensor files (the patch mapped onto another model's
    names), and the manifest with the SHA-256 of every tensor and one of its content and those
    (``integrity.manifest``: the patch's fingerprint). Without a key, the hashes catch damage and
    edits; a deliberate forger who rewrites every hash is caught only by comparing the
    fingerprint with one recorded elsewhere (``dvc.lock``, the stage's metrics). Returns the
    fingerprint."""
    files = {TENSORS: patch.tensors, **(extra or {})}
    manifest = {k: v for k, v in patch.manifest.items() if k != INTEGRITY}
    hashes = {f: tensors_sha256(t) for f, t in files.items()}
    integrity = {"tensors": hashes, "manifest": _content_sha256(manifest, hashes)}
    with atomic_dir(folder) as tmp:
        for f, t in files.items():
            save_tensors(tmp / f, t)
        write_json(tmp / MANIFEST, {**manifest, INTEGRITY: integrity})
    return integrity["manifest"]


def read_manifest(folder: str | Path) -> dict:
    """A patch folder's manifest, refused when its content is not what was written."""
    path = Path(folder) / MANIFEST
    if path.is_dir() or not path.exists():
        raise ModelError(f"{path} is missing; is {folder} a patch folder?")
    try:
        manifest = json.loads(path.read_text())
        integrity = manifest[INTEGRITY]
        tensors = integrity["tensors"]
        ok = isinstance(tensors, dict) and _content_sha256(manifest, tensors) == \
            integrity["manifest"]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ModelError(f"{path} is not a patch manifest with its hashes (damaged, edited, or "
                         f"written before patches carried them); make the patch again") from None
    if not ok:
        raise ModelError(f"{path} was changed after it was written (its content hash differs); "
                         f"a patch must be used as it was made: make it again")
    return manifest


def read_tensors(folder: str | Path, name: str = TENSORS,
                 manifest: dict | None = None) -> dict[str, torch.Tensor]:
    """One tensor file of a patch folder, each tensor checked against the manifest's hash."""
    manifest = read_manifest(folder) if manifest is None else manifest
    path = Path(folder) / name
    want = manifest[INTEGRITY]["tensors"].get(name)
    if want is None:
        raise ModelError(f"{path}: the patch's manifest records no such file")
    if path.is_dir() or not path.exists():
        raise ModelError(f"{path} is missing; is {folder} a patch folder?")
    try:
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types on a damaged file
        raise ModelError(f"{path} is not a readable safetensors file ({e})") from None
    have = tensors_sha256(tensors)
    if have != want:
        bad = sorted(set(have) ^ set(want)) or [k for k in have if have[k] != want[k]]
        raise ModelError(f"{path}: tensor {bad[0]} differs from the one the patch was made with "
                         f"(SHA-256 mismatch); a patch must be used as it was made")
    return tensors


def load(folder: str | Path) -> Patch:
    """A patch folder, every tensor and the manifest checked against the hashes written with
    them (``save``)."""
    manifest = read_manifest(folder)
    return Patch(read_tensors(folder, TENSORS, manifest), manifest)


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
