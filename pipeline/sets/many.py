"""Several concepts' sets (``pipeline.unlearn.multi``): which concepts, and their forget splits
with one shared retain split, built in one pass over the shards (``build.collect``)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..concept import Concept
from ..datasets.shards import Shard
from ..errors import DataError, ParamsError
from ..io import sha256_file
from ..names import file_name
from .build import (
    MANIFEST,
    SetsConfig,
    collect,
    forget_wanted,
    retain_wanted,
    split_path,
    write_split,
)


def concept_dir(out: str | Path, label: str) -> Path:
    """Where ``build_many`` writes one concept's forget splits."""
    return Path(out) / "concepts" / file_name(label)


def build_many(shards: Sequence[Shard], forget_rows: dict[str, list[dict]],
               matcher: Callable[[str], bool], cfg: SetsConfig, out: Path) -> dict:
    """Several concepts' sets in one pass over the shards: each concept's forget search and test
    splits (``concept_dir``; split as ``build_sets`` splits them, so a concept's splits are the
    ones it gets alone), and one retain and retain-validation split (in ``out``) whose captions
    ``matcher`` rejects: none names any of the concepts. A sample whose caption names two of
    them is in both concepts' forget splits."""
    wanted: dict[tuple[str, str], tuple[str, ...]] = defaultdict(tuple)
    for label, rows in forget_rows.items():
        for sk, split in forget_wanted(rows, cfg, np.random.default_rng(cfg.seed)).items():
            wanted[sk] += (f"{label}/{split}",)
    for sk, split in retain_wanted(shards, matcher, cfg, np.random.default_rng(cfg.seed)).items():
        if sk in wanted:  # a retain candidate never matches, but keep the routing exact
            raise DataError(f"sample {sk} is both forget and retain")
        wanted[sk] = (split,)
    skipped = {"corrupt_images": 0, "incomplete": 0}
    routed = collect(shards, dict(wanted), skipped)
    manifest = {"config": cfg.__dict__, "skipped": skipped, "splits": {}, "concepts": {},
                "inputs": {s.tar.name: sha256_file(s.tar) for s in shards}}
    for split in ("retain", "retain_val"):
        manifest["splits"][split] = write_split(split_path(out, split), routed.get(split, []), split)
    for label in forget_rows:
        manifest["concepts"][label] = {
            split: write_split(split_path(concept_dir(out, label), split),
                          routed.get(f"{label}/{split}", []), f"{label}'s {split}")
            for split in ("forget_search", "forget_test")}
    return manifest


def first_identities(celeba_root: str, count: int, keep: int) -> list[str]:
    """The first ``count`` names of CelebA's frequent-names file, refusing a count that would
    leave fewer than ``keep`` identities to measure what is retained."""
    from ..datasets.celeba import CelebA

    names_ = CelebA(Path(celeba_root)).frequent()
    if not 1 <= count <= len(names_) - keep:
        raise ParamsError(f"--count {count}: the frequent-names file has {len(names_)} "
                          f"identities and {keep} must stay unforgotten (1 to "
                          f"{len(names_) - keep})")
    return names_[:count]


def check_distinct(concepts: Sequence[Concept]) -> None:
    seen = set()
    for c in concepts:
        if (c.kind, c.index) in seen:
            raise ParamsError(f"{c.label} is named twice among the concepts")
        seen.add((c.kind, c.index))


def read_concepts(sets_dir: str | Path) -> list[Concept]:
    """The concepts a ``build_many`` sets folder was built for, in order."""
    path = Path(sets_dir) / MANIFEST
    if not path.exists():
        raise DataError(f"{path} is missing; build the concepts' sets first (multi_sets)")
    return [Concept.from_dict(d) for d in json.loads(path.read_text())["concepts_resolved"]]


