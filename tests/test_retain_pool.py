"""The amortised retain gradient (``pipeline.unlearn.retain_pool``): the pool's sums corrected for
a request's own pairs equal a fresh pass over the pool without them in the same layout (the
correction was broken once, by skipping the "take the batch out" pass, to see these fail)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pipeline.errors import DataError, ModelError
from pipeline.models.factory import build
from pipeline.sets.match import ConceptMatcher
from pipeline.unlearn import reliability as R
from pipeline.unlearn import retain_pool as RP
from pipeline.unlearn.gradients import gradient_pass, mean_gradient

from .helpers import random_pairs

BATCH = 4
MENTIONS = (5, 6, 22)  # pool pairs whose caption names the concept: batches 1 and 5 of 10


@pytest.fixture(scope="module")
def world():
    torch.manual_seed(0)
    model = build("tiny-clip").model
    data = random_pairs(40, "a photo of object number {}.", 3)
    data.captions = [("a photo of Elon Musk, " + c) if i in MENTIONS else c
                     for i, c in enumerate(data.captions)]
    forget = random_pairs(9, "a photo of Elon Musk {}.", 4)
    return model, data, forget, RP.build(model, data, BATCH)


def _rel(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).norm() / b[k].norm()) for k in b if b[k].norm() > 0)


def _fresh(model, data, pool: RP.PoolSums, drop: set[int]):
    """An independent fresh pass over the kept pairs of each pool batch (plain mean gradients)."""
    sums, sizes, loss = [None, None], [0, 0], [0.0, 0.0]
    for (s, e), h in zip(pool.bounds, pool.half):
        idx = torch.tensor([i for i in range(s, e) if i not in drop])
        if len(idx) < 2:
            continue
        part = dataclasses.replace(data, images=data.images[idx], tokens=data.tokens[idx],
                                   captions=[data.captions[i] for i in idx], keys=[])
        g, lo = mean_gradient(model, part, "retain", len(idx))
        sums[h] = {k: v * len(idx) for k, v in g.items()} if sums[h] is None else \
            {k: sums[h][k] + v * len(idx) for k, v in g.items()}
        sizes[h] += len(idx)
        loss[h] += lo * len(idx)
    n = sum(sizes)
    halves = [{k: v / sizes[h] for k, v in sums[h].items()} for h in (0, 1)]
    return {k: (sums[0][k] + sums[1][k]) / n for k in sums[0]}, halves, sizes, sum(loss) / n


def test_layout_is_the_split_pass_layout(world):
    _, data, _, pool = world
    assert pool.bounds == [(i, i + BATCH) for i in range(0, 40, BATCH)]
    assert pool.half == [0] * 5 + [1] * 5 and pool.sizes == [20, 20]
    with pytest.raises(DataError, match="pool.n"):
        RP.layout(5, BATCH)


@pytest.mark.parametrize("drop,n,passes", [
    (set(MENTIONS), 37, (4, 10)),
    ({0, 1, 2, 22}, 35, (3, 9)),  # batch 0 keeps 1 pair: taken out, not put back
])
def test_correction_equals_a_fresh_pass_on_the_same_layout(world, drop, n, passes):
    model, data, _, pool = world
    want_full, want_halves, want_sizes, want_loss = _fresh(model, data, pool, drop)
    for fresh_at, fresh, cost in ((1.0, False, passes[0]), (0.0, True, passes[1])):
        got = RP.PoolRequest(pool, data, sorted(drop), fresh_at=fresh_at).compute(model)
        assert got.fresh is fresh and got.affected == 2 and got.dropped == len(drop)
        assert got.passes == cost and got.n == n and got.sizes == tuple(want_sizes)
        assert _rel(got.full, want_full) < 1e-6
        assert _rel(got.halves[0], want_halves[0]) < 1e-6
        assert _rel(got.halves[1], want_halves[1]) < 1e-6
        assert got.loss == pytest.approx(want_loss, rel=1e-6)


def test_an_untouched_pool_is_the_plain_split_pass(world):
    model, data, forget, pool = world
    plain = R.split_pass(model, forget, data, BATCH)
    got = R.split_pass(model, forget, RP.PoolRequest(pool, data, []), BATCH)
    assert _rel(got.retain, plain.retain) < 1e-6
    assert got.retain_sizes == plain.retain_sizes and got.n_retain == 40
    assert _rel(got.retain_halves[1], plain.retain_halves[1]) < 1e-6
    assert got.retain_loss == pytest.approx(plain.retain_loss, rel=1e-6)


def test_a_request_drops_the_pairs_that_mention_the_concept(world, tmp_path):
    model, data, forget, pool = world
    req = RP.request(pool, data, ConceptMatcher("Elon Musk", []))
    assert req.drop == set(MENTIONS)
    g = gradient_pass(model, forget, req, BATCH)
    want_full, *_ = _fresh(model, data, pool, set(MENTIONS))
    assert g.n_retain == 37 and _rel(g.retain, want_full) < 1e-6
    RP.save(tmp_path, pool, {"note": "test"})
    (tmp_path / RP.DATA).touch()
    loaded, meta = RP.load(tmp_path)
    assert meta["note"] == "test" and loaded.bounds == pool.bounds
    again = RP.PoolRequest(loaded, data, sorted(MENTIONS)).compute(model)
    assert _rel(again.full, want_full) < 1e-6


def test_the_pool_refuses_another_base_model(world):
    model, data, _, pool = world
    other = build("tiny-clip").model
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    with pytest.raises(ModelError, match="another base model"):
        RP.PoolRequest(pool, data, []).compute(other)
    with pytest.raises(DataError, match="rebuild the pool"):
        RP.PoolRequest(pool, dataclasses.replace(data, images=data.images[:8]), [])
    assert model is not other
