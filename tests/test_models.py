import pytest
import torch
from safetensors.torch import save_file

from pipeline.errors import ModelError
from pipeline.models.factory import build
from pipeline.models.structure import state_dict_hash


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
    with pytest.raises(ModelError, match="unknown pretrained tag 'laion9000'.*laion400m_e32"):
        build("ViT-B-32", "laion9000")


def test_checkpoint_of_another_architecture_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.safetensors"
    save_file({"visual.conv1.weight": torch.zeros(1, 1, 1, 1)}, str(path))
    with pytest.raises(ModelError, match="cannot load"):
        build("tiny-clip", str(path))


def test_bad_precision_is_a_clear_error():
    with pytest.raises(ModelError, match="unknown precision 'fp8'"):
        build("tiny-clip", precision="fp8")
