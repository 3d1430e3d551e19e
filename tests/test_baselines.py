"""The baselines: SSD's rule on hand-made importances, the saliency mask, the stop rule, and each
method moving the forget pairs' cosine the right way on a micro problem."""

import dataclasses

import pytest
import torch

from pipeline.models.factory import build
from pipeline.unlearn.baselines import (
    BaselineData,
    StopRule,
    iterative,
    run_method,
    ssd,
)
from pipeline.unlearn.compare import baseline_settings
from pipeline.unlearn.losses import paired_cosine, retain_loss

from .helpers import make_params, random_pairs


def _settings(method: str, **over):
    """A baseline's settings from params.yaml, with the test's changes."""
    return dataclasses.replace(baseline_settings(make_params().baselines, method, 0), **over)


def test_ssd_dampening_on_hand_made_importances():
    i_f = torch.tensor([10.0, 10.0, 1.0, 0.0, 50.0])
    i_r = torch.tensor([0.5, 2.0, 1.0, 0.0, 1.0])
    d = ssd.dampening(i_f, i_r, alpha=10.0, lam=1.0)
    # selected where I_f > 10 I_r: entries 0 (10 > 5) and 4 (50 > 10); factor lam I_r / I_f
    assert torch.allclose(d, torch.tensor([0.05, 1.0, 1.0, 1.0, 0.02]))
    # a large lam caps the factor at 1 (selected but not dampened)
    assert torch.allclose(ssd.dampening(i_f, i_r, 10.0, lam=100.0), torch.ones(5))
    # a lower alpha selects more: entry 1 (10 > 5 * 2)
    assert ssd.dampening(i_f, i_r, alpha=4.0, lam=1.0)[1] == pytest.approx(0.2)


def test_ssd_leaves_scalars_alone_and_reports_the_changed_share():
    model = torch.nn.Linear(2, 2)
    model.register_parameter("scale", torch.nn.Parameter(torch.tensor(3.0)))
    originals = {k: p.detach().clone() for k, p in model.named_parameters()}
    i_f = {"weight": torch.tensor([[100.0, 0.0], [0.0, 0.0]]), "bias": torch.zeros(2),
           "scale": torch.tensor(100.0)}
    i_r = {"weight": torch.ones(2, 2), "bias": torch.ones(2), "scale": torch.tensor(1.0)}
    share = ssd.apply_dampening(model, originals, i_f, i_r, alpha=10.0, lam=1.0)
    assert share == pytest.approx(1 / 6)  # one of 4 + 2 entries; the scalar is not eligible
    assert model.weight[0, 0].item() == pytest.approx(originals["weight"][0, 0].item() * 0.01)
    assert model.scale.item() == 3.0 and torch.equal(model.bias, originals["bias"])


def test_saliency_mask_is_a_global_top_fraction_of_non_zero_gradients():
    grads = {"a": torch.tensor([4.0, -3.0, 0.0, 0.0]), "b": torch.tensor([[1.0, -2.0], [0.0, 0.0]])}
    m = iterative.saliency_mask(grads, 0.5)  # 2 of the 4 non-zero entries: |4| and |-3|
    assert m["a"].tolist() == [True, True, False, False] and not m["b"].any()
    m = iterative.saliency_mask(grads, 0.75)  # 3 of 4, ranked across tensors: 4, 3, then |-2|
    assert m["b"].tolist() == [[False, True], [False, False]]
    m = iterative.saliency_mask(grads, 1.0)  # zeros are never salient
    assert int(sum(v.sum() for v in m.values())) == 4


def test_no_weight_decay_on_norms_biases_and_logit_scale():
    model = build("tiny-clip").model
    opt = iterative.optimizer(model, 1e-3, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in opt.param_groups[0]["params"]}
    assert opt.param_groups[1]["weight_decay"] == 0.0
    assert "visual.conv1.weight" in decayed and "logit_scale" not in decayed
    assert not any("ln_" in n or n.endswith("bias") for n in decayed)


class ScriptedScorer:
    """Returns a scripted forget score per call (the stop rule only needs ``score()``)."""

    def __init__(self, values):
        self.values, self.calls = list(values), 0

    def score(self):
        v = self.values[min(self.calls, len(self.values) - 1)]
        self.calls += 1
        return v, 0.5, {}


@pytest.fixture(scope="module")
def micro():
    forget = random_pairs(16, "a photo of Elon Musk.", 1)
    retain = random_pairs(32, "a photo of object number {}.", 2)
    return BaselineData(forget, retain)


def test_stop_rule_stops_training_at_the_first_passing_check(micro):
    model = build("tiny-clip").model
    rule = StopRule(ScriptedScorer([0.9, 0.5, 0.01, 0.0]), target=0.02)
    cfg = _settings("ga", lr=1e-4, epochs=10, batch_size=8, checks_per_epoch=2)
    out = run_method("ga", model, micro, cfg, rule)
    # GA over 16 pairs in batches of 8: 2 steps per epoch, a check after each step
    assert out.reached and len(out.checks) == 3 and out.steps == 3 and out.epochs == 1.5
    assert out.time_to_forget_s == pytest.approx(out.checks[-1].elapsed_s)


def test_stop_rule_runs_out_of_epochs_without_reaching(micro):
    model = build("tiny-clip").model
    rule = StopRule(ScriptedScorer([0.9]), target=0.02)
    cfg = _settings("ft", lr=1e-4, epochs=3, batch_size=16, checks_per_epoch=1)
    out = run_method("ft", model, micro, cfg, rule)
    assert not out.reached and out.time_to_forget_s is None
    assert len(out.checks) == 3 and out.epochs == 3 and out.steps == 6  # 32 retain / 16


class CosineScorer:
    """forget = the forget pairs' mean cosine: the quantity every method attacks."""

    def __init__(self, model, data):
        self.model, self.data = model, data

    @torch.no_grad()
    def score(self):
        f = self.data.forget
        out = self.model(f.images, f.tokens)
        return float(paired_cosine(out["image_features"], out["text_features"]).mean()), 0.0, {}


@torch.no_grad()
def _retain_loss(model, data):
    out = model(data.retain.images, data.retain.tokens)
    return float(retain_loss(out["image_features"], out["text_features"], out["logit_scale"]))


@pytest.mark.parametrize("method", ["ft", "ga", "gaft", "salun_ref", "ssd"])
def test_each_baseline_moves_its_metric_the_right_way(micro, method):
    torch.manual_seed(0)
    model = build("tiny-clip").model
    base = {k: p.detach().clone() for k, p in model.named_parameters()}
    scorer = CosineScorer(model, micro)
    before, _, _ = scorer.score()
    rl_before = _retain_loss(model, micro)
    target = before - 0.05
    if method == "ssd":
        cfg = _settings("ssd", alpha=10.0, batch_size=1, max_evals=6)
    else:
        cfg = _settings(method, lr=1e-3, epochs=3, batch_size=8, checks_per_epoch=1)
    out = run_method(method, model, micro, cfg, StopRule(scorer, target))
    after, _, _ = scorer.score()
    changed = {k for k, p in model.named_parameters() if not torch.equal(p, base[k])}
    assert changed, f"{method} changed nothing"
    if method == "ft":  # FT only descends the retain loss; it has no forget signal of its own
        assert _retain_loss(model, micro) < rl_before
    else:
        assert after <= target < before and out.reached
    if method == "salun_ref":  # only the salient half (at most) may move
        moved = sum(int((p.detach() != base[k]).sum()) for k, p in model.named_parameters())
        assert moved <= 0.5 * sum(v.numel() for v in base.values())


def test_meter_sees_a_block_allocation_each_time():
    from pipeline.measure import Meter

    for _ in range(2):  # the second block must not look free because the first left heap room
        with Meter() as m:
            x = torch.ones(32, 1024, 1024)  # 128 MiB
            y = x * 2
            del x, y
        assert m.peak_bytes >= 100 * 2**20 and m.time_s > 0
