"""SLUG's pieces against hand-computed values and synthetic responses."""

import math

import pytest
import torch

from pipeline.unlearn import layers as L
from pipeline.unlearn import slug
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


def test_the_bisection_stops_once_the_bracket_is_tight():
    threshold, calls = 0.37, []

    def evaluate(lam):
        calls.append(lam)
        return (1.0 if lam < threshold else 0.0), 1.0 - lam, {}

    res = search_step(evaluate, lam0=0.01, target=0.0, max_evals=30, rtol=0.05)
    lo = max(t.lam for t in res.trials if not t.passed)
    assert lo < threshold <= res.best.lam <= 1.05 * lo  # tight, and the threshold inside
    # the bracket before the last trial was still loose (it stopped as soon as it could)
    prev = res.trials[:-1]
    lo0 = max(t.lam for t in prev if not t.passed)
    hi0 = min(t.lam for t in prev if t.passed)
    assert hi0 > 1.05 * lo0 and len(calls) < 30


class _Layers(torch.nn.Module):
    """Three one-tensor "layers" whose norm equals the gradient's, so lambda = scale0 * 2^k."""

    def __init__(self):
        super().__init__()
        for name in "abc":
            self.register_parameter(name, torch.nn.Parameter(torch.ones(4)))


class _Response:
    """forget = 1 below a layer's threshold, else 0; retain = r0 - slope * lambda (monotone, so
    the retain score of a failing step bounds every passing step exactly)."""

    def __init__(self, model, spec):
        self.model, self.spec, self.layer = model, spec, None
        self.calls = {k: 0 for k in spec}

    def prepare(self, layer, direction=None):
        self.layer = layer

    def score(self):
        lam = float((dict(self.model.named_parameters())[self.layer].detach() - 1).mean())
        thr, r0, slope = self.spec[self.layer]
        self.calls[self.layer] += 1
        return (0.0 if lam >= thr else 1.0), r0 - slope * lam, {}


def test_pruning_stops_the_layers_that_cannot_win_and_keeps_the_choice():
    spec = {"a": (1.0, 1.0, 0.1),   # best: about 0.9
            "b": (4.0, 1.0, 0.2),   # passes only at 4: retain 0.2 at best
            "c": (0.5, 0.8, 0.01)}  # never above 0.8
    grads = {k: torch.ones(4) for k in spec}
    model, out = _Layers(), {}
    for prune in (False, True):
        resp = _Response(model, spec)
        cfg = slug.SearchConfig(0.0, 12, 0.25, rtol=0.02, prune=prune)
        out[prune] = (slug.search(model, grads, list(spec), resp, cfg), resp.calls)
    (full, full_calls), (lean, lean_calls) = out[False], out[True]
    assert lean.layer == full.layer == "a" and lean.lam == pytest.approx(full.lam)
    by = {s.layer: s for s in lean.searches}
    assert not by["a"].result.pruned and by["b"].result.pruned and by["c"].result.pruned
    assert lean_calls["c"] == 1  # its first failing trial already bounds it below a's score
    # every pruned layer's best possible score (exact here) is below the chosen one
    for name in "bc":
        thr, r0, slope = spec[name]
        assert r0 - slope * thr < lean.trial.retain
    assert sum(lean_calls.values()) < sum(full_calls.values()) and lean_calls["a"] == full_calls["a"]
    assert all(s.monotone for s in lean.searches)
    assert all(p.detach().eq(1).all() for p in model.parameters())  # every trial reverted


def test_a_rising_retain_score_is_flagged_not_monotone():
    t = [slug.Trial(1.0, 1.0, 0.5, False), slug.Trial(2.0, 0.0, 0.6, True)]
    assert not slug.monotone(t) and slug.monotone(t[:1])


def test_nan_weights_stop_the_gradient_pass_with_one_error():
    from pipeline.errors import NumericalError
    from pipeline.models.factory import build
    from pipeline.unlearn.gradients import batch_gradient

    torch.manual_seed(0)
    m = build("tiny-clip")
    with torch.no_grad():
        m.model.visual.proj[0, 0] = float("nan")
    with pytest.raises(NumericalError, match="forget loss is not finite on a batch of 2"):
        batch_gradient(m.model, torch.randn(2, 3, 32, 32), m.tokenizer(["a", "b"]), "forget")
