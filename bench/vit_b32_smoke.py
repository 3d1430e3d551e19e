"""Smoke run on a real architecture: ViT-B-32 (random weights, saved to a local file) through the
real path, filter -> build_sets -> gradients -> rank -> unlearn -> evaluate, with params only.

A throw-away repository gets this project's code, a small tiny world written *outside* it (so no
tiny-world stage is upstream), the README's CLIP recipe (``recipes/clip-vit-b-32.yaml``) with its
``/data`` paths pointed at that world and ``model.pretrained`` / ``refs.clip`` at the weights
file, and smaller set sizes. Images go through ViT-B-32's own 224-px preprocessing. Random weights
know no concept, so the numbers say nothing about forgetting: this measures that the real path
runs, and what it costs, on this machine.

    python -m bench.vit_b32_smoke [WORKDIR]      # writes bench/vit_b32_smoke.json
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "vit_b32_smoke.json"
COPY = ("dvc.yaml", "params.yaml", "pipeline", "stages", "slug_cli", "recipes", "tiny",
        "data/refs", ".dvc/config", ".dvcignore", ".gitignore")
WORLD = {"n_shards": 2, "samples_per_shard": 600, "celeba_per_identity": 2,
         "imagenet_per_class": 2, "characters_per_class": 4, "canvas_per_pair": 1,
         "holdout_samples": 60, "workers": 1}
SMALLER = {"concept": "Iron Man", "filter": {"max_matches": 40},
           "sets": {"n_retain": 64, "n_retain_val": 32, "n_nonmembers": 20},
           "gradients": {"batch_size": 16}, "unlearn": {"max_evals": 4},
           "evaluate": {"mia_seeds": 2}}


def sh(*cmd, cwd) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def main(work: Path) -> None:
    from pipeline import params as params_mod
    from pipeline.io import save_tensors
    from pipeline.models.factory import build
    from pipeline.tinyworld.generate import WorldConfig, generate
    from slug_cli.recipe import merge

    shutil.rmtree(work, ignore_errors=True)
    repo, world = work / "repo", work / "data"
    for item in COPY:
        src, dst = ROOT / item, repo / item
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dst)
    p = params_mod.load(ROOT / "params.yaml")
    start = time.time()
    generate(WorldConfig.from_params(
        params_mod.from_dict(merge(yaml.safe_load((ROOT / "params.yaml").read_text()),
                                   {"tinyworld": WORLD})).tinyworld, p.seed), world)
    t_world = time.time() - start
    torch.manual_seed(0)
    weights = work / "vit-b-32-random.safetensors"
    save_tensors(weights, build("ViT-B-32").model.state_dict())

    sh(sys.executable, "-m", "slug_cli", "recipe", "recipes/clip-vit-b-32.yaml", cwd=repo)
    text = (repo / "params.yaml").read_text()
    for name, local in (("laion400m", "laion"), ("celeba", "celeba"), ("imagenet", "imagenet"),
                        ("characters", "characters"), ("unlearncanvas", "unlearncanvas"),
                        ("cc3m", "holdout")):
        text = text.replace(f" /data/{name} ", f" {world / local} ")
    raw = merge(yaml.safe_load(text), {**SMALLER, "model": {"pretrained": str(weights)},
                                       "refs": {"clip": str(weights)}})
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    sh("git", "init", "-q", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "smoke", cwd=repo)
    start = time.time()
    check = sh(sys.executable, "-m", "slug_cli", "check", "--target", "evaluate", cwd=repo)
    t_check = time.time() - start
    load0, start = os.getloadavg()[0], time.time()
    log = sh("dvc", "repro", "evaluate", cwd=repo)
    t_repro = time.time() - start
    ran = [ln.split("'")[1] for ln in log.splitlines() if ln.startswith("Running stage")]
    metrics = {n: json.loads((repo / "metrics" / f"{n}.json").read_text())
               for n in ("filter", "unlearn", "evaluate")}
    result = {
        "conditions": f"1-min load average {load0:.1f} before the run and {os.getloadavg()[0]:.1f} "
                      f"after it (other work on the machine slows it)",
        "what": "ViT-B-32, random weights from a local file, filter -> evaluate on a small tiny "
                "world (224 px preprocessing); a smoke run, not a forgetting result",
        "command": "python -m bench.vit_b32_smoke",
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "torch": torch.__version__, "cuda": torch.cuda.is_available()},
        "world": WORLD, "params": SMALLER, "world_s": round(t_world, 1),
        "repro_s": round(t_repro, 1), "stages_run": ran,
        "tiny_stages_planned": [s for s in ran if s.startswith("tiny/")],
        "slug_check": check.strip().splitlines(), "slug_check_s": round(t_check, 1),
        "matches": metrics["filter"]["matches"],
        "layer": metrics["unlearn"]["layer"], "unlearn_time_s": metrics["unlearn"]["time_s"],
        "evaluations": metrics["unlearn"]["evaluations"],
        "forget_top1": {k: metrics["evaluate"][k]["forget"]["top1"] for k in ("before", "after")},
    }
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/slug-vit-b-32-smoke"))
