"""SLUG's pieces against hand-computed values and synthetic responses."""

import math

import pytest
import torch

from pipeline.unlearn import layers as L
from pipeline.unlearn.losses import forget_loss, retain_loss
from pipeline.unlearn.slug import edited, search_step


def test_forget_loss_matches_hand_computation():
    v = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[1.0, 1.0], [0.0, -1.0]])
    # cos = 1/sqrt(2) and -1  ->  mean(1 - cos) = ((1 - 0.7071) + 2) / 2
    assert forget_loss(v, t).item() == pytest.approx((1 - 1 / math.sqrt(2) + 2) / 2, abs=1e-6)


def test_retain_loss_matches_hand_computation():
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    s = 2.0
    # logits = s * v t^T = [[2, 2], [0, 0]]; rows: CE([2,2],0)=ln2, CE([0,0],1)=ln2
    # columns: [2,0] target 0 -> ln(1+e^-2); [2,0] target 1 -> 2 + ln(1+e^-2)
    rows = math.log(2)
    cols = (math.log(1 + math.exp(-2)) + 2 + math.log(1 + math.exp(-2))) / 2
    assert retain_loss(v, t, torch.tensor(s)).item() == pytest.approx(0.5 * (rows + cols), abs=1e-6)


def test_layer_stats():
    theta = torch.tensor([[3.0, 4.0]])
    gf = torch.tensor([[1.0, 0.0]])
    gr = torch.tensor([[-1.0, 1.0]])
    s = L.layer_stats(theta, gf, gr)
    assert s["norm_theta"] == pytest.approx(5) and s["importance"] == pytest.approx(0.2)
    assert s["dot"] == pytest.approx(-1)
    assert s["alignment"] == pytest.approx(-1 / math.sqrt(2))
    assert s["abs_alignment"] == pytest.approx(1 / math.sqrt(2))


def test_pareto_front_on_hand_made_points():
    # (alignment, importance): B dominates D (lower x, higher y); ties are kept
    align = [0.1, 0.2, 0.5, 0.3, 0.5]
    imp = [0.1, 0.5, 0.9, 0.4, 0.9]
    assert L.pareto_front(align, imp) == [True, True, True, False, True]


def test_candidates_towers_and_rules():
    assert L.is_candidate("visual.transformer.resblocks.0.attn.out_proj.weight", torch.zeros(2, 2),
                          ["bias", "ln_"])
    assert not L.is_candidate("visual.transformer.resblocks.0.attn.out_proj.bias", torch.zeros(2),
                              ["bias"])
    assert not L.is_candidate("token_embedding.weight", torch.zeros(2, 2), ["embedding"])
    rows = L.annotate([
        {"name": "visual.transformer.resblocks.0.mlp.c_fc.weight", "importance": 0.5, "abs_alignment": 0.1, "alignment": 0.1},
        {"name": "visual.transformer.resblocks.1.mlp.c_fc.weight", "importance": 0.6, "abs_alignment": 0.3, "alignment": -0.3},
        {"name": "visual.conv1.weight", "importance": 0.9, "abs_alignment": 0.8, "alignment": 0.8},
        {"name": "transformer.resblocks.0.attn.out_proj.weight", "importance": 0.2, "abs_alignment": 0.05, "alignment": 0.05},
        {"name": "text_projection", "importance": 0.1, "abs_alignment": 0.5, "alignment": 0.5},
    ])
    assert [r["tower"] for r in rows] == ["vision"] * 3 + ["text"] * 2
    assert [r["on_front"] for r in rows] == [True, True, True, True, False]
    assert L.select(rows, "deepest") == ["transformer.resblocks.0.attn.out_proj.weight",
                                         "visual.transformer.resblocks.1.mlp.c_fc.weight"]
    assert L.select(rows, "best_ratio")[1] == "visual.transformer.resblocks.0.mlp.c_fc.weight"
    assert L.naive_choice(rows) == "visual.conv1.weight"
    with pytest.raises(ValueError, match="allowed: front, deepest, best_ratio"):
        L.select(rows, "max")


def test_search_finds_the_threshold_of_a_monotone_response():
    threshold = 0.37
    calls = []

    def evaluate(lam):
        calls.append(lam)
        return (1.0 if lam < threshold else 0.0), 1.0 - lam, {}

    res = search_step(evaluate, lam0=0.01, target=0.0, max_evals=10)
    assert len(calls) == 10
    assert calls[:6] == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.16, 0.32])
    assert res.best.lam >= threshold and res.best.lam - threshold < 0.64 / 2 ** 4
    assert all(t.passed == (t.lam >= threshold) for t in res.trials)


def test_search_reports_failure_when_the_target_is_never_reached():
    res = search_step(lambda lam: (0.5, 1.0, {}), lam0=1.0, target=0.0, max_evals=4)
    assert res.best is None and [t.lam for t in res.trials] == [1, 2, 4, 8]


def test_edited_restores_exact_bytes():
    p = torch.nn.Parameter(torch.randn(4, 4))
    before = p.detach().clone()
    g = torch.randn(4, 4)
    with edited(p, g, 0.3):
        assert torch.allclose(p, before + 0.3 * g)
    assert torch.equal(p, before)
