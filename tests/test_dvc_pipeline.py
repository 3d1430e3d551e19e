"""End to end: the repository's own dvc.yaml on the micro repository (``tests/micro.py``): the
main pipeline, then the UnlearnCanvas sweep on the same repository. The test asserts that the
micro CLIP knows the concept before it looks at the unlearning."""

import csv
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

from .helpers import ROOT, merge, run_module, write_params
from .micro import MICRO_PARAMS, sh


@pytest.mark.slow
def test_dvc_repro_runs_the_pipeline(micro_repo):
    repo = micro_repo
    metrics = json.loads((repo / "metrics" / "pretrain.json").read_text())
    assert set(metrics["zeroshot"]) == {"identities", "characters", "objects", "styles"}
    assert all(0 <= v["top1"] <= 1 for v in metrics["zeroshot"].values())
    assert (repo / "models" / "tiny-clip.safetensors").stat().st_size > 0
    assert (repo / "plots" / "pretrain" / "history.png").stat().st_size > 0
    assert "Data and pipelines are up to date" in sh("dvc", "status", "dvc.yaml",
                                                     "tiny/dvc.yaml", cwd=repo)
    shown = json.dumps(json.loads(sh("dvc", "metrics", "show", "--json", cwd=repo)))
    for name in ("pretrain", "filter", "rank", "unlearn", "evaluate", "oracle", "compare", "sd_train",
                 "sd_unlearn", "sd_evaluate"):
        assert f"metrics/{name}.json" in shown
    row = json.loads((repo / "metrics" / "summary.json").read_text())
    assert row["forgot"] == "Iron Man" and set(row) >= {"slug_layer", "forget@1", "sd_forget"}
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
    # the micro search reaches its criterion (the README's `slug export` needs it; the miss is
    # tested on its own below)
    assert json.loads((repo / "metrics" / "unlearn.json").read_text())["reached_target"] is True
    cmp = json.loads((repo / "metrics" / "compare.json").read_text())
    assert set(cmp["methods"]) == {"original", "oracle", "slug", "slug_pool", "slug_nullspace",
                                   "ft", "ga", "gaft", "salun_ref", "ssd"}
    assert cmp["methods"]["slug"]["rerun_matches_patch"] is True
    sel = cmp["methods"]["slug_nullspace"]["selectivity"]  # the selective step, projected
    assert sel["mode"] == "nullspace" and 0 < sel["kept"] < sel["input_dim"]
    assert cmp["methods"]["slug"].get("selectivity") is None
    pooled, pool = cmp["methods"]["slug_pool"], json.loads(
        (repo / "data" / "retain_pool" / "layout.json").read_text())
    assert pooled["one_time_s"] == pool["time_s"] > 0  # built once by the retain_pool stage
    assert 0 < pooled["retain_pairs"] <= MICRO_PARAMS["pool"]["n"]
    assert pooled["pool_batches"] == len(pool["bounds"])
    oracle = json.loads((repo / "models" / "oracle" / "manifest.json").read_text())
    assert oracle["trained"] and oracle["dropped_pairs"] > 0 and cmp["oracle"] == oracle
    rows = cmp["methods"]
    assert rows["oracle"]["gap_forget_top1"] == 0 and rows["oracle"]["cosine_w1"] == 0
    for m in ("original", "slug", "ga"):  # every method is held against the oracle
        assert rows[m]["gap_celeba_top1"] == pytest.approx(
            rows[m]["celeba_top1"] - rows["oracle"]["celeba_top1"])
        assert rows[m]["cosine_w1"] >= 0 and 0 <= rows[m]["mia_efficacy"] <= 1
    assert rows["original"]["cosine_w1"] > 0  # the original model saw the pairs; the oracle not
    for m in ("ft", "ga", "gaft", "salun_ref", "ssd"):
        assert cmp["methods"][m]["storage_mb"] > 10 * cmp["methods"]["slug"]["storage_mb"]
        assert (repo / "models" / "baselines" / f"{m}.safetensors").exists()
    assert (repo / "plots" / "compare" / "pareto.png").stat().st_size > 0
    assert not sh("git", "status", "--porcelain", "dvc.yaml", cwd=repo)  # dvclive left it alone
    sd = json.loads((repo / "metrics" / "sd_evaluate.json").read_text())
    assert sd["concept"] == "Iron Man" and 0 <= sd["before"]["forget"] <= 1
    assert (repo / "models" / "tiny-sd" / "model_index.json").exists()
    assert json.loads((repo / "metrics" / "sd_unlearn.json").read_text())[
        "mapping_max_abs_error"]["after"] < 1e-4
    assert (repo / "plots" / "sd" / "grid.png").stat().st_size > 0
    # `slug export-sd` (the README's command): tests/test_real_run.py, on this repository
    canvas = json.loads((repo / "metrics" / "canvas.json").read_text())
    assert canvas["skipped"] is True and "Iron Man" in canvas["reason"]  # a character: no canvas


@pytest.mark.slow
def test_unlearncanvas_sweep_and_same_seeds_same_numbers(micro_repo, tmp_path):
    """The sweep's own dvc.yaml on two styles and two objects (the faithful step: one process per
    target and method), the table; the selective step on one target, by hand; and the sweep again
    as tasks on a local Ray cluster (``slug sweep``), other processes with the same seeds: the same
    UA / IRA / CRA, step and patch (byte for byte) per target, the same rows, recorded by DVC."""
    repo = micro_repo
    sh("dvc", "repro", "benchmarks/unlearncanvas/dvc.yaml", cwd=repo)
    table = json.loads((repo / "benchmarks/unlearncanvas/metrics.json").read_text())
    assert not list((repo / "metrics").glob("*unlearncanvas*"))  # the sweep keeps off metrics/
    assert set(table["methods"]) == {"slug"}  # a row per method (several: tests/test_canvas.py)
    for tab in table["methods"].values():
        assert tab["style"]["targets"] == 2 and tab["object"]["targets"] == 2
        for kind in ("style", "object"):
            assert 0 <= tab[kind]["UA"] <= 100 and 0 <= tab[kind]["IRA_ceiling"] <= 100
            assert set(tab[kind]["halves"]) == {"seen"}  # one other concept: no unseen half
    assert (repo / "plots" / "unlearncanvas" / "table.png").stat().st_size > 0
    clf = json.loads((repo / "metrics" / "canvas_classifiers.json").read_text())
    assert 0 <= clf["style"]["val_accuracy"] <= 1

    first = json.loads((repo / "results/unlearncanvas/none/style/Van_Gogh/metrics.json"
                        ).read_text())
    assert first["method"] == "slug" and first["selectivity"] is None
    ran = run_module("stages.canvas", "--target", "Van_Gogh", "--selectivity", "nullspace",
                     "--patch", "sel/patch", "--metrics", "sel/metrics.json", cwd=repo)
    assert ran.returncode == 0, ran.stderr
    selective = json.loads((repo / "sel" / "metrics.json").read_text())
    assert selective["method"] == "slug_nullspace" and selective["selectivity"]["kept"] > 0
    assert set(selective["halves"]) == {"seen"} and selective["ceiling"] == first["ceiling"]
    assert (repo / "sel/patch/text_encoder_patch.safetensors").stat().st_size > 0
    proc = run_module("stages.canvas", "--target", "Monet", "--selectivity", "none", "--patch",
                      "x/patch", "--metrics", "x/m.json", cwd=repo)
    assert proc.returncode == 1 and "neither a style" in proc.stderr

    fanned = tmp_path / "fanned"  # the repository before the sweep, then the sweep on Ray
    shutil.copytree(repo, fanned, symlinks=True)
    for made in ("benchmarks/unlearncanvas/dvc.lock", "benchmarks/unlearncanvas/metrics.json",
                 "results/unlearncanvas", "plots/unlearncanvas"):
        (shutil.rmtree if (fanned / made).is_dir() else Path.unlink)(fanned / made)
    out = sh(sys.executable, "-m", "slug_cli", "sweep", "--workers", "2", "--threads", "1",
             cwd=fanned)  # one thread per task, as every stage of this test session runs
    assert "5 stage(s)" in out and "2 wave(s)" in out and "5 task(s)" in out, out  # then the table
    assert "then dvc repro ran 0 stage(s)" in out, out  # every wave was committed
    assert "Data and pipelines are up to date" in sh("dvc", "status",
                                                     "benchmarks/unlearncanvas/dvc.yaml", cwd=fanned)
    for kind, target in (("style", "Pop_Art"), ("style", "Van_Gogh"), ("object", "Circle"),
                         ("object", "Heart")):
        row = f"results/unlearncanvas/none/{kind}/{target}"
        a, b = (json.loads((r / row / "metrics.json").read_text()) for r in (repo, fanned))
        for key in ("UA", "IRA", "CRA", "layer", "lambda", "before", "after", "search"):
            assert a[key] == b[key], (target, key)
        assert a["threads"] == b["threads"] == 1
        assert ((repo / row / "patch/text_encoder_patch.safetensors").read_bytes() ==
                (fanned / row / "patch/text_encoder_patch.safetensors").read_bytes())
    serial, tasks = (json.loads((r / "benchmarks/unlearncanvas/metrics.json").read_text())
                     for r in (repo, fanned))
    assert _timeless(serial["methods"]) == _timeless(tasks["methods"])  # the table's rows


def _timeless(x):
    """JSON without what records time, memory or its own hash (what differs between two runs)."""
    if isinstance(x, dict):
        return {k: _timeless(v) for k, v in x.items() if not any(
            w in k for w in ("time", "seconds", "peak", "memory", "integrity"))}
    return [_timeless(v) for v in x] if isinstance(x, list) else x


@pytest.mark.slow
def test_a_search_that_misses_ships_its_strongest_trial_flagged(micro_repo, tmp_path):
    """No layer can pass (one evaluation of a step of 1e-6 x ||theta||): the stage still writes a
    patch, of the trial with the lowest forget score, flagged in manifest, metrics and trace with
    a warning line; `slug export` refuses it unless --allow-unreached."""
    repo = tmp_path / "repo"
    shutil.copytree(micro_repo, repo, ignore=shutil.ignore_patterns(".git", "cache", "baselines",
                                                                     "results"))
    pfile = write_params(tmp_path / "p.yaml", merge(MICRO_PARAMS, {
        "unlearn": {"max_evals": 2, "scale0": 1e-6}}))
    ran = run_module("stages.unlearn", env={"SLUG_PARAMS": str(pfile)}, cwd=repo)
    assert ran.returncode == 0, ran.stderr
    assert "warning: no layer reached forget top-5 <= 0.0" in ran.stderr
    manifest = json.loads((repo / "models" / "patch" / "manifest.json").read_text())
    metrics = json.loads((repo / "metrics" / "unlearn.json").read_text())
    assert manifest["search"]["reached"] is False and metrics["reached_target"] is False
    searched = json.loads((repo / "data" / "rank" / "selection.json").read_text())["selected"]
    with open(repo / "plots" / "unlearn" / "search.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["layer"] in searched]
    chosen = [r for r in rows if r["chosen"] == "True"]
    assert len(chosen) == 1 and chosen[0]["passed"] == "False"
    assert float(chosen[0]["forget"]) == min(float(r["forget"]) for r in rows)
    assert manifest["layers"] == [chosen[0]["layer"]]
    assert json.loads((repo / "data" / "unlearn" / "search.json").read_text())["chosen"] is None
    refused = run_module("slug_cli", "export", "--out", "unlearned",
                         env={"SLUG_PARAMS": str(pfile)}, cwd=repo)
    assert refused.returncode == 1 and "--allow-unreached" in refused.stderr
    assert not (repo / "unlearned").exists()
    forced = run_module("slug_cli", "export", "--out", "unlearned", "--allow-unreached",
                        env={"SLUG_PARAMS": str(pfile)}, cwd=repo)
    assert forced.returncode == 0, forced.stderr
    assert (repo / "unlearned" / "open_clip_model.safetensors").exists()


@pytest.mark.slow
def test_the_unlearn_stage_ships_a_selective_patch(micro_repo, tmp_path):
    """``unlearn.selectivity: nullspace`` in the CLIP stage: the step is projected on the retain
    split (the projection itself: tests/test_selective.py), and the manifest and metrics say how;
    the default run's patch says it took the paper's step."""
    from safetensors.torch import load_file

    repo = tmp_path / "repo"
    shutil.copytree(micro_repo, repo, ignore=shutil.ignore_patterns(".git", "cache", "baselines",
                                                                     "results"))
    pfile = write_params(tmp_path / "p.yaml", merge(MICRO_PARAMS, {
        "unlearn": {"selectivity": "nullspace", "energy": 0.99}}))
    ran = run_module("stages.unlearn", env={"SLUG_PARAMS": str(pfile)}, cwd=repo)
    assert ran.returncode == 0, ran.stderr
    manifest = json.loads((repo / "models" / "patch" / "manifest.json").read_text())
    metrics = json.loads((repo / "metrics" / "unlearn.json").read_text())
    sel = metrics["selectivity"]
    assert manifest["selectivity"] == sel and sel["mode"] == "nullspace"
    assert 0 < sel["kept"] < sel["input_dim"]
    assert sel["projection_pairs"] == MICRO_PARAMS["sets"]["n_retain"]  # the retain split
    assert metrics["layer"] == manifest["layers"][0]
    plain = json.loads((micro_repo / "models" / "patch" / "manifest.json").read_text())
    assert plain["selectivity"] is None  # the committed default: the paper's step
    edited = load_file(str(repo / "models" / "patch" / "patch.safetensors"))
    assert set(edited) == set(manifest["layers"])


@pytest.mark.slow
def test_the_vlm_stages_unlearn_a_concept_the_vlm_named(micro_repo, tmp_path):
    from safetensors.torch import load_file
    from transformers import LlavaForConditionalGeneration

    repo = micro_repo
    train = json.loads((repo / "metrics" / "vlm_train.json").read_text())
    assert train["images"]["character"] == 60 and train["feature_layer"] == -1
    model = LlavaForConditionalGeneration.from_pretrained(repo / "models" / "tiny-vlm",
                                                          local_files_only=True)
    assert model.config.vision_feature_layer == -1
    sets = json.loads((repo / "data" / "vlm" / "manifest.json").read_text())
    assert sets["splits"]["eval"]["per_concept"] == {n: 2 for n in sets["concepts"]}
    assert "Iron Man" not in sets["concepts"] and len(sets["concepts"]) == 3
    un = json.loads((repo / "metrics" / "vlm_unlearn.json").read_text())
    assert un["layer"].startswith("visual.") and un["layer"] in un["searched_layers"]
    assert not any(x.startswith(("visual.proj", "visual.ln_post")) for x in un["searched_layers"])
    assert un["mapping_max_abs_error"]["after"] < 1e-4
    ev = json.loads((repo / "metrics" / "vlm_evaluate.json").read_text())
    assert ev["concept"] == "Iron Man" and ev["images"]["Iron Man"] >= 10
    assert ev["before"]["target"] >= 0.8  # the VLM names Iron Man before ...
    assert ev["after"]["target"] < ev["before"]["target"]  # ... and less after
    assert (repo / "plots" / "vlm" / "answers.png").stat().st_size > 0
    sh(sys.executable, "-m", "slug_cli", "export-vlm", "--out", str(tmp_path / "vlm"), cwd=repo)
    out = LlavaForConditionalGeneration.from_pretrained(tmp_path / "vlm", local_files_only=True)
    mapped = load_file(str(repo / "models" / "vlm-patch" / "vision_tower_patch.safetensors"))
    have, base = out.model.vision_tower.state_dict(), model.model.vision_tower.state_dict()
    assert mapped and all(torch.equal(have[k], v) and not torch.equal(base[k], v)
                          for k, v in mapped.items())
    assert all(torch.equal(have[k], base[k]) for k in base if k not in mapped)


def test_several_concepts_at_once_reuse_what_dvc_cached(micro_repo, tmp_path):
    """``concepts``: each concept's sets and forget gradient are their own stage, so a second
    request that shares a concept reuses them; the stack forgets every concept held out, and
    with no concepts the multi stages are a reported skip."""
    assert json.loads((micro_repo / "metrics" / "multi_evaluate.json").read_text()) == \
        {"skipped": "no concepts requested (params: concepts)"}
    repo = tmp_path / "repo"
    shutil.copytree(micro_repo, repo)
    write_params(repo / "params.yaml", merge(MICRO_PARAMS, {"concepts": ["Iron Man", "Batman"]}))
    sh("dvc", "repro", "multi_evaluate", cwd=repo)
    ev = json.loads((repo / "metrics" / "multi_evaluate.json").read_text())
    for c in ("Iron Man", "Batman"):
        assert ev["before"]["concepts"][c]["forget"]["top1"] >= 0.8  # known before ...
        assert ev["after"]["concepts"][c]["forget"]["top1"] <= 0.05  # ... forgotten after
    assert (repo / "models" / "multi-stack" / "stack.json").exists()
    readme = (ROOT / "README.md").read_text()  # the README's export of the stack, as printed
    export = re.search(r"^(slug export --patch models/multi-stack --out (\S+))", readme, re.M)
    ran = run_module("slug_cli", *export.group(1).split()[1:], cwd=repo)  # in this process
    assert ran.returncode == 0, ran.stderr
    assert json.loads((repo / export.group(2) / "open_clip_config.json").read_text())
    write_params(repo / "params.yaml", merge(MICRO_PARAMS, {"concepts": ["Iron Man", "Pikachu"]}))
    # what `dvc repro multi_evaluate` would run: the stages dvc status calls changed (--dry
    # cannot say: it stops at the new concept's folder that only its upstream stage writes)
    out = sh("dvc", "status", "--with-deps", "multi_evaluate", cwd=repo)
    assert "concept_sets@Pikachu:" in out and "concept_grads@Pikachu:" in out, out
    assert "concept_sets@Iron Man:" not in out and "concept_grads@Iron Man:" not in out, out


def _settled(tree: Path) -> dict:
    """A folder's files, JSON ``_timeless``."""
    out = {}
    for f in sorted(tree.rglob("*")):
        if f.is_file():
            data = f.read_bytes()
            if f.suffix == ".json":
                data = _timeless(json.loads(data))
            out[f.relative_to(tree).as_posix()] = data
    return out


@pytest.mark.parametrize("stage, out", [("gradients", "data/grads"), ("unlearn", "models/patch")])
def test_a_stage_killed_while_writing_leaves_no_half_output_and_reruns_the_same(
        micro_repo, tmp_path, stage, out):
    """SIGKILL the stage the moment its output's temporary folder appears (stopped first, so the
    state is read while the write is under way): the output is absent, never partial; a rerun
    writes what the uninterrupted run wrote (recorded times aside) and sweeps the leftover."""
    import os
    import signal
    import subprocess

    repo = tmp_path / "repo"
    shutil.copytree(micro_repo, repo)
    target = repo / out
    reference = _settled(target)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    prefix = f".{target.name}."
    caught = False
    for _ in range(8):  # the write takes milliseconds: try until the kill lands inside it
        shutil.rmtree(target, ignore_errors=True)
        proc = subprocess.Popen([sys.executable, "-m", f"stages.{stage}"], cwd=repo, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None:
            if any(n.startswith(prefix) for n in os.listdir(target.parent)):
                os.kill(proc.pid, signal.SIGSTOP)
                caught = not target.exists()
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.wait()
        if caught:
            break
    assert caught, "the kill never landed while the output was being written"
    assert not target.exists()  # not half-written: absent
    assert [n for n in os.listdir(target.parent) if n.startswith(prefix)]  # the killed temp
    ran = run_module(f"stages.{stage}", cwd=repo)
    assert ran.returncode == 0, ran.stderr
    assert _settled(target) == reference
    assert not [n for n in os.listdir(target.parent) if n.startswith(prefix)]  # swept
    if stage == "unlearn":
        from pipeline.unlearn import patch as P

        P.load(target)  # its hashes hold
