"""Several concepts at once on a diffusion pipeline's text encoder (``pipeline.diffusion.multi``):
the prompts name no target among the retained ones, each target keeps its own search seeds
whatever subset is judged, every edited text layer reaches the encoder during a trial (not only
the one searched), and the encoder is left as it was."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from pipeline.concept import Concept
from pipeline.diffusion import judge as J
from pipeline.diffusion import multi as DM
from pipeline.diffusion import text_encoder as H
from pipeline.unlearn.slug import edited

A = "transformer.resblocks.0.attn.out_proj.weight"
B = "transformer.resblocks.1.mlp.c_fc.weight"
HF_A = "encoder.layers.0.self_attn.out_proj.weight"


class FakePipe:
    """Draws each image as one grey level: the sum of the encoder's ``HF_A`` tensor, so a test
    can read from the images which weights the encoder held; records every seed asked for."""

    def __init__(self, encoder):
        self.text_encoder, self.seeds = encoder, []
        self.unet = SimpleNamespace(config=SimpleNamespace(sample_size=2))
        self.vae_scale_factor = 1

    def __call__(self, prompts, generator, **_):
        self.seeds += [(p, g.initial_seed()) for p, g in zip(prompts, generator)]
        level = float(self.text_encoder.state_dict()[HF_A].sum())
        return SimpleNamespace(images=torch.full((len(prompts), 3, 2, 2), level))


def _setup(tiny):
    enc = H.to_clip_text_model(tiny.model)
    pipe = FakePipe(enc)
    base_level = float(enc.state_dict()[HF_A].sum())
    prompts = J.prompts_for({"identity": ["Elon Musk", "Taylor Swift", "Jeff Bezos"],
                             "character": ["Iron Man", "Batman"]},
                            {"identity": "a photo of {}.", "character": "a photo of {}."},
                            [("Elon Musk", "identity"), ("Iron Man", "character")], 5)
    # a judge that sees Elon Musk while the encoder holds its base weights, no one otherwise
    judge = lambda images, kind: [  # noqa: E731
        ("Elon Musk" if abs(float(im.mean()) - base_level) < 1e-4 else "no one") for im in images]
    return pipe, prompts, judge, enc


def _req(label, kind, i):
    return SimpleNamespace(concept=Concept(label, label, kind, i))


def test_retained_prompts_name_none_of_the_targets():
    prompts = J.prompts_for({"identity": ["Elon Musk", "Taylor Swift", "Jeff Bezos"],
                             "character": ["Iron Man", "Batman"]},
                            {"identity": "{}.", "character": "{}!"},
                            [("Elon Musk", "identity"), ("Iron Man", "character")], 5)
    assert [(p.concept, p.target) for p in prompts] == [
        ("Elon Musk", True), ("Iron Man", True), ("Taylor Swift", False), ("Jeff Bezos", False),
        ("Batman", False)]
    assert prompts[1].text == "Iron Man!"


def test_each_target_keeps_its_seeds_whatever_subset_is_judged(tiny):
    pipe, prompts, judge, _ = _setup(tiny)
    scorers = DM.generation_scorers(pipe, tiny.model, prompts, judge, target_images=3,
                                    per_prompt=2, seed=7, steps=1, guidance=1.0)
    elon, iron = _req("Elon Musk", "identity", 0), _req("Iron Man", "character", 0)
    s = scorers([iron])
    s.prepare(A)
    s.score()
    alone = [sd for p, sd in pipe.seeds if "Iron Man" in p]
    pipe.seeds.clear()
    s = scorers([elon, iron])
    s.prepare(A)
    forget, retain, parts = s.score()
    together = [sd for p, sd in pipe.seeds if "Iron Man" in p]
    assert alone == together and len(alone) == 3
    elon_seeds = {sd for p, sd in pipe.seeds if "Elon Musk" in p}
    retained = {sd for p, sd in pipe.seeds if "Iron Man" not in p and "Elon Musk" not in p}
    assert not (set(together) & elon_seeds) and not (retained & (set(together) | elon_seeds))
    assert set(parts) == {"forget:Elon Musk", "forget:Iron Man"}


def test_a_trial_maps_every_edited_layer_and_restores_the_encoder(tiny):
    pipe, prompts, judge, enc = _setup(tiny)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    scorers = DM.generation_scorers(pipe, tiny.model, prompts,
                                    lambda images, kind: judge(images, kind), 2, 1, 0, 1, 1.0)
    params = dict(tiny.model.named_parameters())
    s = scorers([_req("Elon Musk", "identity", 0)])
    s.prepare(B)  # the searched layer is B; another concept's edit sits on A
    with edited(params[A], torch.ones_like(params[A]), 0.5):
        forget, _, parts = s.score()
    # the encoder drew with A edited: the Elon Musk images are no longer "base" -> forgotten
    assert forget == 0.0 and parts == {"forget:Elon Musk": 0.0}
    forget, _, _ = s.score()  # A back at its base value (B never moved): recognised again
    assert forget == 1.0
    assert all(torch.equal(v, before[k]) for k, v in enc.state_dict().items())


def test_the_worst_target_is_the_forget_score(tiny):
    pipe, prompts, judge, _ = _setup(tiny)
    s = DM.generation_scorers(pipe, tiny.model, prompts, judge, 2, 1, 0, 1, 1.0)(
        [_req("Elon Musk", "identity", 0), _req("Iron Man", "character", 0)])
    shares = iter([0.0, 1.0])
    s.hits = lambda ps: [bool(next(shares, 0.0))] if ps is not s.retained else [True]
    forget, retain, parts = s.score()
    assert (forget, retain) == (1.0, 1.0) and parts == {"forget:Elon Musk": 0.0,
                                                        "forget:Iron Man": 1.0}
