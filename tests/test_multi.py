"""Several concepts at once (``pipeline.unlearn.multi``) and the patch stack
(``pipeline.unlearn.stack``): the scorer's formula, what each strategy computes its gradients and
searches on, the shared-layer rescale, and the stack's order, hash checks, removal and export."""

from __future__ import annotations

import pytest
import torch

from pipeline.concept import Concept
from pipeline.datasets.pairs import PairData
from pipeline.datasets.shards import ReadReport
from pipeline.errors import ModelError
from pipeline.models.structure import state_dict_hash
from pipeline.unlearn import multi as M
from pipeline.unlearn import patch as patch_mod
from pipeline.unlearn import slug
from pipeline.unlearn import stack as S
from pipeline.unlearn.patch import Patch

NAMES = ["Elon Musk", "Taylor Swift", "Jeff Bezos"]
ELON, TAYLOR = (Concept(n, n, "identity", i) for i, n in enumerate(NAMES[:2]))


def _pairs(n, caption, tok, seed=0):
    g = torch.Generator().manual_seed(seed)
    return PairData(torch.randn(n, 3, 32, 32, generator=g), tok([caption] * n), [caption] * n,
                    ReadReport())


# ------------------------------------------------------------------------------ the scorer

def test_many_scorer_takes_the_worst_concept_and_leaves_every_concept_out_of_retain(tiny):
    tok = tiny.tokenizer
    kinds = {"identity": (NAMES, ["{}."])}
    retain_val = PairData(torch.randn(4, 3, 32, 32), tok(["Elon Musk", "Taylor Swift",
                                                          "Jeff Bezos", "Jeff Bezos here"]),
                          ["Elon Musk", "Taylor Swift", "Jeff Bezos", "Jeff Bezos here"],
                          ReadReport())
    forgets = [_pairs(3, "Elon Musk", tok, 1), _pairs(5, "Taylor Swift", tok, 2)]
    s = M.ManyScorer(tiny.model, tok, kinds, [ELON, TAYLOR], forgets, retain_val, topk=1)
    assert s.labels["identity"].tolist() == [-1, -1, 2, 2]
    forget, _, parts = s.score()
    # each concept's share on its own images, by hand
    f = s.cache.last
    clf = s._classifier(f, "identity")
    mine = [float(((f["forget"][a:b] @ clf.T).argmax(1) == i).float().mean())
            for i, (a, b) in enumerate([(0, 3), (3, 8)])]
    assert [parts["forget:Elon Musk"], parts["forget:Taylor Swift"]] == pytest.approx(mine)
    assert forget == max(mine)


# ------------------------------------------------------------- the strategies, on a fake judge

class Judge:
    """A scorer factory: concept c is forgotten once the model has moved, in total relative
    norm over every tensor, at least ``need[c]`` from its base; retain falls as it moves. It
    records the model hash each scorer was made under."""

    def __init__(self, model, need: dict[str, float]):
        self.model, self.need, self.made_on = model, need, []
        self.base = {k: v.detach().clone() for k, v in model.named_parameters()}

    def moved(self) -> float:
        return sum(float((p.detach() - self.base[k]).norm() / self.base[k].norm().clamp_min(1e-12))
                   for k, p in self.model.named_parameters())

    def __call__(self, requests):
        judge, labels = self, [r.concept.label for r in requests]
        self.made_on.append((tuple(labels), state_dict_hash(self.model)))

        class Scorer:
            def prepare(self, layer, direction=None):
                pass

            def score(self):
                m = judge.moved()
                shares = {f"forget:{c}": float(m < judge.need[c]) for c in labels}
                return max(shares.values()), 1.0 - m, shares

        return Scorer()


@pytest.fixture
def world(tiny):
    tok = tiny.tokenizer
    reqs = [M.Request(ELON, _pairs(4, "Elon Musk", tok, 1)),
            M.Request(TAYLOR, _pairs(4, "Taylor Swift", tok, 2))]
    return tiny.model, reqs, _pairs(4, "a red bar", tok, 3)


CFG = slug.SearchConfig(target=0.0, max_evals=12, scale0=0.01, rtol=0.01)
RANK = slug.RankConfig(signed=False, fronts=1, rule="front")


def test_joint_takes_every_gradient_and_first_search_at_the_base(world):
    model, reqs, retain = world
    base = state_dict_hash(model)
    judge = Judge(model, {"Elon Musk": 0.02, "Taylor Swift": 0.05})
    res = M.joint(model, reqs, retain, judge, CFG, RANK, batch_size=4, exclude=[])
    assert state_dict_hash(model) == base  # the model is left as it was
    assert set(res.states.values()) == {base}
    assert dict(judge.made_on[:2]) == {("Elon Musk",): base, ("Taylor Swift",): base}
    assert res.reached and res.final[0] == 0.0
    with M.applied(model, res.edits.values()):
        assert judge.moved() >= 0.05


def test_joint_rescales_a_shared_layer_to_the_smallest_common_step(world):
    model, reqs, retain = world
    judge = Judge(model, {"Elon Musk": 0.03, "Taylor Swift": 0.03})
    only_proj = ["transformer", "conv1", "positional", "token_embedding", "text_projection"]
    res = M.joint(model, reqs, retain, judge, CFG, RANK, batch_size=4, exclude=only_proj)
    (layer,) = {e.layer for e in res.edits.values()}  # both on visual.proj, the one candidate
    # each step alone moves the model 0.03; their sum moves it further, so it is scaled down
    # to the smallest scale at which both pass again
    assert 0 < res.scaled[layer] < 0.95
    with M.applied(model, res.edits.values()):
        assert judge.moved() == pytest.approx(0.03, rel=0.03)
    with M.applied(model, res.edits.values()):
        assert res.final[0] == 0.0


def test_sequential_computes_each_gradient_on_the_model_with_the_earlier_edits(world):
    model, reqs, retain = world
    base = state_dict_hash(model)
    judge = Judge(model, {"Elon Musk": 0.02, "Taylor Swift": 0.05})
    res = M.sequential(model, reqs, retain, judge, CFG, RANK, batch_size=4, exclude=[])
    assert state_dict_hash(model) == base
    assert res.states["Elon Musk"] == base
    with M.applied(model, [res.edits["Elon Musk"]]):
        assert res.states["Taylor Swift"] == state_dict_hash(model)
    # sequential judges every concept forgotten so far
    assert [labels for labels, _ in judge.made_on[:2]] == [("Elon Musk",),
                                                           ("Elon Musk", "Taylor Swift")]


@pytest.mark.parametrize("strategy", ["joint", "sequential"])
def test_the_selective_variant_keeps_every_step_off_the_retained_inputs(world, strategy):
    """Under nullspace each concept's step on visual.proj (the one candidate) moves no retained
    input's output of that layer, where the paper's step does."""
    from pipeline.unlearn.features import towers
    from pipeline.unlearn.gradients import mean_gradient

    model, reqs, retain = world
    judge = Judge(model, {"Elon Musk": 0.02, "Taylor Swift": 0.04})
    only_proj = ["transformer", "conv1", "positional", "token_embedding", "text_projection"]
    sel = slug.Selectivity("nullspace", energy=1.0)
    run = M.joint if strategy == "joint" else M.sequential
    res = run(model, reqs, retain, judge, CFG, RANK, batch_size=4, exclude=only_proj,
              selectivity=sel)
    assert res.selectivity == "nullspace" and M.summary(res)["selectivity"] == "nullspace"
    t = towers(model)["vision"]
    with torch.no_grad():
        x = t.pre_head(t.run(t.embed(retain.images), 0), retain.images)  # visual.proj's inputs
    raw = mean_gradient(model, reqs[0].forget, "forget", 4)[0]["visual.proj"]
    assert (x @ raw).norm() > 0.1 * x.norm() * raw.norm()  # the paper's step moves them
    for e in res.edits.values():
        assert e.layer == "visual.proj" and e.grad.norm() > 0
        assert (x @ e.grad).norm() < 1e-5 * x.norm() * e.grad.norm()


# ------------------------------------------------------------------------------- the stack

def _stack(model, strategy, layers=("visual.proj", "text_projection"), scale=0.1):
    """Two patches, made as ``multi.patches`` makes them."""
    res = M.Result(strategy, {}, {}, (0.0, 1.0, {}))
    reqs = []
    for i, (c, layer) in enumerate(zip((ELON, TAYLOR), layers)):
        theta = dict(model.named_parameters())[layer]
        g = torch.Generator().manual_seed(i)
        grad = torch.randn(theta.shape, generator=g) * theta.detach().norm() / theta.numel() ** .5
        res.edits[c.label] = M.Edit(layer, grad, scale * (i + 1), 0.0, True, 1)
        reqs.append(M.Request(c, None))
    base = state_dict_hash(model)
    with M.applied(model, [res.edits["Elon Musk"]]):
        after_first = state_dict_hash(model)
    res.states = {"Elon Musk": base,
                  "Taylor Swift": base if strategy == "joint" else after_first}
    patches = M.patches(model, res, reqs, lambda r: {"concept": r.concept.label})
    return S.Stack(strategy, base, patches), res


@pytest.mark.parametrize("shared", [False, True])
def test_a_joint_stack_adds_the_patches_differences_and_reverts_exactly(tiny, shared):
    model = tiny.model
    layers = ("visual.proj", "visual.proj") if shared else ("visual.proj", "text_projection")
    stack, res = _stack(model, "joint", layers)
    base_bytes = {k: v.clone() for k, v in model.state_dict().items()}
    with M.applied(model, res.edits.values()):
        want = {k: v.clone() for k, v in model.state_dict().items()}
    originals = S.apply(model, stack)
    for k, v in model.state_dict().items():
        assert torch.allclose(v, want[k], atol=1e-6), k
    patch_mod.revert(model, originals)
    assert all(torch.equal(v, base_bytes[k]) for k, v in model.state_dict().items())


def test_removing_a_concept_from_a_joint_stack_reapplies_the_others(tiny):
    model = tiny.model
    stack, res = _stack(model, "joint", ("visual.proj", "visual.proj"))
    rest = S.remove(stack, "elon musk")  # the name rule: any spelling of the label
    assert rest.concepts == ["Taylor Swift"]
    originals = S.apply(model, rest)
    try:
        have = model.state_dict()["visual.proj"].clone()
    finally:
        patch_mod.revert(model, originals)
    with M.applied(model, [res.edits["Taylor Swift"]]):
        assert torch.allclose(have, model.state_dict()["visual.proj"], atol=1e-6)
    with pytest.raises(ModelError, match="not in the stack"):
        S.remove(stack, "Jeff Bezos")


def test_a_sequential_stack_checks_each_patch_on_the_state_it_was_made_on(tiny):
    model = tiny.model
    base_hash = state_dict_hash(model)
    stack, res = _stack(model, "sequential")
    originals = S.apply(model, stack)
    patch_mod.revert(model, originals)
    with pytest.raises(ModelError, match="was not made at the stack's base"):
        S.Stack("sequential", stack.base_sha256, stack.patches[::-1])
    first, second = stack.patches
    lying = Patch(second.tensors, {**second.manifest, "base_model_sha256": base_hash})
    with pytest.raises(ModelError, match="this patch was made for base model"):
        S.apply(model, S.Stack("sequential", base_hash, [first, lying]))
    assert state_dict_hash(model) == base_hash  # a refused stack leaves the model as it was
    with pytest.raises(ModelError, match="computed on a model that had"):
        S.remove(stack, "Elon Musk")
    assert S.remove(stack, "Taylor Swift").concepts == ["Elon Musk"]


def test_the_stack_refuses_another_base_and_a_joint_patch_made_elsewhere(tiny):
    model = tiny.model
    stack, _ = _stack(model, "joint")
    other = S.Stack("joint", "0" * 64, [Patch(p.tensors, {**p.manifest, "base_model_sha256":
                                                          "0" * 64}) for p in stack.patches])
    with pytest.raises(ModelError, match="made for base model"):
        S.apply(model, other)
    bad = Patch(stack.patches[1].tensors, {**stack.patches[1].manifest,
                                           "base_model_sha256": "f" * 64})
    with pytest.raises(ModelError, match="was not made at the stack's base"):
        S.Stack("joint", stack.base_sha256, [stack.patches[0], bad])


def test_a_stack_round_trips_through_its_folder_and_exports_as_one_model(tiny, tmp_path):
    import open_clip

    from pipeline.models.factory import model_config

    model = tiny.model
    stack, _ = _stack(model, "joint")
    S.save(stack, tmp_path / "stack")
    back = S.load(tmp_path / "stack")
    assert back.concepts == stack.concepts and back.strategy == "joint"
    for a, b in zip(stack.patches, back.patches):
        assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    flat = S.flatten(model, back)
    assert sorted(flat.tensors) == ["text_projection", "visual.proj"]
    out = patch_mod.export(model, flat, tmp_path / "model", model_config("tiny-clip", None))
    loaded, _, _ = open_clip.create_model_and_transforms(f"local-dir:{out}")
    originals = S.apply(model, back)
    try:
        want = model.state_dict()
        assert all(torch.equal(v, want[k]) for k, v in loaded.state_dict().items())
    finally:
        patch_mod.revert(model, originals)


# ------------------------------------------------------------------ the `concepts` params

def test_concepts_aliases_and_kinds_are_checked_and_found_under_any_spelling():
    from pipeline import params
    from pipeline.errors import ParamsError
    from pipeline.sets.many import for_concept

    from .helpers import params_dict

    def load(concepts, aliases, kinds):
        return params.from_dict(params_dict({"concepts": concepts,
                                             "multi": {"aliases": aliases, "kinds": kinds}}))

    load(["Elon Musk", "Iron Man"], {"elon musk": ["Musk"]}, {"IRON MAN": "character"})
    assert for_concept("Iron Man", {"IRON MAN": "character"}, "auto") == "character"
    assert for_concept("Elon Musk", {"IRON MAN": "character"}, "auto") == "auto"
    assert for_concept("Elon  Musk", {"elon musk": ["Musk"]}, ()) == ["Musk"]
    for concepts, aliases, kinds, said in [
            (["Elon Musk", "elon musk"], {}, {}, "concepts must name each concept once"),
            (["Elon Musk", ""], {}, {}, "concepts must hold non-empty"),
            (["Elon Musk"], {"Taylor Swift": ["Tay"]}, {}, "multi.aliases.Taylor Swift names no"),
            (["Elon Musk"], {}, {"Iron Man": "character"}, "multi.kinds.Iron Man names no"),
            (["Elon Musk"], {"Elon Musk": "Musk"}, {}, "must be a list"),
            (["Iron Man"], {}, {"Iron Man": "hero"}, "must be one of auto")]:
        with pytest.raises(ParamsError, match=said):
            load(concepts, aliases, kinds)
