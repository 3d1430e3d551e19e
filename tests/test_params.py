from pathlib import Path

import pytest
import yaml

from pipeline import params
from pipeline.errors import ParamsError

ROOT = Path(__file__).resolve().parents[1]


def test_repository_params_are_valid_and_complete():
    p = params.load(ROOT / "params.yaml")
    assert p.concept and p.model.name and p.pretrain.steps > 0
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert params.to_dict(params.from_dict(raw)) == params.to_dict(p)


@pytest.mark.parametrize("patch, message", [
    ({"pretrain": {"lr": "fast"}}, "pretrain.lr must be a number"),
    ({"pretrain": {"lr": 0}}, "pretrain.lr must be > 0"),
    ({"pretrain": {"steps": 1.5}}, "pretrain.steps must be an integer"),
    ({"model": {"precision": "fp8"}}, "model.precision must be one of fp32, fp16, bf16"),
    ({"tinyworld": {"n_shards": 0}}, "tinyworld.n_shards must be >= 1"),
    ({"tinyworld": {"mix": {"identity": 1}}}, "tinyworld.mix must have exactly the keys"),
    ({"pretrian": {}}, "unknown key pretrian; allowed under the top level"),
    ({"model": {"nam": "x"}}, "unknown key model.nam"),
    ({"eval": {"templates": {"objects": ["no placeholder"]}}}, "eval.templates.objects"),
    ({"baselines": {"methods": ["ga", "salun"]}}, "baselines.methods must hold names from ft, ga"),
    ({"baselines": {"lr": {"ga": -1}}}, "baselines.lr.ga must be > 0"),
    ({"baselines": {"ssd": {"alpha": 0}}}, "baselines.ssd.alpha must be > 0"),
])
def test_bad_values_name_the_key(patch, message):
    with pytest.raises(ParamsError, match=message.replace(".", r"\.")):
        params.from_dict(patch)


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        params.load(tmp_path / "params.yaml")
