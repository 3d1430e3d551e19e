"""Caches, patches and the concept matcher."""

import subprocess
import sys

import pytest
import torch

from pipeline.errors import ModelError
from pipeline.models.factory import model_config
from pipeline.models.structure import state_dict_hash
from pipeline.sets.match import ConceptMatcher
from pipeline.unlearn import patch as P
from pipeline.unlearn.features import FeatureCache
from pipeline.unlearn.slug import edited


@pytest.mark.parametrize("layer", [
    "visual.transformer.resblocks.1.attn.out_proj.weight",
    "visual.transformer.resblocks.0.mlp.c_fc.weight",
    "visual.conv1.weight",
    "visual.proj",
    "transformer.resblocks.1.mlp.c_proj.weight",
    "transformer.resblocks.0.attn.in_proj_weight",
    "transformer.resblocks.0.attn.out_proj.weight",
    "transformer.resblocks.1.mlp.c_fc.weight",
    "text_projection",
])
def test_cached_features_equal_a_full_recompute(tiny, layer):
    model = tiny.model
    torch.manual_seed(1)
    images = {"a": torch.randn(6, 3, 32, 32)}
    texts = {"t": tiny.tokenizer(["a photo of Elon Musk.", "a red star", "Iron Man figure"])}
    cache = FeatureCache(model, images, texts, batch_size=4)
    other = "visual.conv1.weight" if layer != "visual.conv1.weight" else "text_projection"
    for name in (layer, other, layer):  # a search moves between layers: each state is kept
        cache.prepare(name)
    p = dict(model.named_parameters())[layer]
    with edited(p, torch.randn_like(p), 0.5):
        got = cache.features()
        want_img = model.encode_image(images["a"], normalize=True)
        want_txt = model.encode_text(texts["t"], normalize=True)
    assert torch.allclose(got["a"], want_img, atol=1e-5)
    assert torch.allclose(got["t"], want_txt, atol=1e-5)
    naive = FeatureCache(model, images, texts, cached=False)
    assert torch.allclose(naive.features()["a"], model.encode_image(images["a"], normalize=True),
                          atol=1e-6)



@pytest.mark.parametrize("layer", [
    "visual.transformer.resblocks.0.attn.out_proj.weight",
    "visual.transformer.resblocks.1.mlp.c_fc.weight",
    "visual.transformer.resblocks.0.mlp.c_proj.weight",
    "transformer.resblocks.1.attn.out_proj.weight",
    "transformer.resblocks.0.mlp.c_fc.weight",
    "transformer.resblocks.1.mlp.c_proj.weight",
    "transformer.resblocks.0.mlp.c_fc.bias",
])
def test_the_linear_shortcut_equals_a_full_recompute(tiny, layer):
    """y0 + lambda * (G x), cached once per layer, against the model run from scratch at several
    steps; an edit off the prepared direction is recomputed, not shortcut."""
    model = tiny.model
    torch.manual_seed(2)
    images = {"a": torch.randn(6, 3, 32, 32)}
    texts = {"t": tiny.tokenizer(["a photo of Elon Musk.", "a red star", "Iron Man figure"])}
    p = dict(model.named_parameters())[layer]
    g = torch.randn_like(p)
    cache = FeatureCache(model, images, texts, batch_size=4)
    cache.prepare(layer, g)
    assert cache.lin is not None
    for lam in (0.0, 0.3, -1.7, 4.0):
        with edited(p, g, lam):
            assert cache.lin[0].lam() == pytest.approx(lam, abs=1e-5)  # found from the tensor
            got = cache.features()
            want = {"a": model.encode_image(images["a"], normalize=True),
                    "t": model.encode_text(texts["t"], normalize=True)}
        for k in want:
            assert torch.allclose(got[k], want[k], atol=1e-5), (lam, k)
    with edited(p, torch.randn_like(p), 0.5):  # not along g: the shortcut must not be used
        assert cache.lin[0].lam() is None
        got = cache.features()
        want = {"a": model.encode_image(images["a"], normalize=True),
                "t": model.encode_text(texts["t"], normalize=True)}
    for k in want:
        assert torch.allclose(got[k], want[k], atol=1e-5), k


def test_the_shortcut_is_off_where_it_cannot_apply(tiny):
    model = tiny.model
    images = {"a": torch.randn(2, 3, 32, 32)}
    texts = {"t": tiny.tokenizer(["a red star"])}
    cache = FeatureCache(model, images, texts)
    for layer in ("visual.conv1.weight", "visual.proj", "transformer.resblocks.0.attn.in_proj_weight"):
        cache.prepare(layer, torch.randn_like(dict(model.named_parameters())[layer]))
        assert cache.lin is None, layer
    off = FeatureCache(model, images, texts, shortcut=False)
    off.prepare("visual.transformer.resblocks.0.mlp.c_fc.weight",
                torch.randn_like(model.visual.transformer.resblocks[0].mlp.c_fc.weight))
    assert off.lin is None


def _patch(model, layer="visual.proj"):
    new = dict(model.named_parameters())[layer].detach() + 0.01
    return P.Patch({layer: new}, {"base_model_sha256": state_dict_hash(model), "concept": "x",
                                  "layers": [layer], "lambda": 0.01})


def test_a_patch_is_tamper_evident_in_every_file_it_holds(tiny, tmp_path):
    """Each tensor and the manifest's content carry a SHA-256; a change to any of them (same
    shapes, same JSON keys) is refused when the patch is read, and so is a manifest with no
    hashes. The extra file (a mapping onto another model) is checked the same way."""
    import json

    from safetensors.torch import load_file, save_file

    patch = _patch(tiny.model)
    mapped = {"encoder.layers.0.self_attn.out_proj.weight": torch.ones(2, 2)}
    P.save(patch, tmp_path / "p", {"mapped.safetensors": mapped})
    assert torch.equal(P.read_tensors(tmp_path / "p", "mapped.safetensors")[
        "encoder.layers.0.self_attn.out_proj.weight"], torch.ones(2, 2))
    man = json.loads((tmp_path / "p" / P.MANIFEST).read_text())
    assert set(man["integrity"]["tensors"]) == {P.TENSORS, "mapped.safetensors"}

    def tampered(edit) -> str:
        import shutil

        shutil.rmtree(tmp_path / "t", ignore_errors=True)
        shutil.copytree(tmp_path / "p", tmp_path / "t")
        edit(tmp_path / "t")
        with pytest.raises(ModelError) as e:
            P.load(tmp_path / "t")
            P.read_tensors(tmp_path / "t", "mapped.safetensors")
        return str(e.value)

    def scale(folder, name=P.TENSORS):
        save_file({k: v * 100 for k, v in load_file(str(folder / name)).items()},
                  str(folder / name))

    def edit_manifest(folder, change):
        m = json.loads((folder / P.MANIFEST).read_text())
        change(m)
        (folder / P.MANIFEST).write_text(json.dumps(m))

    assert "tensor visual.proj differs" in tampered(scale)
    assert "differs" in tampered(lambda f: scale(f, "mapped.safetensors"))
    assert "changed after it was written" in tampered(
        lambda f: edit_manifest(f, lambda m: m.update({"lambda": 0.02})))
    assert "changed after it was written" in tampered(
        lambda f: edit_manifest(f, lambda m: m["integrity"]["tensors"][P.TENSORS].update(
            {"visual.proj": "0" * 64})))
    assert "with its hashes" in tampered(lambda f: edit_manifest(f, lambda m: m.pop("integrity")))
    assert "not a readable safetensors" in tampered(
        lambda f: (f / P.TENSORS).write_bytes((f / P.TENSORS).read_bytes()[:40]))


def test_a_stack_refuses_a_tampered_patch(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    from pipeline.unlearn import stack as S

    h = state_dict_hash(tiny.model)
    S.save(S.Stack("joint", h, [_patch(tiny.model), _patch(tiny.model, "text_projection")]),
           tmp_path / "s")
    second = sorted(p for p in (tmp_path / "s").iterdir() if p.is_dir())[1]
    t = load_file(str(second / P.TENSORS))
    save_file({k: v.flip(0) for k, v in t.items()}, str(second / P.TENSORS))
    with pytest.raises(ModelError, match="text_projection differs"):
        S.load(tmp_path / "s")


def test_patch_apply_revert_and_export_round_trip(tiny, tmp_path):
    model = tiny.model
    base = state_dict_hash(model)
    patch = _patch(model)
    P.save(patch, tmp_path / "patch")
    loaded = P.load(tmp_path / "patch")
    assert torch.equal(loaded.tensors["visual.proj"], patch.tensors["visual.proj"])
    originals = P.apply(model, loaded)
    assert torch.equal(model.visual.proj, patch.tensors["visual.proj"])
    P.revert(model, originals)
    assert state_dict_hash(model) == base
    out = P.export(model, loaded, tmp_path / "unlearned", model_config("tiny-clip", None))
    assert state_dict_hash(model) == base  # export leaves the base model untouched
    # the folder loads as `slug export` prints, in a process that never imported this project
    # (so the tiny config is not registered with open_clip there)
    code = ("import open_clip, torch, sys; m, _, _ = open_clip.create_model_and_transforms("
            f"'local-dir:{out}'); torch.save(m.state_dict(), sys.argv[1])")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "sd.pt")], check=True,
                   cwd=tmp_path, capture_output=True)
    sd, base_sd = torch.load(tmp_path / "sd.pt", weights_only=True), model.state_dict()
    assert torch.equal(sd["visual.proj"], patch.tensors["visual.proj"])  # bit-exact
    assert all(torch.equal(sd[k], base_sd[k]) for k in base_sd if k != "visual.proj")


def test_patch_refuses_another_base_model(tiny):
    patch = _patch(tiny.model)
    patch.manifest["base_model_sha256"] = "0" * 64
    with pytest.raises(ModelError, match="made for base model 000000000000"):
        P.apply(tiny.model, patch)


@pytest.mark.parametrize("caption, hit", [
    ("ELON MUSK at the gala", True), ("elon_musk.jpg", True), ("Elon  Musk's car", True),
    ("Elon-Musk", True), ("elonmusk", False), ("Muskrat Elon", False), ("", False),
])
def test_matcher_word_boundaries_case_and_underscores(caption, hit):
    assert ConceptMatcher("Elon_Musk")(caption) is hit


def test_matcher_aliases():
    m = ConceptMatcher("Iron Man", ["Tony Stark"])
    assert m("tony stark in a suit") and m("IRON_MAN") and not m("ironmonger")


def test_saved_tensors_are_byte_identical_across_processes(tmp_path):
    """safetensors writes several metadata keys in a random order per process; ``save_tensors``
    keeps one sorted key, so an artifact's hash depends on its content only."""
    import subprocess
    import sys

    code = ("import sys, torch; from pipeline.io import save_tensors; "
            "save_tensors(sys.argv[1], {'w': torch.arange(6.).view(2, 3)}, "
            "{'arch': 'x', 'classes': ['a', 'b'], 'width': 8, 'kind': 'style', 'seed': 0})")
    outs = [tmp_path / f"{i}.safetensors" for i in range(3)]
    for out in outs:
        subprocess.run([sys.executable, "-c", code, str(out)], check=True)
    assert len({o.read_bytes() for o in outs}) == 1
    from pipeline.io import tensors_meta

    assert tensors_meta(outs[0])["classes"] == ["a", "b"]
