"""Split-half reliability of the layer ranking (``pipeline.unlearn.reliability``): the halves add
up to the plain gradient pass, the agreement measures give hand-derived values on hand-built
inputs (each was broken once on purpose to see its test fail), and the rank stage reports them."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pipeline.datasets.pairs import PairData
from pipeline.datasets.shards import ReadReport
from pipeline.io import write_json
from pipeline.models.factory import build
from pipeline.unlearn import reliability as R
from pipeline.unlearn.gradients import gradient_pass

from .helpers import make_params, random_pairs


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return (build("tiny-clip").model, random_pairs(13, "a photo of Elon Musk {}.", 1),
            random_pairs(41, "a photo of object number {}.", 2))


def _max_rel_err(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).norm() / a[k].norm()) for k in a if a[k].norm() > 0)


@pytest.mark.parametrize("batch_size,aligned", [(8, True), (40, False)])
def test_the_halves_combine_to_the_plain_pass(tiny, batch_size, aligned):
    """Batch 8: both cuts on a batch boundary (forget 8 + 5, retain 24 + 17: the retain half B's
    1-pair last batch is folded as in the plain pass); batch 40: no aligned cut (the retain
    gradient comes from a plain pass, the forget loss is a per-pair mean)."""
    model, forget, retain = tiny
    plain = gradient_pass(model, forget, retain, batch_size)
    split = R.split_pass(model, forget, retain, batch_size)
    assert split.aligned == {"forget": aligned, "retain": aligned}
    assert sum(split.forget_sizes) == 13 and sum(split.retain_sizes) == 41
    if aligned:
        assert split.forget_sizes == (8, 5) and split.retain_sizes == (24, 17)
    assert _max_rel_err(plain.forget, split.forget) < 1e-5
    assert _max_rel_err(plain.retain, split.retain) < 1e-5
    assert split.forget_loss == pytest.approx(plain.forget_loss, rel=1e-6)
    assert split.retain_loss == pytest.approx(plain.retain_loss, rel=1e-6)
    # the halves are the halves' own mean gradients
    fa, _ = split.forget_halves
    alone = gradient_pass(model, PairData(forget.images[:split.forget_sizes[0]],
                                          forget.tokens[:split.forget_sizes[0]], [], ReadReport()),
                          retain, batch_size)
    assert _max_rel_err(alone.forget, fa) < 1e-5
    rows = R.stats_table(model, split, ["bias"])
    assert all(set(R.HALF_COLUMNS) <= set(r) for r in rows)
    assert all(r["abs_alignment_a"] == abs(r["alignment_a"]) for r in rows)
    assert all(-1 <= r["retain_half_cosine"] <= 1 for r in rows)


def test_half_boundary():
    assert R.half_boundary(1024, 128, "retain") == (512, True)
    assert R.half_boundary(1024, 16, "retain") == (512, True)
    assert R.half_boundary(300, 128, "retain") == (128, True)  # ceil(300/2)=150 rounds to 128
    assert R.half_boundary(130, 128, "retain") == (128, True)  # half B: 2 pairs, one batch
    assert R.half_boundary(129, 128, "retain") == (65, False)  # half B would have 1 pair
    assert R.half_boundary(129, 128, "forget") == (128, True)
    assert R.half_boundary(60, 128, "retain") == (30, False)
    assert R.half_boundary(3, 8, "retain") is None and R.half_boundary(1, 8, "forget") is None


def test_spearman_on_hand_made_inputs():
    assert R.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert R.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert R.spearman([0.1, 0.5, 0.2, 9.0], [1, 3, 2, 4]) == pytest.approx(1.0)  # ranks only
    # ties take their mean rank: x -> [1, 2.5, 2.5, 4], y -> [1, 3, 2, 4]; by hand 3 / sqrt(10)
    assert R.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(3 / math.sqrt(10))
    # no ties: 1 - 6 sum(d^2) / (n (n^2 - 1)); d = (2, 1, 1, 1, 1): 1 - 6 * 8 / 120 = 0.6
    assert R.spearman([1, 2, 3, 4, 5], [3, 1, 2, 5, 4]) == pytest.approx(0.6)
    assert R.spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    assert R.spearman([1, 2], [1, 2]) is None and R.spearman([1, 1, 1], [1, 2, 3]) is None
    scipy_stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, generator=g).tolist(), torch.randn(30, generator=g).tolist()
    y[3] = y[7]  # a tie
    assert R.spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic)


def test_jaccard_and_spearman_brown():
    assert R.jaccard({"a", "b", "c"}, {"b", "c", "d"}) == pytest.approx(0.5)
    assert R.jaccard({"a"}, {"b"}) == 0.0 and R.jaccard(set(), set()) == 1.0
    assert R.spearman_brown(0.5) == pytest.approx(2 / 3)
    assert R.spearman_brown(-0.3) == 0.0 and R.spearman_brown(None) is None


def _row(name, tw, imp, a, b, rcos=0.1, fcos=0.9):
    return {"name": name, "tower": tw, "importance_a": imp, "importance_b": imp,
            "alignment_a": -a, "alignment_b": b, "abs_alignment_a": a, "abs_alignment_b": b,
            "retain_half_cosine": rcos, "forget_half_cosine": fcos}


def test_reliability_on_hand_made_rows():
    """text: the halves agree (front {t1} in both); vision: alignment reversed in half B, so
    half A's front is {v1} and half B's is all three (no layer dominates another)."""
    rows = [_row("t1", "text", 3, 0.1, 0.1, 0.2), _row("t2", "text", 2, 0.2, 0.2, 0.4),
            _row("t3", "text", 1, 0.3, 0.3, 0.3),
            _row("v1", "vision", 3, 0.1, 0.3, -0.1), _row("v2", "vision", 2, 0.2, 0.2, 0.0),
            _row("v3", "vision", 1, 0.3, 0.1, 0.5)]
    rel = R.reliability(rows, False, 1, ["v1", "t2"])
    assert rel["text"]["alignment_spearman"] == 1.0 and rel["vision"]["alignment_spearman"] == -1.0
    assert rel["text"]["importance_spearman"] == 1.0
    assert rel["text"]["front_jaccard"] == 1.0
    assert rel["vision"]["front_jaccard"] == pytest.approx(0.3333)
    assert (rel["text"]["selected"], rel["text"]["selected_on_both_fronts"]) == (1, 0)
    assert (rel["vision"]["selected"], rel["vision"]["selected_on_both_fronts"]) == (1, 1)
    assert rel["text"]["retain_half_cosine_median"] == 0.3
    assert rel["vision"]["retain_half_cosine_median"] == 0.0
    assert rel["vision"]["alignment_spearman_brown"] == 0.0
    # signed: half A's signed alignment is -|.|, so its ranking flips against half B's
    assert R.reliability(rows, True, 1, [])["text"]["alignment_spearman"] == -1.0
    assert R.reliability(rows, False, 3, [])["vision"]["front_jaccard"] == 1.0
    # rows without half columns (a set too small to split): no reliability
    assert R.reliability([{k: v for k, v in r.items() if k != "alignment_b"} for r in rows],
                         False, 1, []) is None


def test_rank_stage_writes_reliability(tiny, tmp_path, monkeypatch):
    """The rank stage, in process, on layers from a real split pass."""
    import stages.rank

    model, forget, retain = tiny
    rows = R.stats_table(model, R.split_pass(model, forget, retain, 8),
                         ["bias", "logit_scale", "position", "embedding", "ln_"])
    write_json(tmp_path / "grads" / "layers.json", rows)
    p = make_params({"gradients": {"out": str(tmp_path / "grads")},
                     "rank": {"out": str(tmp_path / "rank")}})
    monkeypatch.chdir(tmp_path)
    stages.rank.main(p)
    metrics = json.loads((tmp_path / "metrics" / "rank.json").read_text())
    selection = json.loads((tmp_path / "rank" / "selection.json").read_text())
    rel = metrics["reliability"]
    assert rel == selection["reliability"] and set(rel) == {"text", "vision"}
    for v in rel.values():
        assert -1 <= v["alignment_spearman"] <= 1 and 0 <= v["front_jaccard"] <= 1
        assert v["selected_on_both_fronts"] <= v["selected"]
        assert all(x is None or round(x, 4) == x for x in v.values())
    header = (tmp_path / "plots" / "rank" / "layers.csv").read_text().splitlines()[0]
    assert set(R.HALF_COLUMNS) <= set(header.split(","))


@pytest.mark.slow
def test_pipeline_rank_reports_reliability(micro_repo):
    """The micro pipeline's gradients and rank stages (retain 60 pairs: halves of 32 + 28 at
    batch 16, 30 + 30 at batch 128, where no cut is batch-aligned)."""
    rel = json.loads((micro_repo / "metrics" / "rank.json").read_text())["reliability"]
    assert set(rel) == {"text", "vision"}
    assert all({"alignment_spearman", "importance_spearman", "front_jaccard",
                "retain_half_cosine_median", "forget_half_cosine_median"} <= set(v)
               for v in rel.values())
    manifest = json.loads((micro_repo / "data" / "grads" / "manifest.json").read_text())
    n_a, n_b = manifest["halves"]["retain"]
    assert n_a + n_b == manifest["n_retain"] == 60 and min(n_a, n_b) >= 28
    rows = json.loads((micro_repo / "data" / "grads" / "layers.json").read_text())
    assert all(set(R.HALF_COLUMNS) <= set(r) for r in rows)


def test_the_forget_cap_reads_only_the_first_pairs(tiny):
    """``gradients.max_forget``: both passes see the first N forget pairs, and only those; the
    retain gradient is untouched."""
    model, forget, retain = tiny
    first = PairData(forget.images[:6], forget.tokens[:6], forget.captions[:6], ReadReport(),
                     forget.keys[:6])
    want = gradient_pass(model, first, retain, 8)
    for got in (gradient_pass(model, forget, retain, 8, max_forget=6),
                R.split_pass(model, forget, retain, 8, max_forget=6)):
        assert got.n_forget == 6 and _max_rel_err(want.forget, got.forget) < 1e-5
        assert _max_rel_err(want.retain, got.retain) < 1e-5
    full = gradient_pass(model, forget, retain, 8, max_forget=None)
    assert full.n_forget == 13 and _max_rel_err(want.forget, full.forget) > 1e-3
