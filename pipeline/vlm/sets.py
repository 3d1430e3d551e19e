"""The VLM's images of retained concepts: shard samples whose caption names exactly one of them.

The target's images are its forget splits (``pipeline.sets.build``): the search split for the
step search, the test split for the held-out evaluation. The retained concepts (the first
``per_kind`` other names of every kind the VLM is asked about) get theirs here, in one pass over
the shards' captions (the parquet metadata) and one over the tars for the chosen samples: a
caption that names one retained concept, and neither another one nor the target, labels its
image. Per concept a seeded sample is split into ``search`` and ``eval`` images (disjoint), written
as ``search.tar`` and ``eval.tar`` with a manifest holding each key's concept and kind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ..concept import Concept
from ..datasets.shards import Shard, fingerprints, read_metadata, write_tar
from ..errors import DataError
from ..io import sha256_file, write_json
from ..names import same
from ..sets.build import collect
from ..sets.match import ConceptMatcher

SPLITS = ("search", "eval")
MANIFEST = "manifest.json"


def retained(classnames: dict[str, Sequence[str]], concept: Concept, per_kind: int,
             kinds: Sequence[str]) -> list[tuple[str, str]]:
    """``(name, kind)`` of the first ``per_kind`` names of each of ``kinds``, the target left
    out."""
    return [(n, k) for k in kinds
            for n in [x for x in classnames[k] if not same(x, concept.label)][:per_kind]]


def build(shards: Sequence[Shard], concepts: list[tuple[str, str]], concept: Concept,
          n_search: int, n_eval: int, seed: int, out: str | Path) -> dict:
    """Write ``search.tar``, ``eval.tar`` and the manifest into ``out``; return the manifest."""
    matchers = [ConceptMatcher(n) for n, _ in concepts]
    target = ConceptMatcher(concept.label, concept.aliases)
    found: dict[int, list[tuple[str, str]]] = {i: [] for i in range(len(concepts))}
    for shard in shards:
        meta = read_metadata(shard, ("key", "caption"))
        for key, caption in zip(meta["key"], meta["caption"]):
            if not isinstance(caption, str) or target(caption):
                continue
            hits = [i for i, m in enumerate(matchers) if m(caption)]
            if len(hits) == 1:
                found[hits[0]].append((shard.name, str(key)))
    rng = np.random.default_rng(seed)
    wanted: dict[tuple[str, str], str] = {}
    counts = {}
    for i, (name, kind) in enumerate(concepts):
        have = found[i]
        if len(have) < n_search + n_eval:
            raise DataError(f"only {len(have)} shard captions name {name!r} ({kind}) alone; "
                            f"the VLM sets need {n_search} + {n_eval} (vlm.sets.search_images "
                            f"+ eval_images): lower them or use more shards")
        picked = [have[j] for j in sorted(rng.permutation(len(have))[:n_search + n_eval])]
        order = rng.permutation(len(picked))
        for j, sk in enumerate(picked):
            wanted[sk] = f"{'search' if order[j] < n_search else 'eval'}/{i}"
        counts[name] = {"kind": kind, "captions": len(have)}
    skipped = {"corrupt_images": 0, "incomplete": 0}
    routed: dict[str, list] = {s: [] for s in SPLITS}
    labels: dict[str, dict[str, list[str]]] = {s: {} for s in SPLITS}
    for route, samples in sorted(collect(shards, wanted, skipped).items()):
        split, i = route.split("/")
        routed[split] += samples
        labels[split].update({k: list(concepts[int(i)]) for k, _ in samples})
    out = Path(out)
    manifest = {"concepts": counts, "seed": seed, "skipped": skipped, "splits": {},
                "inputs": fingerprints(shards)}
    for split in SPLITS:
        path = out / f"{split}.tar"
        write_tar(path, routed[split])
        per = {n: sum(1 for v in labels[split].values() if v[0] == n) for n, _ in concepts}
        manifest["splits"][split] = {"n": len(routed[split]), "per_concept": per,
                                     "sha256": sha256_file(path), "labels": labels[split]}
    write_json(out / MANIFEST, manifest)
    return manifest


def read(out: str | Path, split: str) -> tuple[Path, dict[str, list[str]]]:
    """A split's tar and its ``key -> [name, kind]`` labels."""
    out = Path(out)
    path, man = out / f"{split}.tar", out / MANIFEST
    if split not in SPLITS:
        raise ValueError(f"unknown VLM split {split!r}; splits: {', '.join(SPLITS)}")
    if not path.exists() or not man.exists():
        raise DataError(f"{path} is missing; run the vlm_sets stage (params: vlm.sets.out)")
    return path, json.loads(man.read_text())["splits"][split]["labels"]
