"""End to end: the repository's own dvc.yaml on a micro world, in a throw-away git repo, built
once for both tests (the main pipeline, then the UnlearnCanvas sweep on the same repository).

The micro world's tiny CLIP must *know* the concept before unlearning, or every method would
"forget" at once: its world is character-heavy and it is pretrained long enough that the
characters' evaluation images are named correctly (measured: Iron Man and every other character
1.00 after 150 steps of batch 64 on 2 x 600 samples, 27 s, against 0.00 for Elon Musk among the
24 identities; 500 steps on 2 x 1,000 identity-mixed samples were needed for Elon Musk), and the
test asserts it before looking at the unlearning."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .helpers import write_params

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

STYLES, OBJECTS = ["Pop_Art", "Van_Gogh"], ["Circle", "Heart"]
MICRO_PARAMS = {
    "concept": "Iron Man",
    "tinyworld": {"n_shards": 2, "samples_per_shard": 600, "celeba_per_identity": 2,
                  "imagenet_per_class": 2, "characters_per_class": 10, "canvas_per_pair": 1,
                  "holdout_samples": 60, "workers": 1,
                  "mix": {"identity": 0.2, "character": 0.3, "object": 0.32, "style": 0.22,
                          "distractor": 0.02}},
    "pretrain": {"steps": 150, "batch_size": 64, "eval_every": 150, "warmup": 10},
    "sets": {"n_retain": 60, "n_retain_val": 30, "n_nonmembers": 20},
    "unlearn": {"max_evals": 8},
    "evaluate": {"mia_seeds": 2},
    "baselines": {"epochs": 1, "ssd": {"max_evals": 3}},
    "sd": {"train": {"vae_steps": 3, "unet_steps": 3, "batch_size": 8},
           "search": {"target_images": 4, "images_per_prompt": 1, "retained_per_kind": 1},
           "evaluate": {"images_per_prompt": 2, "steps": 2, "retained_per_kind": 1,
                        "grid_images": 2}},
    "canvas": {"styles": STYLES, "objects": OBJECTS,
               "train": {"epochs": 1, "width": 8}, "finetune": {"steps": 3, "batch_size": 8},
               "search": {"images_per_prompt": 1, "retained_prompts": 3, "max_evals": 2,
                          "target": 1.0},  # untrained micro models: any step passes
               "evaluate": {"images_per_prompt": 1, "steps": 2}},
}


def _sh(*cmd, cwd):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _micro_repo(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for item in ("dvc.yaml", "pipeline", "stages", "slug_cli", ".dvc/config", ".dvcignore",
                 ".gitignore", "benchmarks"):
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, repo / item, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            (repo / item).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, repo / item)
    write_params(repo / "params.yaml", MICRO_PARAMS)
    _sh("git", "init", "-q", cwd=repo)
    _sh("git", "add", "-A", cwd=repo)
    _sh("git", "commit", "-qm", "micro", cwd=repo)
    return repo


@pytest.fixture(scope="module")
def micro_repo(tmp_path_factory):
    """The micro repository after one ``dvc repro`` of the main pipeline."""
    repo = _micro_repo(tmp_path_factory.mktemp("e2e"))
    _sh("dvc", "repro", cwd=repo)
    return repo


@pytest.mark.slow
def test_dvc_repro_runs_the_pipeline(micro_repo):
    repo = micro_repo
    metrics = json.loads((repo / "metrics" / "pretrain.json").read_text())
    assert set(metrics["zeroshot"]) == {"identities", "characters", "objects", "styles"}
    assert all(0 <= v["top1"] <= 1 for v in metrics["zeroshot"].values())
    assert (repo / "models" / "tiny-clip.safetensors").stat().st_size > 0
    assert (repo / "plots" / "pretrain" / "history.png").stat().st_size > 0
    assert "Data and pipelines are up to date" in _sh("dvc", "status", "dvc.yaml", cwd=repo)
    shown = json.dumps(json.loads(_sh("dvc", "metrics", "show", "--json", cwd=repo)))
    for name in ("pretrain", "filter", "rank", "unlearn", "evaluate", "compare", "sd_train",
                 "sd_unlearn", "sd_evaluate"):
        assert f"metrics/{name}.json" in shown
    ev = json.loads((repo / "metrics" / "evaluate.json").read_text())
    assert ev["concept"] == "Iron Man" and ev["kind"] == "character"
    assert set(ev["before"]) >= {"forget", "celeba", "imagenet", "mia", "forget_cosine"}
    assert ev["before"]["forget"]["top1"] >= 0.8  # the model knows the concept ...
    assert ev["after"]["forget"]["top1"] <= 0.5 * ev["before"]["forget"]["top1"]  # ... then not
    assert ev["after"]["forget_cosine"] < ev["before"]["forget_cosine"]
    manifest = json.loads((repo / "data" / "sets" / "manifest.json").read_text())
    assert manifest["concept"] == {"name": "Iron Man", "label": "Iron Man", "kind": "character",
                                   "index": manifest["concept"]["index"], "aliases": []}
    assert (repo / "models" / "patch" / "patch.safetensors").exists()
    cmp = json.loads((repo / "metrics" / "compare.json").read_text())
    assert set(cmp["methods"]) == {"original", "slug", "ft", "ga", "gaft", "salun_ref", "ssd"}
    assert cmp["methods"]["slug"]["rerun_matches_patch"] is True
    for m in ("ft", "ga", "gaft", "salun_ref", "ssd"):
        assert cmp["methods"][m]["storage_mb"] > 10 * cmp["methods"]["slug"]["storage_mb"]
        assert (repo / "models" / "baselines" / f"{m}.safetensors").exists()
    assert (repo / "plots" / "compare" / "pareto.png").stat().st_size > 0
    assert not _sh("git", "status", "--porcelain", "dvc.yaml", cwd=repo)  # dvclive left it alone
    sd = json.loads((repo / "metrics" / "sd_evaluate.json").read_text())
    assert sd["concept"] == "Iron Man" and 0 <= sd["before"]["forget"] <= 1
    assert (repo / "models" / "tiny-sd" / "model_index.json").exists()
    assert json.loads((repo / "metrics" / "sd_unlearn.json").read_text())[
        "mapping_max_abs_error"]["after"] < 1e-4
    assert (repo / "plots" / "sd" / "grid.png").stat().st_size > 0
    _sh(str(BIN / "python"), "-m", "slug_cli", "export-sd", "--out", "models/forgot", cwd=repo)
    from diffusers import StableDiffusionPipeline

    base = StableDiffusionPipeline.from_pretrained(str(repo / "models" / "tiny-sd"))
    out = StableDiffusionPipeline.from_pretrained(str(repo / "models" / "forgot"))
    changed = {k for k, v in out.text_encoder.state_dict().items()
               if not torch.equal(v, base.text_encoder.state_dict()[k])}
    layer = json.loads((repo / "metrics" / "sd_unlearn.json").read_text())["mapped_tensors"]
    assert changed == {k.removeprefix("text_model.") for k in layer}
    assert all(torch.equal(v, base.unet.state_dict()[k]) for k, v in out.unet.state_dict().items())
    canvas = json.loads((repo / "metrics" / "canvas.json").read_text())
    assert canvas["skipped"] is True and "Iron Man" in canvas["reason"]  # a character: no canvas


@pytest.mark.slow
def test_unlearncanvas_sweep_and_same_seeds_same_numbers(micro_repo):
    """The sweep's own dvc.yaml on two styles and two objects, the table, and one target rerun
    by hand: the same seeds give the same UA / IRA / CRA, step and patch."""
    repo = micro_repo
    _sh("dvc", "repro", "benchmarks/unlearncanvas/dvc.yaml", cwd=repo)
    table = json.loads((repo / "metrics" / "unlearncanvas.json").read_text())
    assert table["style"]["targets"] == 2 and table["object"]["targets"] == 2
    for kind in ("style", "object"):
        assert 0 <= table[kind]["UA"] <= 100 and 0 <= table[kind]["IRA_ceiling"] <= 100
    assert (repo / "plots" / "unlearncanvas" / "table.png").stat().st_size > 0
    clf = json.loads((repo / "metrics" / "canvas_classifiers.json").read_text())
    assert 0 <= clf["style"]["val_accuracy"] <= 1

    first = json.loads((repo / "results/unlearncanvas/style/Van_Gogh/metrics.json").read_text())
    _sh(str(BIN / "python"), "-m", "stages.canvas", "--target", "Van_Gogh", "--patch",
        "rerun/patch", "--metrics", "rerun/metrics.json", cwd=repo)
    again = json.loads((repo / "rerun" / "metrics.json").read_text())
    for key in ("UA", "IRA", "CRA", "layer", "lambda", "before", "after", "search"):
        assert again[key] == first[key], key
    a = (repo / "rerun/patch/text_encoder_patch.safetensors").read_bytes()
    b = (repo / "results/unlearncanvas/style/Van_Gogh/patch/text_encoder_patch.safetensors"
         ).read_bytes()
    assert a == b
    proc = subprocess.run([str(BIN / "python"), "-m", "stages.canvas", "--target", "Monet",
                           "--patch", "x/patch", "--metrics", "x/m.json"], cwd=repo,
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "neither a style" in proc.stderr
