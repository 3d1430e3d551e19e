"""The VLM path's foundations: open_clip's vision tower <-> transformers' CLIPVisionModel (exact,
both ways, before and after a patch), the two preprocessors, the layers a LLaVA reads, and the
tiny LLaVA (a standard transformers folder that learns to name what it sees)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.diffusion.text_encoder import apply_mapped
from pipeline.errors import ModelError
from pipeline.vlm import llava
from pipeline.vlm import tiny as vlm
from pipeline.vlm import vision_tower as vt

# one parameter of every kind a vision-tower patch can edit
KINDS = ["visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding",
         "visual.ln_pre.weight", "visual.transformer.resblocks.0.attn.in_proj_weight",
         "visual.transformer.resblocks.1.attn.out_proj.weight",
         "visual.transformer.resblocks.0.mlp.c_fc.weight",
         "visual.transformer.resblocks.1.mlp.c_proj.bias", "visual.proj"]


def _same_outputs(clip, hf, pixels):
    with torch.no_grad():
        out = hf(pixel_values=pixels, output_hidden_states=True)
        emb = clip.encode_image(pixels)
    hs = vt.open_clip_hidden_states(clip, pixels)
    assert len(hs) == len(out.hidden_states)
    for a, b in zip(hs, out.hidden_states):
        assert (a - b).abs().max() < 1e-5
    assert (emb - out.image_embeds).abs().max() < 1e-5


@pytest.mark.parametrize("name", KINDS)
def test_image_features_equal_before_and_after_a_patch(tiny, name):
    clip = tiny.model
    hf = vt.to_clip_vision_model(clip, projection=True)
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    _same_outputs(clip, hf, pixels)
    param = dict(clip.named_parameters())[name]
    original = param.detach().clone()
    edit = original + 0.5 * torch.randn_like(original) * original.abs().mean().clamp_min(0.1)
    with torch.no_grad():
        before = clip.encode_image(pixels)
    try:
        with torch.no_grad():
            param.copy_(edit)
            assert not torch.allclose(clip.encode_image(pixels), before, atol=1e-4)
        apply_mapped(hf, vt.map_patch({name: edit}, hf))
        _same_outputs(clip, hf, pixels)
    finally:
        with torch.no_grad():
            param.copy_(original)


def test_round_trip_is_bit_exact(tiny):
    state = {k: v for k, v in tiny.model.state_dict().items() if vt.is_vision_param(k)}
    hf = vt.to_clip_vision_model(tiny.model, projection=True)
    back = vt.from_hf(hf.state_dict())
    assert set(back) == set(state)
    assert all(torch.equal(back[k], state[k]) for k in state)
    with_prefix = vt.vision_state(tiny.model)  # the checkpoint naming maps back too
    back = vt.from_hf(with_prefix)
    assert all(torch.equal(back[k], state[k]) for k in state)


@pytest.mark.parametrize("shape", [(32, 32), (45, 60), (100, 70), (33, 31), (240, 320)])
def test_the_two_preprocessors_give_the_same_tensor(tiny, tmp_path, shape):
    from transformers import AutoImageProcessor

    rgb = np.random.RandomState(sum(shape)).randint(0, 256, (*shape, 3), dtype=np.uint8)
    img = Image.fromarray(rgb)
    proc = vt.image_processor(tiny.model.visual.preprocess_cfg)
    proc.save_pretrained(tmp_path)
    loaded = AutoImageProcessor.from_pretrained(tmp_path, backend="pil")
    want = tiny.preprocess(img)
    for p in (proc, loaded):
        got = p(images=img, return_tensors="pt")["pixel_values"][0]
        assert got.shape == want.shape
        assert (got - want).abs().max() < 1e-6


def test_the_layers_a_vlm_reads():
    L = 2
    block = "visual.transformer.resblocks.{}.attn.out_proj.weight"
    assert vt.is_read(block.format(1), L, -1) and vt.is_read(block.format(0), L, -2)
    assert not vt.is_read(block.format(1), L, -2)  # LLaVA-1.5's -2: the last block is unread
    for name in ("visual.conv1.weight", "visual.class_embedding", "visual.ln_pre.bias"):
        assert vt.is_read(name, L, -2) and vt.is_read(name, L, 0)
    for name in ("visual.ln_post.weight", "visual.proj", "transformer.resblocks.0.mlp.c_fc.weight"):
        assert not vt.is_read(name, L, -1)
    assert not vt.is_read(block.format(0), L, 0)  # layer 0: the embeddings only
    vt.check_read([block.format(0), "visual.conv1.weight"], L, -2)
    with pytest.raises(ModelError, match="does not read visual.transformer.resblocks.1"):
        vt.check_read([block.format(1)], L, -2)
    with pytest.raises(ModelError, match="does not read visual.proj"):
        vt.check_read(["visual.proj"], L, -1)
    with pytest.raises(ModelError, match="does not exist"):
        vt.read_blocks(L, -4)


def test_a_patch_the_tower_cannot_take_is_refused(tiny):
    hf = vt.to_clip_vision_model(tiny.model)  # no projection: a LLaVA's tower
    with pytest.raises(ModelError, match="does not have"):
        vt.map_patch({"visual.proj": torch.zeros(128, 128)}, hf)
    with pytest.raises(ModelError, match="shape"):
        vt.map_patch({"visual.conv1.weight": torch.zeros(128, 3, 4, 4)}, hf)
    with pytest.raises(ModelError, match="not a vision-tower parameter"):
        vt.map_patch({"transformer.resblocks.0.mlp.c_fc.weight": torch.zeros(512, 128)}, hf)


def test_a_different_vision_tower_is_refused(tiny):
    hf = vt.to_clip_vision_model(tiny.model)
    vt.check_vision_tower(hf, tiny.model)
    with torch.no_grad():
        hf.encoder.layers[1].mlp.fc2.weight[0, 0] += 1e-3
    with pytest.raises(ModelError, match="encoder.layers.1.mlp.fc2.weight"):
        vt.check_vision_tower(hf, tiny.model)


NAMES = ["Elon Musk", "Taylor Swift", "Iron Man", "Mickey Mouse"]
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]
QUESTION = "What's the name of the person in this image?"
TEMPLATE = "USER: <image>\n{question} ASSISTANT:"


def _images(n, seed):
    rng = np.random.RandomState(seed)
    labels = [i % len(NAMES) for i in range(n)]
    imgs = [Image.fromarray(np.clip(np.array(COLOURS[k])[None, None] + rng.randn(40, 40, 3) * 40,
                                    0, 255).astype(np.uint8)) for k in labels]
    return imgs, labels


@pytest.fixture(scope="module")
def trained(tiny):
    cfg = vlm.TinyVLMConfig(vocab_size=300, width=64, layers=2, heads=4, steps=150,
                            batch_size=32, lr=3e-3, feature_layer=-1, seed=0)
    model, proc = vlm.build(tiny.model, [llava.prompt(TEMPLATE, QUESTION), *NAMES], cfg)
    imgs, labels = _images(200, 0)
    feats = llava.read_features(model, torch.stack([tiny.preprocess(i) for i in imgs]))
    untrained = llava.answer(model, proc, torch.stack([tiny.preprocess(i) for i in imgs[:8]]),
                           [QUESTION] * 8, TEMPLATE)
    info = vlm.train(model, proc, feats, [QUESTION] * len(imgs), [NAMES[k] for k in labels],
                     TEMPLATE, cfg)
    return model, proc, info, untrained


def test_the_tiny_vlm_learns_to_name_held_out_images(tiny, trained):
    model, proc, info, untrained = trained
    assert sum(a in NAMES for a in untrained) == 0  # it did not know before training
    imgs, labels = _images(40, 1)  # other noise: held out
    answers = llava.answer(model, proc, torch.stack([tiny.preprocess(i) for i in imgs]),
                         [QUESTION] * len(imgs), TEMPLATE)
    assert sum(a == NAMES[k] for a, k in zip(answers, labels)) >= 38
    # the vision tower stayed the CLIP's (frozen, as LLaVA trains)
    vt.check_vision_tower(model.model.vision_tower, tiny.model)
    assert info["trained_parameters"] < sum(p.numel() for p in model.parameters())


def test_training_path_equals_the_models_own_forward(tiny, trained):
    model, proc, *_ = trained
    imgs, _ = _images(3, 2)
    pixels = torch.stack([tiny.preprocess(i) for i in imgs])
    ids = torch.tensor(llava.encode(proc, TEMPLATE, model.config.image_seq_length, [QUESTION] * 3))
    full = proc(text=[llava.prompt(TEMPLATE, QUESTION)] * 3, images=imgs, return_tensors="pt")
    assert torch.equal(full["input_ids"], ids)  # the processor expands <image> the same way
    assert (full["pixel_values"] - pixels).abs().max() < 1e-6
    with torch.no_grad():
        a = model(input_ids=ids, pixel_values=pixels).logits
        b = model(inputs_embeds=llava.merged_embeddings(
            model, ids, llava.read_features(model, pixels))).logits
    assert (a - b).abs().max() < 1e-5


def test_the_saved_folder_loads_offline_and_answers_the_same(tiny, trained, tmp_path):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model, proc, *_ = trained
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    m2 = LlavaForConditionalGeneration.from_pretrained(tmp_path, local_files_only=True)
    p2 = AutoProcessor.from_pretrained(tmp_path, local_files_only=True, backend="pil")
    imgs, _ = _images(8, 3)
    pixels = torch.stack([tiny.preprocess(i) for i in imgs])
    assert llava.answer(m2, p2, pixels, [QUESTION] * 8, TEMPLATE) == \
        llava.answer(model, proc, pixels, [QUESTION] * 8, TEMPLATE)


def test_prompt_template_must_hold_the_image_and_the_question():
    with pytest.raises(ModelError, match="must hold"):
        llava.prompt("USER: {question}", QUESTION)


def test_an_answer_names_a_concept_by_whole_words_of_the_one_name_rule():
    assert llava.names_it("Elon Musk.", ("Elon Musk",))
    assert llava.names_it("it is elon_musk, I think", ("Elon Musk",))
    assert llava.names_it("Musk", ("Elon Musk", "Musk"))  # an alias counts
    assert llava.names_it("Spider Man", ("Spider-Man",))
    assert not llava.names_it("Elon Muskrat", ("Elon Musk",))
    assert not llava.names_it("Mark", ("Mark Zuckerberg",))
    assert not llava.names_it("", ("Elon Musk",))


def test_the_answer_scorer_judges_what_ships_and_leaves_the_vlm_as_it_was(tiny, trained):
    from pipeline.unlearn.slug import edited
    from pipeline.vlm.unlearn import AnswerScorer, Questions

    model, proc, *_ = trained
    imgs, labels = _images(24, 4)
    pixels = torch.stack([tiny.preprocess(i) for i in imgs])
    target = [i for i, k in enumerate(labels) if k == 0]
    others = [i for i, k in enumerate(labels) if k != 0]
    q = lambda idx: Questions(pixels[idx], [QUESTION] * len(idx),  # noqa: E731
                              [(NAMES[labels[i]],) for i in idx])
    scorer = AnswerScorer(tiny.model, model, proc, TEMPLATE, q(target), q(others))
    with pytest.raises(ModelError, match="does not read visual.proj"):
        scorer.prepare("visual.proj")  # the tiny VLM reads hidden_states[-1]: not ln_post, proj
    layer = "visual.conv1.weight"
    scorer.prepare(layer)
    assert scorer.score()[:2] == (1.0, 1.0)  # before: it names every image
    param = dict(tiny.model.named_parameters())[layer]
    colour_blind = torch.zeros_like(param)  # read every pixel as its channels' mean
    colour_blind[:] = param.detach().mean(dim=1, keepdim=True) - param.detach()
    with edited(param, colour_blind, 1.0):
        forget, retain, _ = scorer.score()
    assert forget + retain < 1.5  # the mapped edit reached the VLM's answers
    vt.check_vision_tower(model.model.vision_tower, tiny.model)  # and was taken back
    assert scorer.score()[:2] == (1.0, 1.0)


def _jpeg(colour) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="JPEG")
    return buf.getvalue()


def _caption_shards(root):
    """Two shards whose captions name concepts alone, together, or with the target."""
    from pipeline.datasets.shards import write_shard

    captions = (["a photo of Taylor Swift"] * 6 + ["Iron Man figure"] * 5
                + ["Taylor Swift meets Iron Man"] * 3  # two retained concepts: unlabelled
                + ["Elon Musk and Taylor Swift"] * 3  # the target: never a retained image
                + ["a red circle"] * 3)
    shards = []
    for s in range(2):
        rows = [{"key": f"{s:05d}{i:04d}", "caption": c, "status": "success", "url": "u",
                 "error_message": None} for i, c in enumerate(captions)]
        shards.append(write_shard(root, s, rows, {r["key"]: _jpeg((20 * i % 255, 0, 0))
                                                  for i, r in enumerate(rows)}))
    return shards


def test_vlm_sets_label_each_image_by_the_one_concept_its_caption_names(tmp_path):
    import json

    from pipeline.concept import Concept
    from pipeline.datasets.shards import Shard as S
    from pipeline.datasets.shards import iter_raw
    from pipeline.errors import DataError
    from pipeline.vlm import sets as vs

    shards = _caption_shards(tmp_path / "shards")
    target = Concept("Elon Musk", "Elon Musk", "identity", 0)
    names = {"identity": ["Elon Musk", "Taylor Swift"], "character": ["Iron Man"]}
    chosen = vs.retained(names, target, 1, ["identity", "character"])
    assert chosen == [("Taylor Swift", "identity"), ("Iron Man", "character")]
    man = vs.build(shards, chosen, target, 3, 7, 0, tmp_path / "a")
    assert man["concepts"]["Taylor Swift"]["captions"] == 12  # 6 alone per shard, not with others
    assert man["concepts"]["Iron Man"]["captions"] == 10
    for split, n in (("search", 3), ("eval", 7)):
        path, labels = vs.read(tmp_path / "a", split)
        assert man["splits"][split]["per_concept"] == {"Taylor Swift": n, "Iron Man": n}
        for key, files in iter_raw(S(path)):
            name, kind = labels[key]
            assert name in files["txt"].decode() and "Elon" not in files["txt"].decode()
            assert " meets " not in files["txt"].decode()
    search = set(vs.read(tmp_path / "a", "search")[1])
    assert not search & set(vs.read(tmp_path / "a", "eval")[1])  # disjoint
    vs.build(shards, chosen, target, 3, 7, 0, tmp_path / "b")  # the same seed: the same bytes
    for split in vs.SPLITS:
        assert (tmp_path / "a" / f"{split}.tar").read_bytes() == \
            (tmp_path / "b" / f"{split}.tar").read_bytes()
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["seed"] == 0
    with pytest.raises(DataError, match="only 10 shard captions name 'Iron Man'"):
        vs.build(shards, chosen, target, 3, 8, 0, tmp_path / "c")


def test_the_evaluation_asks_before_and_after_in_one_pass_and_counts_named_answers(tiny, trained):
    from pipeline.vlm import evaluate as E

    model, proc, *_ = trained
    imgs, labels = _images(12, 5)
    stream = [E.Item(img, NAMES[k], "identity", (NAMES[k],)) for img, k in zip(imgs, labels)]
    # the "patch": the patch embedding zeroed, mapped onto the VLM's tower
    mapped = vt.map_patch({"visual.conv1.weight": torch.zeros(128, 3, 8, 8)},
                          model.model.vision_tower)
    a = E.ask(model, proc, tiny.preprocess, TEMPLATE, {"identity": QUESTION}, stream, mapped,
              batch_size=5, thumbs=2)
    assert {c: len(x) for c, x in a.before.items()} == {n: 3 for n in NAMES}
    assert all(a.named("before", c) == 1.0 for c in NAMES)
    assert len({x for c in NAMES for x in a.after[c]}) == 1  # every image now looks the same
    vt.check_vision_tower(model.model.vision_tower, tiny.model)  # and the tower was put back
    m = E.metrics(a, "Elon Musk")
    assert m["before"]["target"] == 1.0 and m["before"]["retained"] == 1.0
    assert m["after"]["retained"] == pytest.approx(sum(a.named("after", c) for c in NAMES[1:]) / 3,
                                                   abs=1e-4)
    assert m["target_answers"]["before"] == [("Elon Musk", 3)]
    assert len(a.thumbs["Iron Man"]) == 2 and E.grid_rows(a, "Elon Musk") == ["Elon Musk", "Taylor Swift"]
