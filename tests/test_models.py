from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from pipeline.errors import ModelError
from pipeline.models.factory import build
from pipeline.models.structure import state_dict_hash

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build("tiny-clip")


def test_tiny_model_builds_with_preprocess_and_tokenizer(tiny):
    img = torch.zeros(2, 3, tiny.image_size, tiny.image_size)
    tokens = tiny.tokenizer(["a photo of Elon Musk.", "a red star"])
    out = tiny.model(img, tokens)
    assert isinstance(out, dict)  # output_dict=True: no positional tuple to misread
    assert out["image_features"].shape == out["text_features"].shape == (2, 128)
    from PIL import Image

    x = tiny.preprocess(Image.new("RGB", (64, 64)))
    assert x.shape == (3, tiny.image_size, tiny.image_size)


def test_local_safetensors_loads_offline_through_the_same_call(tiny, tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in tiny.model.state_dict().items()}, str(path))
    again = build("tiny-clip", str(path))
    assert state_dict_hash(again.model) == state_dict_hash(tiny.model)
    fresh = build("tiny-clip")
    assert state_dict_hash(fresh.model) != state_dict_hash(tiny.model)


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ModelError, match="unknown architecture 'ViT-Nope'.*tiny configs: tiny-clip"):
        build("ViT-Nope")


def test_missing_pretrained_file_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        build("tiny-clip", str(tmp_path / "missing.safetensors"))


def test_unknown_pretrained_tag_is_a_clear_error():
    with pytest.raises(ModelError, match="'laion9000' is neither a file or folder here nor a "
                                         "pretrained tag of ViT-B-32.*laion400m_e32"):
        build("ViT-B-32", "laion9000")
    with pytest.raises(ModelError, match="pipeline is a folder without open_clip_config.json"):
        build("tiny-clip", "pipeline")  # a folder is named as a folder, not as a tag


def test_checkpoint_of_another_architecture_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.safetensors"
    save_file({"visual.conv1.weight": torch.zeros(1, 1, 1, 1)}, str(path))
    with pytest.raises(ModelError, match="cannot load"):
        build("tiny-clip", str(path))


def test_bad_precision_is_a_clear_error():
    with pytest.raises(ModelError, match="unknown precision 'fp8'"):
        build("tiny-clip", precision="fp8")


@pytest.mark.parametrize("name,tag,quick,trained", [
    ("ViT-L-14-336", "openai", False, "QuickGELU"), ("ViT-L-14", "openai", False, "QuickGELU"),
    ("ViT-B-32", "laion400m_e32", False, "QuickGELU"),
    ("ViT-H-14", "laion2b_s32b_b79k", True, "GELU")])
def test_an_activation_the_weights_were_not_trained_with_is_refused(name, tag, quick, trained):
    from pipeline.models.factory import check

    with pytest.raises(ModelError, match=f"trained with {trained}; set model.quick_gelu: "
                                         f"{str(not quick).lower()}"):
        check(name, tag, "fp32", quick)
    check(name, tag, "fp32", not quick)  # the right one passes


def test_a_quickgelu_architecture_needs_no_flag():
    from pipeline.models.factory import check

    check("ViT-B-32-quickgelu", "laion400m_e32", "fp32", False)


def test_every_recipe_sets_the_activation_its_weights_were_trained_with():
    import yaml

    from pipeline.models.factory import check

    recipes = sorted((ROOT / "recipes").glob("*.yaml"))
    tags = 0
    for path in recipes:
        m = {"quick_gelu": False, **yaml.safe_load(path.read_text()).get("model", {})}
        if m.get("pretrained") and "/" not in m["pretrained"]:  # an open_clip tag
            check(m["name"], m["pretrained"], "fp32", m["quick_gelu"])
            tags += 1
    assert tags >= 5  # clip-vit-b-32, sd-1-5, sd-2-1, unlearncanvas, llava-1-5
