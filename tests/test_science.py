"""Tests that pin the science: each behaviour below is checked on hand-built inputs with a
hand-derived answer, so that a broken formula fails here (each was broken once on purpose to see
its test fail; see docs/testing.md)."""

from __future__ import annotations

import dataclasses
import math
import tarfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.concept import Concept
from pipeline.datasets.pairs import PairData
from pipeline.datasets.shards import (
    ReadReport,
    Shard,
    iter_samples,
    list_shards,
    read_metadata,
)
from pipeline.evaluate.mia import mia_accuracy
from pipeline.evaluate.sets import EvalSet
from pipeline.evaluate.unlearning import EvalInputs, evaluate
from pipeline.models.factory import build
from pipeline.sets.build import SetsConfig, build_sets
from pipeline.sets.filter import filter_shards
from pipeline.sets.match import ConceptMatcher
from pipeline.unlearn import layers as L
from pipeline.unlearn import slug
from pipeline.unlearn.baselines import BaselineData, StopRule, run_method
from pipeline.unlearn.compare import baseline_settings
from pipeline.unlearn.gradients import mean_gradient
from pipeline.unlearn.trials import TrialScorer, caption_labels

from .helpers import make_params

# ---------------------------------------------------------------------------- the trial scorer

NAMES = ["Elon Musk", "Taylor Swift", "Jeff Bezos"]


def _pairs(captions, images=None, tok=None):
    n = len(captions)
    images = torch.zeros(n, 3, 32, 32) if images is None else images
    tokens = tok(captions) if tok else torch.zeros(n, 4, dtype=torch.long)
    return PairData(images, tokens, list(captions), ReadReport())


def test_caption_labels_ignore_captions_that_name_two_concepts():
    caps = ["a photo of Elon Musk", "Taylor Swift and Elon Musk", "JEFF_BEZOS!", "a red bar"]
    assert caption_labels(caps, NAMES).tolist() == [0, -1, 2, -1]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build("tiny-clip")


def _scorer(tiny, retain_caps, n_forget=4, topk=1):
    kinds = {"identity": (NAMES, ["{}."])}
    concept = Concept("Elon Musk", "Elon Musk", "identity", 0)
    return TrialScorer(tiny.model, tiny.tokenizer, kinds, concept,
                       _pairs(["Elon Musk"] * n_forget, tok=tiny.tokenizer),
                       _pairs(retain_caps, tok=tiny.tokenizer), topk)


def test_trial_scorer_excludes_the_target_from_the_retain_labels(tiny):
    s = _scorer(tiny, ["Elon Musk at the gala", "Taylor Swift", "Jeff Bezos and Taylor Swift",
                       "Jeff Bezos"])
    assert s.labels["identity"].tolist() == [-1, 1, -1, 2]


def test_trial_scorer_formula_on_hand_built_features(tiny):
    """forget = share of forget images with the target in the top-k; retain = mean of the named
    top-1 (target excluded) and the image-to-caption recall@1."""
    s = _scorer(tiny, ["Taylor Swift", "Jeff Bezos", "Elon Musk", "a bar"], n_forget=4)
    e = torch.eye(3)
    feats = {
        "classes:identity": e,  # one template per name: class c is e_c
        # forget images: two look like Elon Musk, one like Taylor Swift, one like Jeff Bezos
        "forget": F.normalize(torch.stack([e[0], e[0] + 0.1 * e[1], e[1] + 0.3 * e[2],
                                           e[2] + 0.4 * e[0]]), dim=-1),
        # retain images: Taylor Swift -> judged Jeff Bezos (wrong), Jeff Bezos -> right,
        # the Elon Musk image and the unnamed one do not count as named
        "retain": F.normalize(torch.stack([e[2], e[2], e[0], e[1]]), dim=-1),
        # captions: image i matches caption i for i = 1 only
        "retain_captions": F.normalize(torch.stack([e[1], e[2] + 0.1 * e[1], e[1], e[0]]),
                                       dim=-1),
    }
    s.cache.features = lambda keys: {k: feats[k] for k in keys}
    forget, retain, parts = s.score()
    assert forget == pytest.approx(2 / 4)
    assert parts["named_identity"] == pytest.approx(1 / 2)
    assert parts["retain_recall1"] == pytest.approx(1 / 4)
    assert retain == pytest.approx(0.5 * (1 / 2 + 1 / 4))
    s.topk = 2  # the Jeff Bezos look-alike has Elon Musk second
    assert s.score()[0] == pytest.approx(3 / 4)


# ---------------------------------------------------------------------------- the gradient pass


class Toy(torch.nn.Module):
    """A CLIP-shaped model whose features are linear in its inputs (exact, fast gradients)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.visual = torch.nn.Linear(12, 5, bias=False)
        self.text = torch.nn.Linear(4, 5, bias=False)
        with torch.no_grad():
            self.visual.weight.copy_(torch.randn(5, 12, generator=g))
            self.text.weight.copy_(torch.randn(5, 4, generator=g))
        self.logit_scale = torch.nn.Parameter(torch.tensor(math.log(10.0)))

    def forward(self, images, tokens):
        return {"image_features": self.visual(images.flatten(1)[:, :12]),
                "text_features": self.text(tokens.float()),
                "logit_scale": self.logit_scale.exp()}


def _toy_data(n, seed):
    g = torch.Generator().manual_seed(seed)
    return PairData(torch.randn(n, 3, 2, 2, generator=g), torch.randn(n, 4, generator=g),
                    [f"c{i}" for i in range(n)], ReadReport())


def _close(a, b, tol=1e-6):
    return all(torch.allclose(a[k], b[k], atol=tol, rtol=1e-5) for k in a)


def test_forget_gradient_does_not_depend_on_the_batch_size():
    model, data = Toy(), _toy_data(10, 1)
    g3, l3 = mean_gradient(model, data, "forget", 3)
    g10, l10 = mean_gradient(model, data, "forget", 10)
    assert _close(g3, g10) and l3 == pytest.approx(l10, abs=1e-6)


def test_gradients_are_zeroed_every_batch():
    """Two batches: the result is the size-weighted mean of each batch's own gradient (without
    zeroing, the second batch would carry the first one's gradient again)."""
    model, data = Toy(), _toy_data(7, 2)
    both, _ = mean_gradient(model, data, "retain", 4)  # batches of 4 and 3
    first, _ = mean_gradient(model, dataclasses.replace(
        data, images=data.images[:4], tokens=data.tokens[:4]), "retain", 4)
    second, _ = mean_gradient(model, dataclasses.replace(
        data, images=data.images[4:], tokens=data.tokens[4:]), "retain", 4)
    assert _close(both, {k: (4 * first[k] + 3 * second[k]) / 7 for k in both})


def test_a_one_pair_retain_batch_is_folded_into_the_previous_one():
    model, data = Toy(), _toy_data(5, 3)
    folded, _ = mean_gradient(model, data, "retain", 4)  # 4 + 1 -> one batch of 5
    whole, _ = mean_gradient(model, data, "retain", 5)
    assert _close(folded, whole)


# ------------------------------------------------------------------ layer choice and the step


def _ls(layer, rho, trials):
    ts = [slug.Trial(lam, f, r, f <= 0.0) for lam, f, r in trials]
    passing = [t for t in ts if t.passed]
    return slug.LayerSearch(layer, rho, slug.SearchResult(
        ts, min(passing, key=lambda t: t.lam) if passing else None))


def test_the_layer_with_the_best_retain_wins_and_ties_go_to_the_smaller_step():
    a = _ls("a", 1.0, [(0.1, 0.5, 0.9), (0.2, 0.0, 0.70)])
    b = _ls("b", 1.0, [(0.1, 0.0, 0.80)])
    c = _ls("c", 10.0, [(0.4, 0.0, 0.80)])  # same retain as b, relative step 0.04 < 0.1
    d = _ls("d", 1.0, [(0.1, 0.5, 0.99)])  # never passes: not eligible
    assert slug.choose([a, b, d]).layer == "b"
    assert slug.choose([a, b, c, d]).layer == "c"
    assert slug.choose([d]) is None
    assert slug.strongest([d, a])[0].layer == "a"  # the fallback: the lowest forget score


class Recorder:
    def __init__(self):
        self.lams = []

    def prepare(self, layer, direction=None):
        pass

    def score(self):
        return 1.0, 1.0, {}


def test_the_first_step_is_scale0_times_the_norm_ratio():
    model = Toy()
    g = {"visual.weight": torch.full((5, 12), 0.5)}
    theta = model.visual.weight.detach().clone()
    seen = []

    class Probe(Recorder):
        def score(self):  # the step the trial runs at, read off the weights
            step = (model.visual.weight.detach() - theta).norm() / g["visual.weight"].norm()
            seen.append(float(step))
            return 1.0, 1.0, {}

    res = slug.search(model, g, ["visual.weight"], Probe(), slug.SearchConfig(0.0, 2, 0.25))
    rho = float(theta.norm() / g["visual.weight"].norm())
    assert seen[0] == pytest.approx(0.25 * rho, rel=1e-5)  # lambda_0 = scale0 ||theta|| / ||g||
    assert seen[1] == pytest.approx(0.5 * rho, rel=1e-5)  # then doubled
    assert res.searches[0].rho == pytest.approx(rho) and not res.reached
    assert torch.equal(model.visual.weight, theta)  # restored after every trial


def test_the_step_is_theta_plus_lambda_g_and_lowers_the_forget_cosine():
    model, data = Toy(), _toy_data(8, 4)
    g, loss = mean_gradient(model, data, "forget", 8)
    res = slug.Slug([slug.LayerSearch("visual.weight", 1.0, slug.SearchResult([], None))],
                    None, None, False, g)
    res.chosen = res.searches[0]
    res.trial = slug.Trial(0.3, 0.0, 1.0, True)
    new = res.tensors(model)["visual.weight"]
    assert torch.allclose(new, model.visual.weight + 0.3 * g["visual.weight"])
    with slug.edited(model.visual.weight, g["visual.weight"], 0.3):
        after = mean_gradient(model, data, "forget", 8)[1]
    assert after > loss  # ascent on L_f = mean(1 - cos): the forget pairs' cosine falls


def test_a_trial_scores_exactly_the_tensor_the_patch_ships():
    """One formula for the step: the search's trial and the patch agree to the bit (an in-place
    ``add_(g, alpha=lam)`` for trials differed from ``theta + lam * g`` by up to 2e-7)."""
    g = torch.Generator().manual_seed(0)
    w = torch.nn.Parameter(torch.randn(64, 64, generator=g))
    grad = torch.randn(64, 64, generator=g) * 1e-3
    model = torch.nn.Module()
    model.w = w
    res = slug.Slug([], slug.LayerSearch("w", 1.0, slug.SearchResult([], None)),
                    slug.Trial(12.345678, 0.0, 1.0, True), True, {"w": grad})
    shipped = res.tensors(model)["w"]
    with slug.edited(w, grad, 12.345678):
        assert torch.equal(w.detach(), shipped)


# ------------------------------------------------------------- fronts and the signed alignment


def _rows(points):
    return [{"name": f"visual.transformer.resblocks.{i}.mlp.c_fc.weight", "importance": imp,
             "alignment": al, "abs_alignment": abs(al), "candidate": True}
            for i, (al, imp) in enumerate(points)]


def test_second_front_and_signed_alignment():
    # (alignment, importance): 0 and 1 are on the first front; 2 is dominated by 1 only, so
    # it is on the second; 3 is dominated by 2 (and 1), so it is on the third
    pts = [(0.05, 0.2), (0.1, 0.9), (0.3, 0.5), (0.4, 0.3)]
    levels = [r["front_level"] for r in L.annotate(_rows(pts), signed=False, fronts=2)]
    assert levels == [1, 1, 2, 3]
    sel, _ = slug.rank(_rows(pts), slug.RankConfig(False, 2, "front"))
    assert len(sel) == 3 and _rows(pts)[3]["name"] not in sel
    # signed: a strongly negative alignment is *low*, so that layer is on the front; under |cos|
    # the same layer is the most aligned one, dominated by layer 1, and drops to the second
    pts = [(-0.9, 0.45), (0.1, 0.5), (0.2, 0.4)]
    signed = [r["front_level"] for r in L.annotate(_rows(pts), signed=True, fronts=1)]
    absolute = [r["front_level"] for r in L.annotate(_rows(pts), signed=False, fronts=1)]
    assert signed == [1, 1, 2] and absolute == [2, 1, 2]


# ---------------------------------------------------------------------------- evaluation


class LookupModel(torch.nn.Module):
    """encode_image / encode_text from tables: an image's pixel [0, 0, 0] is its row in
    ``image_table``; a text's token [0] is its row in ``text_table``."""

    def __init__(self, image_table, text_table):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.images, self.texts = image_table, text_table

    def encode_image(self, x, normalize=True):
        return F.normalize(self.images[x[:, 0, 0, 0].long()], dim=-1)

    def encode_text(self, t, normalize=True):
        return F.normalize(self.texts[t[:, 0].long()], dim=-1)


class LookupTokenizer:
    def __init__(self, vocab):
        self.vocab = vocab

    def __call__(self, texts):
        return torch.tensor([[self.vocab.index(t)] for t in texts])


def _images(rows):
    x = torch.zeros(len(rows), 3, 2, 2)
    x[:, 0, 0, 0] = torch.tensor(rows, dtype=torch.float)
    return x


def test_evaluation_excludes_the_target_and_clamps_top_k():
    e = torch.eye(6)
    ids = ["Elon Musk", "Ann Lee", "Bob Ray"]  # identities: classes 0, 1, 2 -> e0, e1, e2
    objs = ["bar", "ring", "star"]  # objects: e3, e4, e5
    vocab = [f"{n}." for n in ids] + [f"a {o}." for o in objs] + ["fc0", "fc1", "nm0", "nm1"]
    text = torch.cat([e[:6], torch.stack([e[0], e[0]]), torch.stack([e[1], e[1]])])
    # image rows: 0-1 Elon Musk (one judged Ann), 2-3 Ann (one judged Bob), 4-5 Bob (right),
    # 6-8 objects (6, 7 right; 8 judged ring), 9-10 forget test, 11-12 non-members
    img = torch.stack([e[0], e[1], e[1], e[2], e[2], e[2], e[3], e[4], e[4],
                       e[0], e[0], e[1] + e[3], e[1] + e[4]])
    model, tok = LookupModel(img, text), LookupTokenizer(vocab)
    sets = {"identity": EvalSet("identities", ids, [], torch.tensor([0, 0, 1, 1, 2, 2]), ["{}."]),
            "object": EvalSet("objects", objs, [], torch.tensor([0, 1, 2]), ["a {}."])}
    x = EvalInputs(sets, {"identity": _images(range(6)), "object": _images(range(6, 9))},
                   Concept("elon_musk", "Elon Musk", "identity", 0),
                   _pairs(["fc0", "fc1"], _images([9, 10]), tok), None,
                   ["Elon Musk", "Ann Lee", "Bob Ray"])
    out = evaluate(model, tok, x)
    assert out["forget"] == {"top1": 0.5, "top5": 1.0}  # top-5 of 3 classes: clamped to 3
    assert out["forget_split"]["top1"] == 1.0
    assert out["celeba"]["top1"] == pytest.approx((0.5 + 1.0) / 2)  # Ann, Bob; the target out
    assert out["identities"]["top1"] == pytest.approx(3 / 4)  # the target's images excluded
    assert out["imagenet"]["top1"] == pytest.approx(2 / 3)
    assert out["forget_cosine"] == pytest.approx(1.0)


def test_held_out_measures_each_concept_and_leaves_all_of_them_out_of_retain():
    from pipeline.evaluate.unlearning import held_out

    e = torch.eye(6)
    ids = ["Elon Musk", "Ann Lee", "Bob Ray"]
    objs = ["bar", "ring", "star"]
    vocab = [f"{n}." for n in ids] + [f"a {o}." for o in objs] + ["fc0", "fc1"]
    text = torch.cat([e[:6], torch.stack([e[0], e[2]])])
    # image rows: 0-1 Elon Musk (one judged Ann), 2-3 Ann (one judged Bob), 4-5 Bob (right),
    # 6-8 objects (6, 7 right; 8 judged ring), 9 Elon's forget test, 10 the ring's
    img = torch.stack([e[0], e[1], e[1], e[2], e[2], e[2], e[3], e[4], e[4], e[0], e[3]])
    model, tok = LookupModel(img, text), LookupTokenizer(vocab)
    sets = {"identity": EvalSet("identities", ids, [], torch.tensor([0, 0, 1, 1, 2, 2]), ["{}."]),
            "object": EvalSet("objects", objs, [], torch.tensor([0, 1, 2]), ["a {}."])}
    elon, ring = Concept("Elon Musk", "Elon Musk", "identity", 0), Concept("ring", "ring", "object", 1)
    x = EvalInputs(sets, {"identity": _images(range(6)), "object": _images(range(6, 9))}, elon,
                   None, None, ["Elon Musk", "Ann Lee", "Bob Ray"])
    out, _ = held_out(model, tok, x, [elon, ring],
                      [_pairs(["fc0"], _images([9]), tok), _pairs(["fc1"], _images([10]), tok)])
    assert out["concepts"]["Elon Musk"]["forget"]["top1"] == 0.5
    assert out["concepts"]["ring"]["forget"]["top1"] == 1.0  # image 7: judged ring
    assert out["concepts"]["ring"]["forget_split"]["top1"] == 0.0  # image 10 is a bar
    assert out["celeba"]["top1"] == pytest.approx((0.5 + 1.0) / 2)  # Ann, Bob
    assert out["imagenet"]["top1"] == pytest.approx(1 / 2)  # bar right, star judged ring


def test_mia_on_hand_built_cosines():
    members = np.linspace(0.6, 0.9, 40)  # the forget pairs still match their captions
    assert mia_accuracy(members, np.linspace(0.0, 0.3, 40), seeds=2)[0] == 1.0
    same = np.random.default_rng(0).normal(0.5, 0.1, 200)
    mean, _ = mia_accuracy(same[:100], same[100:], seeds=3)
    assert 0.35 < mean < 0.65  # indistinguishable: about chance


def test_too_few_forget_test_pairs_skip_membership_inference_with_a_reason():
    from pipeline.evaluate.mia import membership
    from pipeline.evaluate.unlearning import delta

    nonmembers, asked = np.linspace(0.0, 0.3, 20), []

    def retain(n):
        asked.append(n)
        return np.linspace(0.5, 0.8, n)

    few = membership(np.linspace(0.6, 0.9, 4), nonmembers, retain, seeds=2)
    assert few == {"mia_skipped": "4 forget-test pairs and 20 non-members; membership "
                                  "inference needs 5 of each"} and asked == []
    enough = membership(np.linspace(0.6, 0.9, 5), nonmembers, retain, seeds=2)
    assert enough["mia"]["mean"] > 0.9 and asked == [20]  # as many retain pairs as non-members
    assert 0.0 <= enough["mia_efficacy"] <= 1.0
    before = {"forget": {"top1": 1.0}, **few}
    assert delta(before, {"forget": {"top1": 0.25}, **few}) == {"forget": {"top1": -0.75}}


# ---------------------------------------------------------------------------- the canvas grid


class FakePipe:
    """Generates an image whose pixels encode the prompt's (style, object) indices."""

    def __init__(self, canvas, template):
        self.lookup = {canvas.prompt(template, s, o): (s, o)
                       for s in range(len(canvas.styles)) for o in range(len(canvas.objects))}

    def __call__(self, prompts, generator, num_inference_steps, guidance_scale, height, width,
                 output_type):
        img = torch.zeros(len(prompts), 3, height, width)
        for i, p in enumerate(prompts):
            img[i, 0], img[i, 1] = self.lookup[p]
        return type("Out", (), {"images": img})()


class PixelJudge:
    def __init__(self, channel, rule):
        self.channel, self.rule = channel, rule

    def predict(self, images):
        return torch.tensor([self.rule(int(im[0, 0, 0]), int(im[1, 0, 0])) for im in images])


def test_canvas_grid_maps_cells_to_their_style_and_object():
    from pipeline.canvas.data import Canvas, Target
    from pipeline.canvas.protocol import judge_grid, scores

    canvas = Canvas(["S0", "S1", "S2"], ["O0", "O1"], [])
    tpl = "A {object} image in {style} style."
    style_judge = PixelJudge(0, lambda s, o: 1)  # every image judged as style 1
    object_judge = PixelJudge(1, lambda s, o: o if s == 0 else 0)  # right only for style 0
    grid = judge_grid(FakePipe(canvas, tpl), canvas, tpl, style_judge, object_judge, 2, 0, 1,
                      1.0, 4)
    assert grid.style_acc.tolist() == [[0, 0], [1, 1], [0, 0]]  # rows: styles, columns: objects
    assert grid.object_acc.tolist() == [[1, 1], [1, 0], [1, 0]]
    s = scores(grid, Target("S1", "style", 1))
    assert s["UA"] == 0.0 and s["IRA"] == 0.0 and s["CRA"] == pytest.approx(3 / 4)
    o = scores(grid, Target("O1", "object", 1))
    assert o["UA"] == pytest.approx(1 - 1 / 3) and o["IRA"] == 1.0
    assert o["CRA"] == pytest.approx(1 / 3)


def test_canvas_scorer_prompts_carry_their_own_label():
    from pipeline.canvas.data import Canvas, Target
    from pipeline.canvas.target import scorer

    canvas = Canvas(["S0", "S1", "S2"], ["O0", "O1"], [])
    tpl = "A {object} image in {style} style."
    sc = scorer(None, None, canvas, tpl, Target("O1", "object", 1), None, 2, 3, 0, 1, 1.0, 4)
    assert [(p.text, p.truth) for p in sc.target.prompts] == [
        (canvas.prompt(tpl, s, 1), 1) for s in range(3)]  # the object's column, label 1
    assert all(p.truth == 0 and "O0" in p.text for p in sc.retained.prompts)


# ---------------------------------------------------------------------------- sets and shards


def test_test_fraction_and_nonmembers_without_the_concept(micro_world, tmp_path):
    shards = list_shards(micro_world / "laion")
    names = ["Elon Musk", "Taylor Swift", "Jeff Bezos", "Mark Zuckerberg", "Kim Kardashian"]
    m = ConceptMatcher(names[0], names[1:])
    rows = filter_shards(shards, m, 10_000).rows
    holdout = list_shards(micro_world / "holdout")
    captions = {str(k): c for s in holdout for k, c in zip(read_metadata(s)["key"],
                                                             read_metadata(s)["caption"])}
    assert any(m(c) for c in captions.values())  # the holdout does mention the concept
    cfg = dataclasses.replace(SetsConfig.from_params(make_params().sets, 0, make_params().data), test_fraction=0.25,
                              n_retain=10, n_retain_val=5, n_nonmembers=10_000)  # all there are
    man = build_sets(shards, rows, m, cfg, tmp_path, holdout)
    assert man["splits"]["forget_test"]["n"] == round(0.25 * len(rows))
    assert man["splits"]["forget_search"]["n"] == len(rows) - round(0.25 * len(rows))
    keys = man["splits"]["nonmembers"]["keys"]
    assert not any(m(captions[k]) for k in keys)
    assert len(keys) == sum(not m(c) for c in captions.values())


def test_shard_reader_counts_incomplete_samples(tmp_path):
    import io

    from PIL import Image

    from pipeline.datasets.shards import write_tar

    def _jpeg_bytes():
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format="JPEG")
        return buf.getvalue()

    write_tar(tmp_path / "00000.tar", [("a", {"jpg": _jpeg_bytes(), "txt": b"ok"}),
                                      ("b", {"jpg": _jpeg_bytes()}),  # no caption
                                      ("c", {"txt": b"no image"}),
                                      ("d", {"png": _jpeg_bytes(), "txt": b"fine"})])
    report = ReadReport()
    keys = [k for k, _, _ in iter_samples([Shard(tmp_path / "00000.tar")], report)]
    assert keys == ["a", "d"] and report.incomplete == 2 and report.samples == 2
    with tarfile.open(tmp_path / "00000.tar") as tf:
        assert len(tf.getnames()) == 6


# ---------------------------------------------------------------------------- the baselines


def test_iterative_baselines_clamp_logit_scale():
    model, data = Toy(), BaselineData(_toy_data(8, 5), _toy_data(8, 6))
    with torch.no_grad():
        model.logit_scale.fill_(10.0)  # far above ln 100
    cfg = dataclasses.replace(baseline_settings(make_params().baselines, "ft", 0), lr=1e-3,
                              epochs=1, batch_size=8, checks_per_epoch=1)
    run_method("ft", model, data, cfg, StopRule(Recorder(), 0.0))
    assert float(model.logit_scale.detach()) == pytest.approx(math.log(100))
