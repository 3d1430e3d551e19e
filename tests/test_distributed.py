"""The gradient pass on several processes (``gradients.nproc``, ``pipeline.distributed``): the
gradients stage on the micro world's shards (one as the forget split, one as the retain split,
the tiny CLIP at seed 0), once in one process and once relaunched under torchrun as 2 gloo
processes, gives the same gradients (to 1e-6 relative), the same layer ranking and the same
selection. Unit-sized: it needs no micro repository, so it runs while that is built."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

from pipeline.io import save_tensors
from pipeline.sets.build import split_path
from pipeline.unlearn import slug

from .helpers import make_params, run_module, write_params

ROOT = Path(__file__).resolve().parents[1]
BATCH = 8  # several batches per half of each set, so that both processes take some


def _pass(root, nproc: int):
    out = root / f"grads_{nproc}"
    pfile = write_params(root / f"p{nproc}.yaml", {
        "gradients": {"batch_size": BATCH, "nproc": nproc, "out": str(out)}})
    # torchrun's processes import the stage from this repository, as DVC's would from its root
    ran = run_module("stages.gradients", env={"SLUG_PARAMS": str(pfile), "PYTHONPATH": str(ROOT)},
                     cwd=root)
    assert ran.returncode == 0, ran.stderr
    return (load_file(str(out / "forget_grads.safetensors")),
            json.loads((out / "layers.json").read_text()),
            json.loads((out / "manifest.json").read_text()))


@pytest.mark.slow
def test_two_gloo_processes_give_the_single_process_gradients_and_ranking(micro_world, tiny,
                                                                          tmp_path):
    p = make_params()  # the default paths, under tmp_path
    (tmp_path / p.sets.out).mkdir(parents=True)
    for split, shard in (("forget_search", "00000"), ("retain", "00001")):
        shutil.copy(micro_world / "laion" / f"{shard}.tar", split_path(tmp_path / p.sets.out, split))
    save_tensors(tmp_path / p.model.pretrained, tiny.model.state_dict(), {"seed": "0"})
    g1, rows1, m1 = _pass(tmp_path, 1)
    g2, rows2, m2 = _pass(tmp_path, 2)
    assert (m1["processes"], m2["processes"]) == (1, 2)
    assert m1["n_forget"] // BATCH >= 4 and m1["n_retain"] // BATCH >= 4
    assert sorted(g1) == sorted(g2) and g1
    for k in g1:
        assert float((g2[k] - g1[k]).norm() / g1[k].norm()) <= 1e-6, k
    for key in ("forget_loss", "retain_loss"):
        assert m2[key] == pytest.approx(m1[key], rel=1e-6)
    assert [r["name"] for r in rows1] == [r["name"] for r in rows2]
    for a, b in zip(rows1, rows2):
        assert b["importance"] == pytest.approx(a["importance"], rel=1e-5, abs=1e-12)
    for signed in (True, False):
        cfg = slug.RankConfig(signed, fronts=2, rule="front")
        (sel1, lv1), (sel2, lv2) = slug.rank(rows1, cfg), slug.rank(rows2, cfg)
        assert sel1 == sel2
        assert [(r["name"], r["front_level"]) for r in lv1] == [(r["name"], r["front_level"]) for r in lv2]
    assert m1["stored_layers"] == m2["stored_layers"]
