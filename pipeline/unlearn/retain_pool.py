"""The amortised retain gradient (``gradients.retain: pool``).

The retain gradient barely depends on the concept, so it is computed once per base model over a
concept-independent *retain pool* (a seeded sample of the training shards, any caption) with a
fixed batch layout, and kept as two sums of ``|b| * g_b`` over the batches ``b`` of each half (the
split-half halves of ``reliability``, cut on a batch boundary).

A request's retain set is the pool without the request's own pairs (the pool pairs whose caption
mentions the concept). The retain loss is contrastive *within* a batch, so dropping pairs changes
only the batches that hold them: for each such batch the correction subtracts its gradient with
them and adds its gradient without them. The result equals a fresh pass over the pool without the
request's pairs in the same layout (``tests/test_retain_pool.py``, to 1e-6). Per-batch gradients
are not stored (64 batches times the model: 1.8 GB for the tiny CLIP, about 64 GB for ViT-H-14),
so an affected batch is recomputed with its pairs too: a request costs two batch passes per
affected batch. When that is at least a pass over every batch (``2 * affected >= batches``), the
request runs the fresh pass on the same layout instead. A batch left with fewer than 2 pairs is
dropped (no negatives for the contrastive loss).

The pool's pairs are not kept out of the search's retain validation split (``retain_val``): both
are retain data; the held-out sets are not touched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors.torch import load_file

from ..concept import Concept
from ..datasets.pairs import PairData, load_pairs
from ..datasets.shards import Shard
from ..errors import DataError, ModelError
from ..io import save_tensors, write_json
from ..models.structure import state_dict_hash
from ..sets.build import load_split, read_concept, split_hashes
from ..sets.match import ConceptMatcher
from .gradients import batch_bounds, batch_gradient, check_finite
from .reliability import half_boundary

SUMS = "sums.safetensors"
LAYOUT = "layout.json"
DATA = "pool.tar"


@dataclass
class PoolSums:
    """Per half ``h`` (0, 1): ``sums[h] = sum over its batches of |b| * g_b``, likewise ``loss``;
    ``sizes[h]`` its pairs. ``bounds[j]`` is batch ``j``'s pool index range, ``half[j]`` its half."""
    bounds: list[tuple[int, int]]
    half: list[int]
    sums: list[dict[str, torch.Tensor]]
    loss: list[float]
    sizes: list[int]
    model_sha256: str


def layout(n: int, batch_size: int) -> tuple[list[tuple[int, int]], list[int]]:
    """The pool's batches and their halves: the plain pass's layout of each half, the halves cut
    where ``reliability.half_boundary`` cuts a retain set of ``n`` pairs."""
    cut = half_boundary(n, batch_size, "retain")
    if cut is None or not cut[1]:
        raise DataError(f"a retain pool of {n} pairs has no batch-aligned half cut at batch size "
                        f"{batch_size}; use at least {2 * batch_size + 2} pairs (pool.n)")
    m = cut[0]
    a = batch_bounds(m, batch_size, "retain")
    b = [(m + s, m + e) for s, e in batch_bounds(n - m, batch_size, "retain")]
    return a + b, [0] * len(a) + [1] * len(b)


def _zeros(model) -> dict[str, torch.Tensor]:
    return {k: torch.zeros_like(p, dtype=torch.float32) for k, p in model.named_parameters()}


def _add(acc: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], w: float) -> None:
    for k, g in grads.items():
        acc[k] += w * g


def _batch(model, data: PairData, idx: Sequence[int]) -> tuple[dict[str, torch.Tensor], float]:
    i = torch.as_tensor(list(idx), dtype=torch.long)
    return batch_gradient(model, data.images[i], data.tokens[i], "retain")


def build(model, data: PairData, batch_size: int, progress=lambda x, **k: x) -> PoolSums:
    """The one-time pass over the pool (the model in eval mode, left unchanged)."""
    bounds, half = layout(len(data.images), batch_size)
    model.eval()
    sums, loss, sizes = [_zeros(model), _zeros(model)], [0.0, 0.0], [0, 0]
    for (s, e), h in zip(progress(bounds, desc="retain pool"), half):
        g, lo = _batch(model, data, range(s, e))
        _add(sums[h], g, e - s)
        loss[h] += (e - s) * lo
        sizes[h] += e - s
    for h in (0, 1):
        check_finite(sums[h], "retain pool")
    return PoolSums(bounds, half, sums, loss, sizes, state_dict_hash(model))


@dataclass
class Corrected:
    """A request's retain gradient: the full mean, each half's mean and size, and what it cost."""
    full: dict[str, torch.Tensor]
    loss: float
    n: int
    halves: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]
    sizes: tuple[int, int]
    dropped: int  # pool pairs left out (the request's own)
    affected: int  # batches that held one
    batches: int  # batches in the pool
    passes: int  # batch passes this request ran
    fresh: bool  # ran the fresh pass instead of the correction

    def cost(self) -> dict:
        """What the request cost, for a manifest."""
        return {k: getattr(self, k) for k in ("n", "dropped", "affected", "batches", "passes",
                                              "fresh")}

    def line(self) -> str:
        return (f"retain pool without the concept's {self.dropped} pairs: {self.passes} batch "
                f"passes for {self.affected} of {self.batches} batches"
                + (" (the fresh pass: cheaper than the correction)" if self.fresh else ""))


class PoolRequest:
    """The pool without the pairs ``drop`` (pool indices): what ``gradients.gradient_pass`` and
    ``reliability.split_pass`` take as ``retain``. ``fresh_at``: run the fresh pass when the
    correction would cost at least this share of it (1: the rule in the module doc)."""

    def __init__(self, pool: PoolSums, data: PairData, drop: Sequence[int], fresh_at: float = 1.0,
                 progress=lambda x, **k: x):
        if len(data.images) != pool.bounds[-1][1]:
            raise DataError(f"the retain pool's sums cover {pool.bounds[-1][1]} pairs, its data "
                            f"{len(data.images)}; rebuild the pool")
        self.pool, self.data, self.drop = pool, data, set(int(i) for i in drop)
        self.fresh_at, self.progress = fresh_at, progress
        self.last: Corrected | None = None  # the latest ``compute``, for a manifest

    def compute(self, model) -> Corrected:
        if state_dict_hash(model) != self.pool.model_sha256:
            raise ModelError("the retain pool was built on another base model "
                             f"({self.pool.model_sha256[:12]}...); rebuild it for this one")
        pool, drop = self.pool, self.drop
        kept = [[i for i in range(s, e) if i not in drop] for s, e in pool.bounds]
        hit = [j for j, (s, e) in enumerate(pool.bounds) if len(kept[j]) < e - s]
        fresh = 2 * len(hit) >= self.fresh_at * len(pool.bounds)
        model.eval()
        if fresh:
            sums, loss, sizes = [_zeros(model), _zeros(model)], [0.0, 0.0], [0, 0]
            todo = [(j, None) for j in range(len(pool.bounds))]
        else:
            sums = [{k: v.clone() for k, v in pool.sums[h].items()} for h in (0, 1)]
            loss, sizes = list(pool.loss), list(pool.sizes)
            todo = [(j, sign) for j in hit for sign in (-1, 1)]
        passes = 0
        for j, sign in self.progress(todo, desc="retain correction"):
            h, (s, e) = pool.half[j], pool.bounds[j]
            idx = range(s, e) if sign == -1 else kept[j]
            if len(idx) < 2:
                continue
            g, lo = _batch(model, self.data, idx)
            w = len(idx) * (sign or 1)  # a batch's share is its size; -1: take it out
            _add(sums[h], g, w)
            loss[h] += w * lo
            sizes[h] += w
            passes += 1
        if min(sizes) < 2:
            raise DataError(f"the retain pool keeps {sizes} pairs per half once the request's "
                            f"{len(drop)} pairs are dropped; use a larger pool (pool.n)")
        halves = tuple({k: v / sizes[h] for k, v in sums[h].items()} for h in (0, 1))
        n = sizes[0] + sizes[1]
        full = {k: (sums[0][k] + sums[1][k]) / n for k in sums[0]}
        check_finite(full, "retain")
        self.last = Corrected(full, (loss[0] + loss[1]) / n, n, halves, (sizes[0], sizes[1]),
                              len(drop), len(hit), len(pool.bounds), passes, fresh)
        return self.last


def request(pool: PoolSums, data: PairData, mentions: Callable[[str], bool],
            progress=lambda x, **k: x) -> PoolRequest:
    """The pool without the pairs whose caption ``mentions`` the concept (a ``ConceptMatcher``,
    the rule the retain set is built with)."""
    return PoolRequest(pool, data, [i for i, c in enumerate(data.captions) if mentions(c)],
                       progress=progress)


def save(folder: str | Path, pool: PoolSums, manifest: dict) -> None:
    folder = Path(folder)
    save_tensors(folder / SUMS, {f"{h}/{k}": v for h in (0, 1) for k, v in pool.sums[h].items()})
    write_json(folder / LAYOUT, {"bounds": pool.bounds, "half": pool.half, "loss": pool.loss,
                                 "sizes": pool.sizes, "model_sha256": pool.model_sha256,
                                 **manifest})


def load(folder: str | Path) -> tuple[PoolSums, dict]:
    """The pool's sums and its layout file (which also carries the build's provenance)."""
    folder = Path(folder)
    for f in (SUMS, LAYOUT, DATA):
        if not (folder / f).exists():
            raise DataError(f"{folder / f} is missing; run the retain_pool stage (params: pool.out)")
    meta = json.loads((folder / LAYOUT).read_text())
    flat = load_file(str(folder / SUMS))
    sums = [{k.split("/", 1)[1]: v for k, v in flat.items() if k.startswith(f"{h}/")}
            for h in (0, 1)]
    return PoolSums([tuple(b) for b in meta["bounds"]], meta["half"], sums, meta["loss"],
                    meta["sizes"], meta["model_sha256"]), meta


def load_data(folder: str | Path, preprocess: Callable, tokenizer: Callable) -> PairData:
    """The pool's pairs, in the order its layout indexes them."""
    path = Path(folder) / DATA
    if not path.exists():
        raise DataError(f"{path} is missing; run the retain_pool stage (params: pool.out)")
    return load_pairs([Shard(path)], preprocess, tokenizer)


def open_request(folder: str | Path, preprocess: Callable, tokenizer: Callable, concept: Concept,
                 progress=lambda x, **k: x) -> tuple[PoolRequest, dict]:
    """The stored pool (``pool.out``) without the pairs that mention ``concept`` (the rule the
    retain split is built with), and its layout file (the build's provenance: ``time_s``,
    ``data.sha256``)."""
    pool, meta = load(folder)
    return request(pool, load_data(folder, preprocess, tokenizer),
                   ConceptMatcher(concept.name, concept.aliases), progress), meta


def retain_input(mode: str, sets: str | Path, pool_folder: str | Path, preprocess: Callable,
                 tokenizer: Callable) -> tuple[PairData | PoolRequest, dict]:
    """What the gradient pass takes as ``retain`` under ``gradients.retain`` (``fresh``: the
    sets' retain split; ``pool``: the pool without the concept's pairs), and the hash of what it
    reads, for a manifest."""
    if mode == "pool":
        req, meta = open_request(pool_folder, preprocess, tokenizer, read_concept(sets))
        return req, {DATA: meta["data"]["sha256"]}
    return load_split(sets, "retain", preprocess, tokenizer), split_hashes(sets, ("retain",))
