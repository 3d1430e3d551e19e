"""A patch stack: several concepts' patches (``pipeline.unlearn.patch``), in order, applied as one
edit of the base model.

On disk, a folder: ``stack.json`` (the base model's hash, the strategy, the patches in order) and
one patch folder per concept (``NN-<Name>``). Two kinds, from ``pipeline.unlearn.multi``:

* ``joint``: every patch was made at the base weights. The stack applies ``base + sum(patch -
  base)`` on each tensor, so any subset of it applies the same way: removing a concept is
  re-applying the others.
* ``sequential``: patch k was made on the base with patches 1..k-1 applied, and is checked
  against that state's hash as it is applied. Only the last concept can be removed; the patches
  after any other were computed on a model that had it forgotten.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import names
from ..errors import ModelError
from ..io import atomic_dir, write_json
from ..models.structure import state_dict_hash
from . import patch as patch_mod
from .patch import Patch

STACK = "stack.json"
KINDS = ("joint", "sequential")


@dataclass
class Stack:
    strategy: str  # joint | sequential
    base_sha256: str  # the model the first patch (every patch, when joint) was made on
    patches: list[Patch]

    def __post_init__(self):
        if self.strategy not in KINDS:
            raise ModelError(f"unknown stack strategy {self.strategy!r}; known: "
                             f"{', '.join(KINDS)}")
        if not self.patches:
            raise ModelError("a patch stack needs at least one patch")
        bases = [p.manifest.get("base_model_sha256") for p in self.patches]
        wrong = [c for c, b in zip(self.concepts, bases) if b != self.base_sha256]
        if self.strategy == "joint" and wrong:
            raise ModelError(f"joint stack: the patch of {wrong[0]} was not made at the stack's "
                             f"base model {self.base_sha256[:12]}...")
        if bases[0] != self.base_sha256:
            raise ModelError(f"the first patch ({self.concepts[0]}) was not made at the stack's "
                             f"base model {self.base_sha256[:12]}...")

    @property
    def concepts(self) -> list[str]:
        return [p.manifest.get("concept", "?") for p in self.patches]

    @property
    def reached(self) -> bool:
        return all(p.manifest.get("search", {}).get("reached", True) for p in self.patches)


def is_stack(folder: str | Path) -> bool:
    return (Path(folder) / STACK).exists()


def _folder(i: int, concept: str) -> str:
    return f"{i:02d}-{names.file_name(concept)}"


def save(stack: Stack, folder: str | Path) -> None:
    """The stack as one folder, written atomically."""
    with atomic_dir(folder) as tmp:
        order = []
        for i, (p, c) in enumerate(zip(stack.patches, stack.concepts)):
            patch_mod.save(p, tmp / _folder(i, c))
            order.append({"concept": c, "folder": _folder(i, c)})
        write_json(tmp / STACK, {"strategy": stack.strategy,
                                 "base_model_sha256": stack.base_sha256, "patches": order})


def load(folder: str | Path) -> Stack:
    folder = Path(folder)
    if not is_stack(folder):
        raise ModelError(f"{folder / STACK} is missing; is {folder} a patch stack?")
    meta = json.loads((folder / STACK).read_text())
    patches = []
    for entry in meta["patches"]:
        p = patch_mod.load(folder / entry["folder"])
        if not names.same(p.manifest.get("concept", ""), entry["concept"]):
            raise ModelError(f"{folder / entry['folder']} holds the patch of "
                             f"{p.manifest.get('concept')!r}, the stack says {entry['concept']!r}")
        patches.append(p)
    return Stack(meta["strategy"], meta["base_model_sha256"], patches)


@torch.no_grad()
def apply(model: torch.nn.Module, stack: Stack) -> dict[str, torch.Tensor]:
    """Write the stack into ``model`` (which must be its base); return the replaced tensors
    (for ``patch.revert``)."""
    have = state_dict_hash(model)
    if have != stack.base_sha256:
        raise ModelError(f"this patch stack was made for base model {stack.base_sha256[:12]}..., "
                         f"but the model given has hash {have[:12]}...")
    if stack.strategy == "sequential":
        originals: dict[str, torch.Tensor] = {}
        try:
            for p in stack.patches:  # each checked against the state it was made on
                for k, v in patch_mod.apply(model, p).items():
                    originals.setdefault(k, v)
        except ModelError:
            patch_mod.revert(model, originals)
            raise
        return originals
    params = dict(model.named_parameters())
    for p in stack.patches:
        for k, v in p.tensors.items():
            if k not in params or params[k].shape != v.shape:
                raise ModelError(f"the patch of {p.manifest.get('concept')} does not fit the "
                                 f"model's {k!r}")
    originals = {k: params[k].detach().clone() for p in stack.patches for k in p.tensors}
    for p in stack.patches:
        for k, v in p.tensors.items():
            params[k].add_(v.to(params[k]) - originals[k])
    return originals


def remove(stack: Stack, concept: str) -> Stack:
    """The stack without ``concept`` (see the module doc for what can be removed)."""
    idx = next((i for i, c in enumerate(stack.concepts) if names.same(c, concept)), None)
    if idx is None:
        raise ModelError(f"{concept!r} is not in the stack ({', '.join(stack.concepts)})")
    if len(stack.patches) == 1:
        raise ModelError(f"{concept!r} is the stack's only concept; use the base model")
    later = stack.concepts[idx + 1:]
    if stack.strategy == "sequential" and later:
        raise ModelError(f"the patches of {', '.join(later)} were computed on a model that had "
                         f"{concept!r} forgotten; remove them first, or forget the concepts "
                         f"with the joint strategy")
    rest = stack.patches[:idx] + stack.patches[idx + 1:]
    return Stack(stack.strategy, stack.base_sha256, rest)


def flatten(model: torch.nn.Module, stack: Stack) -> Patch:
    """The stack as one ``Patch`` of ``model`` (its base): the tensors it ends with."""
    originals = apply(model, stack)
    try:
        state = model.state_dict()
        tensors = {k: state[k].detach().clone() for k in originals}
    finally:
        patch_mod.revert(model, originals)
    return Patch(tensors, {"concept": ", ".join(stack.concepts), "concepts": stack.concepts,
                           "layers": sorted(tensors), "base_model_sha256": stack.base_sha256,
                           "lambda": [p.manifest.get("lambda") for p in stack.patches],
                           "stack": {"strategy": stack.strategy},
                           "search": {"reached": stack.reached}})
