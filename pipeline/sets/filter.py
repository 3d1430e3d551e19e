"""Find the shard samples whose caption mentions the concept (from the parquet metadata only)."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..datasets.shards import BAD_CAPTIONS, Shard, read_metadata
from ..errors import DataError
from ..io import write_csv
from ..parallel import ordered_map
from .match import ConceptMatcher


@dataclass
class FilterResult:
    rows: list[dict]  # {"shard", "key", "caption"} in shard order
    per_shard: dict[str, int] = field(default_factory=dict)  # matches before the cap
    bad_captions: dict[str, int] = field(default_factory=dict)  # null/non-string, skipped
    scanned: int = 0
    capped: bool = False


def _matches(job: tuple[Shard, ConceptMatcher]) -> tuple[int, int, list[tuple[str, str]]]:
    """One shard's parquet (a worker's job): rows read, captions skipped, and the matches."""
    shard, matcher = job
    meta = read_metadata(shard, ("key", "caption"))
    hits = [(str(k), c) for k, c in zip(meta["key"], meta["caption"]) if matcher(c)]
    return len(meta), meta.attrs.get(BAD_CAPTIONS, 0), hits


def filter_shards(shards: Sequence[Shard], matcher: ConceptMatcher, max_matches: int,
                  workers: int = 1) -> FilterResult:
    """Scan every shard's captions (over ``workers`` processes; the result does not depend on
    them); keep the first ``max_matches`` matches in shard order.

    Every shard is scanned even after the cap is reached, so the per-shard statistics are
    complete (the reference's cap never fired at all, bug B7). Zero matches is an error.
    """
    result = FilterResult(rows=[])
    scans = ordered_map(_matches, [(s, matcher) for s in shards], workers, "scanning captions")
    for shard, (n, bad, hits) in zip(shards, scans):
        result.scanned += n
        if bad:
            result.bad_captions[shard.name] = bad
        result.per_shard[shard.name] = len(hits)
        room = max_matches - len(result.rows)
        result.capped |= len(hits) > room
        result.rows += [{"shard": shard.name, "key": k, "caption": c} for k, c in hits[:max(room, 0)]]
    if not result.rows:
        names = ", ".join(s.name for s in shards[:5]) + (" ..." if len(shards) > 5 else "")
        raise DataError(f"no caption mentions {' / '.join(matcher.terms)!r} in {len(shards)} "
                        f"shard(s) ({names}; {result.scanned} captions scanned); check the spelling "
                        f"of `concept` or add `filter.aliases`")
    return result


INDEX_FIELDS = ["shard", "key", "caption"]


def write_index(path: str | Path, rows: list[dict]) -> None:
    """The forget index: one CSV row per matched sample, in shard order."""
    write_csv(path, rows, INDEX_FIELDS)


def read_index(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} is missing; run the caption filter first (params: filter.out)")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
