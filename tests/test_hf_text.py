"""open_clip text tower <-> transformers CLIPTextModel: exact both ways, before and after a patch;
the CLIPTokenizer built from open_clip's vocabulary gives open_clip's ids."""

import pytest
import torch

from pipeline.diffusion import text_encoder as H
from pipeline.diffusion.tokenizer import build_tokenizer
from pipeline.errors import ModelError
from pipeline.models.factory import build

PROMPTS = ["a photo of Elon Musk.", "IRON MAN figure", "a red bar on a dark background",
           "Photo: jeff bezos / Getty Images", "an image in Ukiyo-e style.", "",
           "a very long caption " + "with many words " * 20]


@pytest.fixture(scope="module", params=[False, True], ids=["gelu", "quick_gelu"])
def clip(request):
    torch.manual_seed(0)
    model = build("tiny-clip", quick_gelu=request.param)
    for p in model.model.parameters():  # a random model with non-trivial biases and norms
        torch.nn.init.normal_(p, std=0.05) if p.ndim < 2 else None
    return model


def _features(model, hf, tokens):
    with torch.no_grad():
        out = hf(tokens)
        oc = model.encode_text(tokens)
    return out, oc


def test_clip_text_model_equals_open_clip(clip):
    hf = H.to_clip_text_model(clip.model, projection=True)
    tokens = clip.tokenizer(PROMPTS)
    out, oc = _features(clip.model, hf, tokens)
    assert torch.allclose(out.text_embeds, oc, atol=1e-5)
    assert torch.allclose(out.last_hidden_state, H.open_clip_hidden(clip.model, tokens), atol=1e-5)


def test_a_mapped_patch_gives_the_same_features_after(clip):
    hf = H.to_clip_text_model(clip.model, projection=True)
    model = clip.model
    tokens = clip.tokenizer(PROMPTS)
    names = ["transformer.resblocks.0.attn.in_proj_weight", "transformer.resblocks.1.mlp.c_fc.weight",
             "transformer.resblocks.1.attn.out_proj.weight", "text_projection"]
    torch.manual_seed(1)
    patch = {n: model.state_dict()[n] + 0.5 * torch.randn_like(model.state_dict()[n]) for n in names}
    mapped = H.map_patch(patch, hf)
    assert {"encoder.layers.0.self_attn.q_proj.weight", "encoder.layers.0.self_attn.k_proj.weight",
            "encoder.layers.0.self_attn.v_proj.weight"} <= {k.removeprefix("text_model.")
                                                            for k in mapped}
    H.apply_mapped(hf, mapped)
    originals = {n: model.state_dict()[n].clone() for n in names}
    with torch.no_grad():
        for n in names:
            dict(model.named_parameters())[n].copy_(patch[n])
    try:
        out, oc = _features(model, hf, tokens)
        assert torch.allclose(out.text_embeds, oc, atol=1e-5)
        assert torch.allclose(out.last_hidden_state, H.open_clip_hidden(model, tokens), atol=1e-5)
        assert not torch.allclose(oc, clip.model.encode_text(tokens) * 0)  # features are real
    finally:
        with torch.no_grad():
            for n in names:
                dict(model.named_parameters())[n].copy_(originals[n])


def test_round_trip_back_to_open_clip_is_exact(clip):
    hf = H.to_clip_text_model(clip.model, projection=True)
    back = H.from_hf(hf.state_dict())
    want = {k: v for k, v in clip.model.state_dict().items() if H.is_text_param(k)}
    assert set(back) == set(want)
    assert all(torch.equal(back[k], want[k]) for k in want)


def test_truncated_encoder_takes_lower_blocks_and_refuses_missing_ones(clip):
    # SD 2.x: the pipeline's encoder is the CLIP text tower without its last block
    hf = H.to_clip_text_model(clip.model, num_layers=1)
    assert hf.config.num_hidden_layers == 1
    ok = H.map_patch({"transformer.resblocks.0.mlp.c_proj.weight":
                      clip.model.state_dict()["transformer.resblocks.0.mlp.c_proj.weight"]}, hf)
    assert list(ok) == ["encoder.layers.0.mlp.fc2.weight"]
    with pytest.raises(ModelError, match="does not have"):
        H.map_patch({"transformer.resblocks.1.mlp.c_proj.weight":
                     clip.model.state_dict()["transformer.resblocks.1.mlp.c_proj.weight"]}, hf)
    with pytest.raises(ModelError, match="not a text-tower parameter"):
        H.map_patch({"visual.proj": clip.model.state_dict()["visual.proj"]}, hf)


def test_tokenizer_ids_equal_open_clip(tmp_path):
    model = build("tiny-clip")
    tok = build_tokenizer(tmp_path / "tok", 32)
    ids = tok(PROMPTS, padding="max_length", truncation=True, max_length=32).input_ids
    assert torch.equal(torch.tensor(ids), model.tokenizer(PROMPTS))
    from transformers import CLIPTokenizer

    again = CLIPTokenizer.from_pretrained(str(tmp_path / "tok"))
    assert again(PROMPTS[:2], padding="max_length", max_length=32).input_ids == ids[:2]
