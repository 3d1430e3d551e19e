import re
from pathlib import Path

import pytest
import yaml

from pipeline import params
from pipeline.errors import ParamsError

from .helpers import params_dict

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
    ({"pretrian": {}}, "unknown key pretrian; allowed under the top level"),
    ({"model": {"nam": "x"}}, "unknown key model.nam"),
    ({"eval": {"templates": {"objects": ["no placeholder"]}}}, "eval.templates.objects"),
    ({"baselines": {"methods": ["ga", "salun"]}}, "baselines.methods must hold names from ft, ga"),
    ({"baselines": {"lr": {"ga": -1}}}, "baselines.lr.ga must be > 0"),
    ({"baselines": {"ssd": {"alpha": 0}}}, "baselines.ssd.alpha must be > 0"),
])
def test_bad_values_name_the_key(patch, message):
    with pytest.raises(ParamsError, match=message.replace(".", r"\.")):
        params.from_dict(params_dict(patch))


def test_a_mix_without_every_kind_is_refused():
    raw = params_dict()
    raw["tinyworld"]["mix"] = {"identity": 1}
    with pytest.raises(ParamsError, match=r"tinyworld\.mix must have exactly the keys"):
        params.from_dict(raw)


@pytest.mark.parametrize("key", ["unlearn.target", "sd.search.retained_per_kind",
                                 "canvas.train.blur", "concept", "rank.fronts"])
def test_a_missing_key_is_an_error_that_names_it(key):
    """params.yaml is the only home of a value: no code default takes over silently."""
    raw = params_dict()
    *path, last = key.split(".")
    node = raw
    for part in path:
        node = node[part]
    del node[last]
    with pytest.raises(ParamsError, match=f"missing key {re.escape(key)} "):
        params.from_dict(raw)


def test_every_path_param_is_a_string_key_of_params_yaml():
    raw = params_dict()
    for key in params.path_keys():
        node = raw
        for part in key.split("."):
            node = node[part]
        assert isinstance(node, str) and node, key


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        params.load(tmp_path / "params.yaml")
