"""Several concepts' sets (``pipeline.unlearn.multi``): which concepts, and their forget splits
with one shared retain split, built in one pass over the shards (``build.collect``)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..concept import Concept
from ..datasets.shards import Shard, fingerprints
from ..errors import DataError, ParamsError
from .build import (
    MANIFEST,
    SetsConfig,
    collect,
    forget_wanted,
    retain_wanted,
    split_path,
    write_split,
)


def concept_dir(root: str | Path, name: str) -> Path:
    """Where one concept's forget splits are written: under its name as the request spells it
    (the main pipeline's ``concepts`` item, the benchmark's resolved label)."""
    return Path(root) / name


FORGET = ("forget_search", "forget_test")
RETAIN = ("retain", "retain_val")


def build_many(shards: Sequence[Shard], forget_rows: dict[str, list[dict]],
               matcher: Callable[[str], bool] | None, cfg: SetsConfig,
               forget_root: str | Path | None, retain_dir: str | Path | None) -> dict:
    """Several concepts' sets in one pass over the shards: each concept's forget search and test
    splits (``concept_dir`` under ``forget_root``; split as ``build_sets`` splits them, so a
    concept's splits are the ones it gets alone), and one retain and retain-validation split (in
    ``retain_dir``) whose captions ``matcher`` rejects: none names any of the concepts
    (``None``: no retain split). A sample
    whose caption names two of them is in both concepts' forget splits."""
    wanted: dict[tuple[str, str], tuple[str, ...]] = defaultdict(tuple)
    for name, rows in forget_rows.items():
        for sk, split in forget_wanted(rows, cfg, np.random.default_rng(cfg.seed)).items():
            wanted[sk] += (f"{name}/{split}",)
    if matcher is not None:
        for sk, split in retain_wanted(shards, matcher, cfg,
                                       np.random.default_rng(cfg.seed)).items():
            if sk in wanted:  # a retain candidate never matches, but keep the routing exact
                raise DataError(f"sample {sk} is both forget and retain")
            wanted[sk] = (split,)
    skipped = {"corrupt_images": 0, "incomplete": 0}
    routed = collect(shards, dict(wanted), skipped, cfg.on_damaged_shard, cfg.max_damaged_share,
                     cfg.workers)
    manifest = {"config": cfg.record(), "skipped": skipped, "splits": {}, "concepts": {},
                "inputs": fingerprints(shards)}
    for split in RETAIN if matcher is not None else ():
        manifest["splits"][split] = write_split(split_path(retain_dir, split),
                                                routed.get(split, []), split)
    for name in forget_rows:
        manifest["concepts"][name] = {
            split: write_split(split_path(concept_dir(forget_root, name), split),
                               routed.get(f"{name}/{split}", []), f"{name}'s {split}")
            for split in FORGET}
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




def for_concept(name: str, table: dict, default):
    """What ``multi.aliases`` or ``multi.kinds`` gives ``name`` (under any spelling of it)."""
    from ..names import key

    return next((v for k, v in table.items() if key(k) == key(name)), default)
