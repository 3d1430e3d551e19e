"""The summary row of `dvc exp show`: the right numbers, and never two concepts in one row."""

import pytest

from pipeline.errors import DataError
from pipeline.report.summary import short_layer, summary


def _inputs(concept="Iron Man", sd_concept="Iron Man", reached=True):
    unlearn = {"concept": concept, "kind": "character", "layer": "visual.proj",
               "rel_step": 0.123456, "time_s": 8.6, "reached_target": reached}
    after = {"forget": {"top1": 0.025, "top5": 0.575}, "celeba": {"top1": 0.985},
             "imagenet": {"top1": 0.905}}
    evaluate = {"concept": concept, "kind": "character", "after": after}
    sd = {"concept": sd_concept, "kind": "character",
          "after": {"forget": 0.0, "retained": 0.71875}}
    return unlearn, evaluate, sd


def test_summary_row():
    row = summary(*_inputs())
    assert row == {"forgot": "Iron Man", "forgot_kind": "character", "slug_layer": "v.proj",
                   "slug_step": 0.1235, "slug_reached": True, "forget@1": 2.5, "forget@5": 57.5, "celeba@1": 98.5,
                   "imagenet@1": 90.5, "sd_forget": 0.0, "sd_kept": 71.9, "unlearn_s": 8.6}


def test_summary_row_says_when_the_search_missed():
    assert summary(*_inputs(reached=False))["slug_reached"] is False


@pytest.mark.parametrize("name, short", [
    ("visual.transformer.resblocks.0.attn.out_proj.weight", "v.b0.attn.out_proj"),
    ("transformer.resblocks.11.mlp.c_fc.weight", "t.b11.mlp.c_fc"),
    ("visual.conv1.weight", "v.conv1"), ("text_projection", "text_projection")])
def test_short_layer(name, short):
    assert short_layer(name) == short


def test_summary_refuses_two_concepts():
    with pytest.raises(DataError, match="sd_evaluate: 'Elon Musk'"):
        summary(*_inputs(sd_concept="Elon Musk"))
