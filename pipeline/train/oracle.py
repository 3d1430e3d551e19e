"""The retrain oracle: a CLIP trained with the same recipe and seed on the data *without* the
concept's pairs, the gold standard every unlearning result is held against. Its folder holds the
weights and a manifest (what was left out, the weights' hash); a concept it was not trained for
gets a manifest that says so and no weights, so a consumer can tell "no oracle" from "stale"."""

from __future__ import annotations

import json
from pathlib import Path

from .. import names
from ..errors import DataError
from ..io import atomic_dir, save_tensors, sha256_file, write_json
from ..models.structure import state_dict_hash

WEIGHTS = "model.safetensors"
MANIFEST = "manifest.json"


def wanted(concept: str, concepts: list[str]) -> bool:
    return names.key(concept) in {names.key(c) for c in concepts}


def write_skip(out: str | Path, concept: str) -> dict:
    manifest = {"trained": False, "concept": concept,
                "reason": "the concept is not in oracle.concepts"}
    with atomic_dir(out) as tmp:
        write_json(tmp / MANIFEST, manifest)
    return manifest


def write(out: str | Path, bundle, res, concept: str, aliases: list[str], arch: str, steps: int,
          seed: int) -> dict:
    """Save the retrained weights and the manifest; ``res`` is the ``Pretraining`` result."""
    with atomic_dir(out) as tmp:
        save_tensors(tmp / WEIGHTS, bundle.model.state_dict(),
                     {"arch": arch, "seed": seed, "oracle_for": concept})
        manifest = {"trained": True, "concept": concept, "aliases": aliases, "arch": arch,
                    "dropped_pairs": res.dropped, "trained_pairs": res.report.samples - res.dropped,
                    "steps": steps, "seed": seed, "train_s": round(res.load_s + res.train_s, 1),
                    "sha256": sha256_file(tmp / WEIGHTS),
                    "state_dict_sha256": state_dict_hash(bundle.model)}
        write_json(tmp / MANIFEST, manifest)
    return manifest


def load(out: str | Path, concept: str, quick_gelu: bool, device: str):
    """The oracle's model bundle and manifest for ``concept``; ``(None, manifest)`` when it was not
    trained for it. The weights must match the manifest's hash."""
    from ..models.factory import build

    path = Path(out) / MANIFEST
    if not path.exists():
        raise DataError(f"{path} is missing; run the oracle stage (params: oracle.out)")
    manifest = json.loads(path.read_text())
    if not manifest["trained"] or not names.same(manifest["concept"], concept):
        return None, manifest
    weights = Path(out) / WEIGHTS
    if sha256_file(weights) != manifest["sha256"]:
        raise DataError(f"{weights} does not match its manifest's sha256; run the oracle again")
    return build(manifest["arch"], str(weights), quick_gelu, "fp32", device), manifest
