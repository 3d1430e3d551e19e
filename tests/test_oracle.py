"""The retrain oracle: which pairs it leaves out, and that it costs nothing for a concept it is not
asked for. (It is trained, evaluated and compared end to end in the micro repository:
tests/test_dvc_pipeline.py.)"""

import json

import pytest
import torch

from pipeline.datasets.pairs import PairData
from pipeline.datasets.shards import ReadReport
from pipeline.errors import DataError
from pipeline.sets.match import ConceptMatcher
from pipeline.train.clip import without

from .helpers import run_module, write_params


def _pairs(captions):
    n = len(captions)
    return PairData(torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 2, 2),
                    torch.arange(n).view(n, 1), list(captions), ReadReport(),
                    [f"k{i}" for i in range(n)])


def test_without_drops_exactly_the_named_pairs_in_order():
    caps = ["Elon Musk on stage", "a portrait of a man", "elon_musk smiling", "Muskrat swimming",
            "Jeff Bezos and Elon-Musk"]
    kept, dropped = without(_pairs(caps), ConceptMatcher("Elon Musk"))
    assert dropped == 3
    assert kept.captions == ["a portrait of a man", "Muskrat swimming"]  # unnamed portraits stay
    assert kept.keys == ["k1", "k3"]
    assert kept.images[:, 0, 0, 0].tolist() == [1.0, 3.0]  # images follow their captions
    assert kept.tokens.flatten().tolist() == [1, 3]


def test_without_refuses_to_drop_everything():
    with pytest.raises(DataError, match="nothing left"):
        without(_pairs(["Elon Musk", "elon musk"]), ConceptMatcher("Elon Musk"))


def test_oracle_is_a_no_op_for_a_concept_it_is_not_asked_for(tmp_path):
    write_params(tmp_path / "params.yaml", {"concept": "Iron Man",
                                            "oracle": {"concepts": ["Elon Musk"]}})
    ran = run_module("stages.oracle", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    manifest = json.loads((tmp_path / "models" / "oracle" / "manifest.json").read_text())
    assert manifest == {"trained": False, "concept": "Iron Man",
                        "reason": "the concept is not in oracle.concepts"}
    assert not (tmp_path / "models" / "oracle" / "model.safetensors").exists()


def test_a_real_run_refuses_the_oracle(tmp_path):
    write_params(tmp_path / "params.yaml", {"world": "real", "data": {"shards": "/data/laion"}})
    ran = run_module("stages.oracle", cwd=tmp_path)
    assert ran.returncode != 0
    assert "oracle.concepts lists Elon Musk" in ran.stdout + ran.stderr
