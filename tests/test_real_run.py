"""A real run changes params only: every recipe of the README, applied to the micro repository with
its /data and /models paths pointed at micro data, plans no tiny-world stage and misses no input
(`slug check --target` and `dvc repro --dry`); the README's commands work when pasted; an
experiment shows as one short row and `slug review` reports what it changed."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from .helpers import run_module
from .micro import BIN, OBJECTS, STYLES, sh

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"clip-vit-b-32": "evaluate", "sd-1-5": "sd_evaluate", "sd-2-1": "sd_evaluate",
           "unlearncanvas": "canvas", "llava-1-5": "vlm_evaluate"}


@pytest.fixture(scope="module")
def real_root(micro_repo, tmp_path_factory):
    """/data and /models of the recipes, as links to the micro repository's files, and a
    Hugging Face cache that holds the SD 2.1 hub id."""
    root = tmp_path_factory.mktemp("real")
    links = {"data/laion400m": "data/tiny/laion", "data/celeba": "data/tiny/celeba",
             "data/imagenet": "data/tiny/imagenet", "data/characters": "data/tiny/characters",
             "data/unlearncanvas": "data/tiny/unlearncanvas", "data/cc3m": "data/tiny/holdout",
             "models/stable-diffusion-v1-5": "models/tiny-sd",
             "models/unlearncanvas/style50": "models/tiny-sd-canvas",
             "models/llava-1.5-7b-hf": "models/tiny-vlm"}
    for name, target in links.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(micro_repo / target)
    cls = root / "models/unlearncanvas/cls_model"
    cls.mkdir(parents=True)
    for name in ("style50.pth", "style50_cls.pth"):
        (cls / name).write_bytes(b"a checkpoint")  # planned, never loaded
    snap = root / "hf/models--stabilityai--stable-diffusion-2-1"
    (snap / "snapshots/0123abc").mkdir(parents=True)
    (snap / "refs").mkdir()
    (snap / "refs/main").write_text("0123abc")
    (snap / "snapshots/0123abc/model_index.json").write_text("{}")
    return root


def _slug(*args: str, cwd: Path):
    """``slug ARGS`` in this process (the libraries are imported once): exit code 0 asserted."""
    ran = run_module("slug_cli", *args, cwd=cwd)
    assert ran.returncode == 0, f"slug {' '.join(args)}: {ran.stdout}\n{ran.stderr}"
    return ran


def _apply(repo: Path, recipe: str, root: Path) -> None:
    _slug("recipe", f"recipes/{recipe}.yaml", cwd=repo)
    text = (repo / "params.yaml").read_text()
    text = re.sub(r"(:\s+)/(data|models)/", rf"\g<1>{root}/\g<2>/", text)
    raw = yaml.safe_load(text)
    raw["canvas"].update(styles=STYLES, objects=OBJECTS)  # the micro canvas grid
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_plans_no_tiny_world_stage(micro_repo, real_root, recipe, monkeypatch):
    import huggingface_hub.constants

    # read when a lookup is made, not only at import: the check below runs in this process
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(real_root / "hf"))
    target = RECIPES[recipe]
    try:
        _apply(micro_repo, recipe, real_root)
        p = yaml.safe_load((micro_repo / "params.yaml").read_text())
        assert p["world"] == "real" and str(real_root) in p["data"]["shards"]
        check = _slug("check", "--target", target, cwd=micro_repo).stdout
        assert "error:" not in check and f"ok: plan: {target}: " in check
        assert "0 of the tiny world" in check
        dry = sh("dvc", "repro", "--dry", target, cwd=micro_repo)
        planned = re.findall(r"Running stage '([^']+)'", dry)
        assert target in planned and not [s for s in planned if s.startswith("tiny/")], planned
    finally:
        sh("git", "checkout", "params.yaml", cwd=micro_repo)


@pytest.mark.slow
def test_world_real_refuses_a_tiny_world_path(micro_repo):
    try:
        text = (micro_repo / "params.yaml").read_text().replace("world: tiny", "world: real")
        (micro_repo / "params.yaml").write_text(text)
        proc = run_module("slug_cli", "check", "--only", "world", cwd=micro_repo)
        assert proc.returncode == 1 and "error: world: params.yaml: world is real, but " \
            "oracle.concepts lists Iron Man" in proc.stdout  # the micro run's retrain oracle
        p = yaml.safe_load(text)
        p["oracle"]["concepts"] = []
        (micro_repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
        proc = run_module("slug_cli", "check", "--only", "world", cwd=micro_repo)
        assert proc.returncode == 1 and "error: world: params.yaml: world is real, but " \
            "data.shards is data/tiny/laion, which the embedded default's tinyworld stage " \
            "writes" in proc.stdout
    finally:
        sh("git", "checkout", "params.yaml", cwd=micro_repo)


def _readme_commands() -> list[str]:
    """Every command line of the README's bash blocks, without its comment."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [ln.split("  #")[0].strip() for b in blocks for ln in b.splitlines()
            if ln.strip() and not ln.startswith("#")]


TRAINING = ("python3 dev.py", "dvc repro", "dvc exp run", "source ", "make ")
# a cluster's or a queue's runs (their training): test_dvc_pipeline runs `slug sweep` on a local
# Ray cluster, test_distributed the gradients stage with gradients.nproc 2
SCALE_OUT = ("slug sweep", "dvc queue")


def _paste(repo: Path, experiments: bool) -> list[tuple[str, str]]:
    """Run, as printed, the README's non-training commands that name an experiment
    (``experiments``) or those that do not; their outputs."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "1000"}
    commands = _readme_commands()
    names = set(re.findall(r"dvc exp run -n (\S+)", " ".join(commands)))
    ran = []
    for cmd in commands:
        if cmd.startswith(TRAINING + SCALE_OUT) or "recipes/" in cmd:  # recipes: test above
            continue
        if "models/multi-stack" in cmd:  # the `three` experiment's stack: run as printed in
            continue  # test_dvc_pipeline::test_several_concepts_at_once_reuse_what_dvc_cached
        on_experiments = cmd.startswith("dvc exp show") or bool(names & set(cmd.split()))
        if on_experiments != experiments:
            continue
        proc = subprocess.run(cmd, shell=True, cwd=repo, env=env, capture_output=True,
                              text=True, timeout=900)
        assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        ran.append((cmd, proc.stdout))
    return ran


@pytest.mark.slow
def test_readme_experiment_commands_work_when_pasted(micro_repo):
    """The commands on experiments run as printed in the micro repository. The two experiments
    they name are made here cheaply (a rerun, and one with another cosine-figure size: evaluate
    and summary only); the README's own `dvc exp run` lines are training."""
    commands = _readme_commands()
    names = re.findall(r"dvc exp run -n (\S+)", " ".join(commands))
    assert names == ["iron-man", "spider-man", "three"]
    sh("dvc", "exp", "run", "-n", names[0], cwd=micro_repo)
    sh("dvc", "exp", "run", "-n", names[1], "-S", "evaluate.matrix_images_per_class=2",
       cwd=micro_repo)
    ran = _paste(micro_repo, experiments=True)
    assert [c.split()[:2] for c, _ in ran] == [["dvc", "exp"], ["slug", "review"], ["dvc", "plots"]]
    shown = ran[0][1]
    width = max(len(ln) for ln in shown.splitlines())
    assert width <= 200, f"dvc exp show is {width} columns wide:\n{shown}"
    rows = [ln for ln in shown.splitlines() if "[iron-man]" in ln or "[spider-man]" in ln]
    assert len(rows) == 2 and all("Iron Man" in r for r in rows)  # one row per experiment
    review = (micro_repo / "review" / "review.md").read_text()
    flat = re.sub(r" +", " ", review)
    assert "| params.yaml | evaluate.matrix_images_per_class | 4 | 2 |" in flat  # what changed
    assert "iron_man__plots_evaluate_cosine_png.png" in review  # the figure it redrew, both sides
    assert "spider_man__plots_evaluate_cosine_png.png" in review
    pngs = list((micro_repo / "review").glob("*.png"))
    assert len(pngs) >= 6 and all(p.stat().st_size > 1000 for p in pngs)
    for link in re.findall(r"\]\(([^)]+\.png)\)", review):
        assert (micro_repo / "review" / link).exists(), link


@pytest.mark.slow
def test_readme_commands_work_when_pasted(micro_repo):
    """The other non-training commands (checks, exports) run as printed in the micro
    repository; the exported SD pipeline differs from the base by the patch alone."""
    ran = _paste(micro_repo, experiments=False)
    assert {" ".join(c.split()[:2]) for c, _ in ran} >= {"slug check", "slug export",
                                                          "slug export-sd"}
    exported = json.loads((micro_repo / "unlearned" / "open_clip_config.json").read_text())
    assert "model_cfg" in exported
    from diffusers import StableDiffusionPipeline  # the exported pipeline: the patch, no more

    base = StableDiffusionPipeline.from_pretrained(str(micro_repo / "models" / "tiny-sd"))
    out = StableDiffusionPipeline.from_pretrained(str(micro_repo / "unlearned-sd"))
    changed = {k for k, v in out.text_encoder.state_dict().items()
               if not torch.equal(v, base.text_encoder.state_dict()[k])}
    layer = json.loads((micro_repo / "metrics" / "sd_unlearn.json").read_text())["mapped_tensors"]
    assert changed == {k.removeprefix("text_model.") for k in layer}
    assert all(torch.equal(v, base.unet.state_dict()[k]) for k, v in out.unet.state_dict().items())
