"""UnlearnCanvas pieces: the grid reader, tars, the metric arithmetic, classifier loading errors."""

import json
import shutil
import tarfile

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from pipeline.canvas import classifiers as C
from pipeline.canvas import data as D
from pipeline.canvas import protocol as P
from pipeline.canvas.target import forget_retain, halves, interleave
from pipeline.canvas.training import split
from pipeline.errors import DataError, ModelError

from .helpers import make_params

TINY_STYLES, TINY_OBJECTS = make_params().canvas.styles, make_params().canvas.objects

TEMPLATE = "A {object} image in {style} style."


def test_missing_style_or_object_folder_is_a_clear_error(world_copy):
    root = world_copy / "unlearncanvas"
    with pytest.raises(DataError, match="Impressionism"):
        D.load(root, TINY_STYLES + ["Impressionism"], TINY_OBJECTS)
    shutil.rmtree(root / "Van_Gogh" / "Heart")
    with pytest.raises(DataError, match=r"style 'Van_Gogh', object 'Heart'"):
        D.load(root, TINY_STYLES, TINY_OBJECTS)


def test_forget_tars_hold_one_concept_with_spaced_prompts(micro_world, tmp_path):
    canvas = D.load(micro_world / "unlearncanvas", TINY_STYLES, TINY_OBJECTS)
    counts = D.write_forget_tars(canvas, TEMPLATE, tmp_path)
    assert counts["style_Van_Gogh.tar"] == len(TINY_OBJECTS)  # 1 image per cell in the micro world
    assert counts["object_Heart.tar"] == len(TINY_STYLES)
    with tarfile.open(tmp_path / "style_Van_Gogh.tar") as tf:
        names = tf.getnames()
        texts = [tf.extractfile(n).read().decode() for n in names if n.endswith(".txt")]
    assert "Heart_Van_Gogh_1.jpg" in names
    assert all(t.endswith("in Van Gogh style.") for t in texts)
    assert "A Heart image in Van Gogh style." in texts


def test_find_target_ignores_case_spaces_and_underscores(micro_world):
    canvas = D.load(micro_world / "unlearncanvas", TINY_STYLES, TINY_OBJECTS)
    assert D.find_target(canvas, "van gogh") == D.Target("Van_Gogh", "style",
                                                         TINY_STYLES.index("Van_Gogh"))
    assert D.find_target(canvas, "heart").kind == "object"
    assert D.find_target(canvas, "Elon Musk") is None


def test_scores_follow_the_unlearncanvas_definitions():
    style = np.array([[1.0, 0.5], [0.0, 1.0], [1.0, 1.0]])   # 3 styles x 2 objects
    obj = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    grid = P.Grid(style, obj, 2)
    s = P.scores(grid, D.Target("S1", "style", 1))
    assert s["UA"] == pytest.approx(1 - 0.5)
    assert s["IRA"] == pytest.approx(np.mean([1.0, 0.5, 1.0, 1.0]))
    assert s["CRA"] == pytest.approx(np.mean([0.0, 1.0, 1.0, 0.0]))
    o = P.scores(grid, D.Target("O0", "object", 0))
    assert o["UA"] == pytest.approx(1 - np.mean([0.0, 0.5, 1.0]))
    assert o["IRA"] == pytest.approx(np.mean([1.0, 0.5, 0.0]))
    assert o["CRA"] == pytest.approx(np.mean([0.5, 1.0, 1.0]))
    assert P.Grid.from_dict(json.loads(json.dumps(grid.to_dict()))).style_acc.tolist() == \
        style.tolist()

    half = P.scores(grid, D.Target("S1", "style", 1), others=[2])  # one half of the others
    assert half["IRA"] == pytest.approx(1.0) and half["CRA"] == pytest.approx(0.5)
    assert half["UA"] == s["UA"]


def test_the_other_concepts_split_in_two_halves():
    canvas = D.Canvas(["S0", "S1", "S2", "S3", "S4"], ["O0", "O1", "O2"], [])
    seen, unseen = halves(canvas, D.Target("S1", "style", 1))
    assert (seen, unseen) == (["S0", "S3"], ["S2", "S4"])
    seen, unseen = halves(canvas, D.Target("O2", "object", 2))
    assert (seen, unseen) == (["O0"], ["O1"])


def test_retain_pairs_know_their_concept(micro_world, tmp_path):
    from pipeline.models.factory import build

    canvas = D.load(micro_world / "unlearncanvas", TINY_STYLES, TINY_OBJECTS)
    D.write_forget_tars(canvas, TEMPLATE, tmp_path)
    b = build("tiny-clip")
    target = D.find_target(canvas, "Van_Gogh")
    forget, retain, concepts = forget_retain(canvas, target, tmp_path, b.preprocess, b.tokenizer,
                                             "name", 10)
    assert len(concepts) == len(retain.captions) == 10
    assert "Van_Gogh" not in concepts
    for caption, concept in zip(retain.captions, concepts):
        assert caption.endswith(f"in {concept.replace('_', ' ')} style.")

def test_interleave_takes_one_image_per_prompt_in_turn():
    caps = ["a", "a", "a", "b", "c", "c"]
    order = interleave(caps, 5)
    assert [caps[i] for i in order[:3]] == ["a", "b", "c"]
    assert order == [0, 3, 4, 1, 5]


def test_tiny_classifier_head_size_must_match_the_class_list(tmp_path):
    path = tmp_path / "style.safetensors"
    C.save_tiny(C.TinyConvNet(len(TINY_STYLES), 8), TINY_STYLES, path, {})
    judge = C.load(C.TINY, path, TINY_STYLES, "canvas.styles")
    assert judge.predict(torch.rand(3, 3, 20, 20)).shape == (3,)
    with pytest.raises(ModelError, match=r"8 outputs, but canvas.styles lists 9 classes"):
        C.load(C.TINY, path, TINY_STYLES + ["Monet"], "canvas.styles")
    with pytest.raises(ModelError, match="was trained on classes"):
        C.load(C.TINY, path, list(reversed(TINY_STYLES)), "canvas.styles")


def test_timm_checkpoint_loads_weights_only_and_checks_its_head(tmp_path):
    import timm

    arch = "vit_tiny_patch16_224"  # same timm family as UnlearnCanvas's vit_large_patch16_224
    model = timm.create_model(arch, pretrained=False, num_classes=20, img_size=32)
    ok = tmp_path / "cls.pth"
    torch.save({"model_state_dict": model.state_dict(), "epoch": 3}, ok)
    with pytest.raises(ModelError, match=r"head.weight has 20 outputs, but canvas.objects lists "
                                         r"12 classes"):
        C.load(arch, ok, TINY_OBJECTS, "canvas.objects", key="model_state_dict")
    with pytest.raises(ModelError, match="no key 'state'"):
        C.load(arch, ok, [f"c{i}" for i in range(20)], "canvas.objects", key="state")
    evil = tmp_path / "evil.pth"
    torch.save({"model_state_dict": {"head.weight": torch.zeros(20, 1)}, "x": object()}, evil)
    with pytest.raises(ModelError, match="evil.pth is not a weights-only checkpoint"):
        C.load(arch, evil, [f"c{i}" for i in range(20)], "canvas.objects")
    with pytest.raises(ModelError, match="not found"):
        C.load(arch, tmp_path / "nope.pth", TINY_OBJECTS, "canvas.objects")


def test_corrupt_tiny_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "object.safetensors"
    save_file({"head.weight": torch.zeros(12, 4), "head.bias": torch.zeros(12)}, str(path))
    with pytest.raises(ModelError, match="does not fit"):
        C.load(C.TINY, path, TINY_OBJECTS, "canvas.objects")


def test_split_is_stratified_and_handles_single_image_cells():
    styles = [0] * 10 + [1] * 10 + [0, 1, 0, 1]
    objects = [0] * 10 + [0] * 10 + [1, 1, 2, 2]
    train, val = split(styles, objects, 0.2, seed=0)
    assert sorted(train + val) == list(range(24)) and not set(train) & set(val)
    assert sum(i < 10 for i in val) == 2 and sum(10 <= i < 20 for i in val) == 2
    assert sum(i >= 20 for i in val) == 1  # the four one-image cells, pooled: 20 % of 4
    assert split(styles, objects, 0.2, seed=0) == (train, val)


def test_the_sweep_table_has_a_row_per_method_with_both_halves(tmp_path):
    """Per method: the averages, the chance-aware UA maximum 1 - 1/K and IRA / CRA on each half
    of the other concepts; the figure is written."""
    from pipeline.canvas import report

    def result(method, kind, concept, ua, seen, unseen):
        half = lambda v: {"IRA": v, "CRA": v / 2, "ceiling": {"IRA": 0.9, "CRA": 0.6}}  # noqa: E731
        return {"method": method, "kind": kind, "concept": concept, "UA": ua, "IRA": 0.5,
                "CRA": 0.4, "before": {"UA": 0.1}, "ceiling": {"IRA": 0.9, "CRA": 0.6},
                "halves": {"seen": half(seen), "unseen": half(unseen)}, "time_s": 1.0,
                "peak_memory_mb": 2.0, "storage_mb": 0.1, "rel_step": 0.5, "layer": "l",
                "search": {"reached": True}}

    results = [result(m, k, c, ua, s, u) for m, ua, s, u in (("slug", 0.8, 0.4, 0.2),
                                                               ("slug_nullspace", 0.9, 0.8, 0.6))
               for k, c in (("style", "Cubism"), ("style", "Mosaic"), ("object", "Bar"))]
    by = report.methods(results)
    assert list(by) == ["slug", "slug_nullspace"] and len(by["slug"]) == 3
    tabs = {m: report.table(rows, {"style": 8, "object": 12}) for m, rows in by.items()}
    t = tabs["slug_nullspace"]
    assert t["style"]["UA"] == 90.0 and t["style"]["UA_chance_max"] == 87.5
    assert t["object"]["UA_chance_max"] == round(100 * 11 / 12, 2)
    assert t["style"]["halves"]["unseen"] == {"IRA": 60.0, "CRA": 30.0, "IRA_ceiling": 90.0,
                                              "CRA_ceiling": 60.0}
    assert tabs["slug"]["style"]["halves"]["seen"]["IRA"] == 40.0
    assert t["mean_of_six"] == pytest.approx((90 + 50 + 40) / 3)  # both kinds alike here
    report.plot(by, tabs, tmp_path / "table.png")
    assert (tmp_path / "table.png").stat().st_size > 10_000
