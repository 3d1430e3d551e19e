"""Build the forget and retain sets as webdataset tars, in one pass over each shard.

* forget: the matched samples, split (seeded) into a *search* split, used to choose the step, and
  a held-out *test* split, used only for the reported metrics;
* retain: a seeded sample of the other samples (no caption mentioning the concept), plus a
  disjoint retain *validation* split for the step search;
* non-members: held-out pairs the model never saw, for the membership-inference attack.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..concept import Concept
from ..datasets.pairs import PairData, load_pairs
from ..datasets.shards import (
    IMAGE_EXTS,
    Shard,
    check_damage,
    decode_image,
    fingerprints,
    iter_raw,
    read_metadata,
    write_tar,
)
from ..errors import DataError
from ..io import sha256_file
from ..parallel import ordered_map
from ..params import DataParams, SetsParams
from .match import ConceptMatcher

SPLITS = ("forget_search", "forget_test", "retain", "retain_val", "nonmembers")
MANIFEST = "manifest.json"


def split_path(folder: str | Path, split: str) -> Path:
    """Where a split's tar lives in the sets folder."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    return Path(folder) / f"{split}.tar"


def load_split(folder: str | Path, split: str, preprocess: Callable, tokenizer: Callable
               ) -> PairData:
    path = split_path(folder, split)
    if not path.exists():
        raise DataError(f"{path} is missing; build the sets (params: sets.out = {folder})")
    return load_pairs([Shard(path)], preprocess, tokenizer)


def require_split(folder: str | Path, split: str) -> Path:
    """A split's tar, which must exist (for readers that stream it, e.g. the evaluation)."""
    path = split_path(folder, split)
    if not path.exists():
        raise DataError(f"{path} is missing; build the sets (params: sets.out = {folder})")
    return path


def split_hashes(folder: str | Path, splits: Sequence[str]) -> dict[str, str]:
    """SHA-256 of the named splits' tars, keyed by file name (for manifests)."""
    return {split_path(folder, s).name: sha256_file(split_path(folder, s)) for s in splits}


def read_concept(folder: str | Path) -> Concept:
    """The concept the sets were built for, as resolved then (see ``pipeline.concept``)."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise DataError(f"{path} is missing; build the sets (params: sets.out = {folder})")
    return Concept.from_dict(json.loads(path.read_text())["concept"])


@dataclass(frozen=True)
class SetsConfig:
    """The ``sets`` params group and the seed."""
    seed: int
    test_fraction: float
    n_retain: int
    n_retain_val: int
    n_nonmembers: int
    on_damaged_shard: str = "error"  # data.*: a damaged shard stops the run, or is skipped
    max_damaged_share: float = 0.0
    workers: int = 1  # data.workers: processes for the shard scans (the sets do not depend on it)

    @classmethod
    def from_params(cls, s: SetsParams, seed: int, d: DataParams) -> "SetsConfig":
        return cls(seed, s.test_fraction, s.n_retain, s.n_retain_val, s.n_nonmembers,
                   d.on_damaged_shard, d.max_damaged_share, d.workers)

    def record(self) -> dict:
        """What a manifest records: everything the sets depend on (not ``workers``)."""
        return {k: v for k, v in self.__dict__.items() if k != "workers"}


def _sample(candidates: list[tuple[str, str]], n: int, rng: np.random.Generator):
    idx = rng.permutation(len(candidates))[:n]
    return [candidates[i] for i in sorted(idx)]


def _read_wanted(job: tuple[Shard, set[str], bool]) -> tuple[list, int, int, dict]:
    """One shard's wanted samples, in tar order (a worker's job): the samples, how many were
    incomplete or undecodable, and the shard's damage when tolerated."""
    shard, keys, tolerate = job
    damaged: dict | None = {} if tolerate else None
    samples, incomplete, corrupt = [], 0, 0
    for key, files in iter_raw(shard, keys, damaged):
        img = next((e for e in IMAGE_EXTS if e in files), None)
        if img is None or "txt" not in files:
            incomplete += 1
            continue
        try:
            decode_image(files[img])
        except Exception:
            corrupt += 1
            continue
        samples.append((key, files))
    return samples, incomplete, corrupt, damaged or {}


def collect(shards: Sequence[Shard], wanted: dict[tuple[str, str], str | tuple[str, ...]],
            skipped: dict, on_damaged: str = "error", max_share: float = 0.0, workers: int = 1
            ) -> dict[str, list[tuple[str, dict]]]:
    """One pass per shard (over ``workers`` processes; the result does not depend on them):
    route each wanted (shard, key) to its split (or splits); drop undecodable images. A damaged
    shard is an error, or under ``on_damaged="skip"`` its readable samples are used and it is
    named in ``skipped["damaged_shards"]`` (an error past ``max_share`` of the shards read)."""
    out: dict[str, list] = defaultdict(list)
    by_shard: dict[str, set] = defaultdict(set)
    for s, k in wanted:
        by_shard[s].add(k)
    damaged = skipped.setdefault("damaged_shards", {}) if on_damaged == "skip" else None
    jobs = [(s, by_shard[s.name], damaged is not None) for s in shards if by_shard.get(s.name)]
    for (shard, _, _), (samples, incomplete, corrupt, hurt) in zip(
            jobs, ordered_map(_read_wanted, jobs, workers, "reading shards")):
        for why, n in (("incomplete", incomplete), ("corrupt_images", corrupt)):
            if n:
                skipped[why] = skipped.get(why, 0) + n
        if damaged is not None:
            damaged.update(hurt)
        for key, files in samples:
            to = wanted[(shard.name, key)]
            for split in (to,) if isinstance(to, str) else to:
                out[split].append((key, files))
    if damaged is not None:
        check_damage(damaged, len(jobs), max_share)
    return out


def _unmatched(job: tuple[Shard, Callable[[str], bool] | None]) -> list[tuple[str, str]]:
    """(shard, key) of one shard's samples whose caption ``matcher`` rejects (all of them
    without a matcher), from the parquet (a worker's job)."""
    shard, matcher = job
    meta = read_metadata(shard, ("key", "caption"))
    return [(shard.name, str(k)) for k, c in zip(meta["key"], meta["caption"])
            if matcher is None or not matcher(c)]


def candidates(shards: Sequence[Shard], matcher: Callable[[str], bool] | None, workers: int = 1
               ) -> list[tuple[str, str]]:
    """Every shard's ``_unmatched`` samples, in shard order."""
    jobs = [(s, matcher) for s in shards]
    return [sk for part in ordered_map(_unmatched, jobs, workers, "reading metadata")
            for sk in part]


def forget_wanted(forget_rows: list[dict], cfg: SetsConfig, rng: np.random.Generator
                  ) -> dict[tuple[str, str], str]:
    """The matched samples, split (seeded) into forget search and test."""
    forget = [(r["shard"], r["key"]) for r in forget_rows]
    order = rng.permutation(len(forget))
    n_test = int(round(cfg.test_fraction * len(forget)))
    if len(forget) < 2 or n_test < 1 or n_test >= len(forget):
        raise DataError(f"{len(forget)} forget sample(s) cannot be split into non-empty search "
                        f"and test splits (sets.test_fraction={cfg.test_fraction}); find more "
                        f"matches (filter.aliases, more shards)")
    return {forget[i]: ("forget_test" if j < n_test else "forget_search")
            for j, i in enumerate(order)}


def retain_wanted(shards: Sequence[Shard], matcher: Callable[[str], bool], cfg: SetsConfig,
                  rng: np.random.Generator) -> dict[tuple[str, str], str]:
    """A seeded sample of the samples whose caption ``matcher`` rejects: retain and
    retain-validation."""
    others = candidates(shards, matcher, cfg.workers)
    need = cfg.n_retain + cfg.n_retain_val
    if len(others) < need:
        raise DataError(f"only {len(others)} samples without the concept, {need} requested "
                        f"(sets.n_retain + sets.n_retain_val)")
    picked = _sample(others, need, rng)
    val_idx = set(rng.permutation(need)[:cfg.n_retain_val].tolist())
    return {sk: "retain_val" if i in val_idx else "retain" for i, sk in enumerate(picked)}


def write_split(path: Path, samples: list, split: str) -> dict:
    """A split's tar and its manifest entry; an empty split is an error."""
    if not samples:
        raise DataError(f"the {split} split is empty: none of its samples was found or "
                        f"readable in the shards (see the skipped counts)")
    write_tar(path, samples)
    return {"n": len(samples), "keys": [k for k, _ in samples], "sha256": sha256_file(path)}


def build_sets(shards: Sequence[Shard], forget_rows: list[dict], matcher: ConceptMatcher,
               cfg: SetsConfig, out: Path, nonmember_shards: Sequence[Shard] = ()) -> dict:
    rng = np.random.default_rng(cfg.seed)
    wanted = forget_wanted(forget_rows, cfg, rng)
    wanted.update(retain_wanted(shards, matcher, cfg, rng))
    skipped = {"corrupt_images": 0, "incomplete": 0}
    damage = (cfg.on_damaged_shard, cfg.max_damaged_share)
    routed = collect(shards, wanted, skipped, *damage, cfg.workers)
    if nonmember_shards and cfg.n_nonmembers:
        cands = candidates(nonmember_shards, matcher, cfg.workers)
        nm = {sk: "nonmembers" for sk in _sample(cands, cfg.n_nonmembers, rng)}
        routed.update(collect(nonmember_shards, nm, skipped, *damage, cfg.workers))

    manifest = {"config": cfg.record(), "skipped": skipped, "splits": {},
                "inputs": fingerprints([*shards, *nonmember_shards])}
    for split in SPLITS:
        samples = routed.get(split, [])
        if not samples and split == "nonmembers":
            path = split_path(out, split)
            write_tar(path, samples)
            manifest["splits"][split] = {"n": 0, "keys": [], "sha256": sha256_file(path)}
            continue
        manifest["splits"][split] = write_split(split_path(out, split), samples, split)
    return manifest


def build_pool(shards: Sequence[Shard], n: int, seed: int, out: Path, on_damaged: str = "error",
               max_share: float = 0.0, workers: int = 1) -> dict:
    """The retain pool (``pipeline.unlearn.retain_pool``) as one webdataset tar: a seeded sample
    of ``n`` training pairs, whatever their caption, so that one pool serves every concept (a
    request drops the pairs that mention its own). Returns its manifest."""
    rng = np.random.default_rng(seed)
    cands = candidates(shards, None, workers)
    if len(cands) < n:
        raise DataError(f"the shards hold {len(cands)} pairs, the retain pool asks for {n} "
                        f"(pool.n)")
    skipped = {"corrupt_images": 0, "incomplete": 0}
    samples = collect(shards, {sk: "pool" for sk in _sample(cands, n, rng)}, skipped, on_damaged,
                      max_share, workers)["pool"]
    write_tar(out, samples)
    return {"n": len(samples), "requested": n, "seed": seed, "skipped": skipped,
            "keys": [k for k, _ in samples], "sha256": sha256_file(out)}
