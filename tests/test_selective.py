"""Selective SLUG's projection (pipeline.unlearn.selective): the projected step leaves what the
retained inputs produce unchanged."""

import pytest
import torch

from pipeline.datasets.pairs import PairData
from pipeline.datasets.shards import ReadReport
from pipeline.unlearn import selective as S
from pipeline.unlearn.slug import edited


def test_a_hand_made_layer_keeps_its_outputs_on_the_retained_inputs():
    g = torch.Generator().manual_seed(0)
    x_r = torch.randn(5, 16, generator=g)  # five retained inputs in a 16-d input space
    proj, k = S.projector(x_r.T @ x_r, energy=1.0)
    assert k == 5
    step = S.project_step("transformer.resblocks.0.mlp.c_fc.weight",
                          torch.randn(8, 16, generator=g), proj)
    assert step.abs().max() > 0.1
    assert (x_r @ step.T).abs().max() < 1e-5  # dW x = 0 for every retained x
    v = torch.randn(16, generator=g)
    v -= proj @ v  # an input off the retained span still sees the whole step
    full = torch.randn(8, 16, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(S.project_step("mlp.c_fc.weight", full, proj) @ v, full @ v)
    head = S.project_step("visual.proj", full.T, proj)  # x @ P: the input dimension first
    assert (x_r @ head).abs().max() < 1e-5


def test_the_energy_threshold_keeps_the_top_directions():
    scales = torch.tensor([10.0, 5.0, 1.0, 0.1])
    cov = torch.diag(scales ** 2)
    assert S.projector(cov, 0.7)[1] == 1  # 100 / 126 of the trace
    assert S.projector(cov, 0.95)[1] == 2
    assert S.projector(cov, 0.9999)[1] == 3  # 126 / 126.01
    assert S.projector(cov, 0.99995)[1] == 4
    p, k = S.projector(cov, 0.95)
    torch.testing.assert_close(p, torch.diag(torch.tensor([1.0, 1.0, 0.0, 0.0])))
    assert S.projector(torch.zeros(3, 3), 0.9)[1] == 0


@pytest.mark.parametrize("layer", [
    "transformer.resblocks.0.attn.in_proj_weight",
    "transformer.resblocks.0.mlp.c_fc.weight",
    "transformer.resblocks.1.attn.out_proj.weight",
    "transformer.resblocks.1.mlp.c_proj.weight",
    "text_projection",
    "visual.conv1.weight",
    "visual.transformer.resblocks.1.mlp.c_fc.weight",
    "visual.proj",
])
def test_the_projected_step_leaves_the_retained_data_unchanged(tiny, layer):
    """Energy 1: the model's features of the retained images and captions do not move, while
    the forget pairs' do."""
    model, tok = tiny.model, tiny.tokenizer
    g = torch.Generator().manual_seed(3)
    retain = PairData(torch.randn(2, 3, 32, 32, generator=g),
                      tok(["a photo of Elon Musk.", "a red star"]), ["", ""], ReadReport())
    forget = (torch.randn(2, 3, 32, 32, generator=g), tok(["Iron Man figure", "itap of a dog."]))
    p = dict(model.named_parameters())[layer]
    grad = torch.randn(p.shape, generator=g)
    res = S.project(model, {layer: grad}, retain, energy=1.0)
    assert res.skipped == [] and 0 < res.kept[layer] <= res.dims[layer]
    step = res.steps[layer]
    lam = 2.0 * float(p.detach().norm() / step.norm())  # a large edit: twice the tensor's norm
    with torch.no_grad():
        before = (model.encode_image(retain.images), model.encode_text(retain.tokens),
                  model.encode_image(forget[0]), model.encode_text(forget[1]))
    with edited(p, step, lam), torch.no_grad():
        after = (model.encode_image(retain.images), model.encode_text(retain.tokens),
                 model.encode_image(forget[0]), model.encode_text(forget[1]))
    for b, a in zip(before[:2], after[:2]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    moved = max(float((a - b).abs().max()) for a, b in zip(before[2:], after[2:]))
    assert moved > 1e-2  # the step still changes what the retained data do not span


def test_tensors_without_a_projection_are_reported(tiny):
    model = tiny.model
    retain = PairData(torch.randn(2, 3, 32, 32), tiny.tokenizer(["a", "b"]), ["", ""],
                      ReadReport())
    names = ["visual.transformer.resblocks.0.ln_1.weight", "transformer.resblocks.0.mlp.c_fc.bias",
             "transformer.resblocks.0.mlp.c_fc.weight"]
    params = dict(model.named_parameters())
    res = S.project(model, {n: torch.randn_like(params[n]) for n in names}, retain, 0.99)
    assert res.skipped == sorted(names[:2])
    assert list(res.steps) == [names[2]]


def test_the_selectivity_in_force_decides_what_the_search_steps_along(tiny):
    """``none`` hands the search the paper's gradients untouched; ``nullspace`` the projected
    ones, without the layers that have no projection; none left is one clear error."""
    from pipeline.errors import DataError
    from pipeline.unlearn import slug

    model = tiny.model
    retain = PairData(torch.randn(2, 3, 32, 32), tiny.tokenizer(["a", "b"]), ["", ""],
                      ReadReport())
    params = dict(model.named_parameters())
    names = ["transformer.resblocks.0.mlp.c_fc.weight", "transformer.resblocks.0.mlp.c_fc.bias"]
    grads = {n: torch.randn_like(params[n]) for n in params}
    same, layers, proj = slug.selective(model, grads, names, retain, slug.Selectivity())
    assert same is grads and layers == names and proj is None
    assert slug.Selectivity().method == "slug"
    sel = slug.Selectivity("nullspace", 0.99)
    out, layers, proj = slug.selective(model, grads, names, retain, sel)
    assert sel.method == "slug_nullspace" and layers == names[:1] and proj.skipped == names[1:]
    torch.testing.assert_close(out[names[0]], proj.steps[names[0]])
    assert not torch.allclose(out[names[0]], grads[names[0]])
    assert out[names[1]] is grads[names[1]]  # untouched, and not searched
    with pytest.raises(DataError, match="none of the ranked layers has a projection"):
        slug.selective(model, grads, names[1:], retain, sel)
