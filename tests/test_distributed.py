"""The gradient pass on several processes (``gradients.nproc``, ``pipeline.distributed``): the
gradients stage on the micro world, once in one process and once relaunched under torchrun as 2
gloo processes, gives the same gradients (to 1e-6 relative), the same layer ranking and the same
selection."""

from __future__ import annotations

import json
import shutil

import pytest
from safetensors.torch import load_file

from pipeline.unlearn import slug

from .helpers import merge, run_module, write_params
from .micro import MICRO_PARAMS

BATCH = 4  # several batches per half of each set, so that both processes take some


def _pass(repo, tmp_path, nproc: int):
    out = f"data/grads_{nproc}"
    pfile = write_params(tmp_path / f"p{nproc}.yaml", merge(MICRO_PARAMS, {
        "gradients": {"batch_size": BATCH, "nproc": nproc, "out": out}}))
    ran = run_module("stages.gradients", env={"SLUG_PARAMS": str(pfile)}, cwd=repo)
    assert ran.returncode == 0, ran.stderr
    folder = repo / out
    return (load_file(str(folder / "forget_grads.safetensors")),
            json.loads((folder / "layers.json").read_text()),
            json.loads((folder / "manifest.json").read_text()))


@pytest.mark.slow
def test_two_gloo_processes_give_the_single_process_gradients_and_ranking(micro_repo, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(micro_repo, repo, ignore=shutil.ignore_patterns(".git", "cache", "baselines",
                                                                     "results"))
    g1, rows1, m1 = _pass(repo, tmp_path, 1)
    g2, rows2, m2 = _pass(repo, tmp_path, 2)
    assert (m1["processes"], m2["processes"]) == (1, 2)
    assert m1["n_forget"] // BATCH >= 2 and m1["n_retain"] // BATCH >= 4
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
