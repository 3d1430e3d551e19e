"""`slug check`: every problem it knows is one `error:` line, found before any heavy work, and the
stages stop on the same line (the checks are one module, ``pipeline.check``)."""

import json
import shutil
from pathlib import Path

import torch

from .helpers import run_module, write_params

ROOT = Path(__file__).resolve().parents[1]


def _data(world: Path) -> dict:
    return {"shards": str(world / "laion"), "celeba": str(world / "celeba"),
            "imagenet": str(world / "imagenet"), "characters": str(world / "characters"),
            "unlearncanvas": str(world / "unlearncanvas"), "nonmembers": str(world / "holdout")}


def _check(tmp_path, world, *only, **over):
    pfile = write_params(tmp_path / "params.yaml", {"data": _data(world), **over})
    args = ["check", "--file", str(pfile)] + (["--only", ",".join(only)] if only else [])
    proc = run_module("slug_cli", *args, cwd=ROOT)
    return proc, [ln for ln in proc.stdout.splitlines() if ln.startswith(("ok:", "error:"))]


def test_everything_passes_on_a_good_world(micro_world, tmp_path):
    proc, lines = _check(tmp_path, micro_world, concept="Iron Man")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all(ln.startswith("ok:") for ln in lines) and len(lines) >= 12
    shards = next(ln for ln in lines if ln.startswith("ok: data.shards:"))
    n = sum(json.loads(f.read_text())["successes"]
            for f in (micro_world / "laion").glob("*_stats.json"))
    assert f"2 shards, {n} samples" in shards and n < 160  # counted; failed downloads are not


def test_unknown_concept_is_one_line(micro_world, tmp_path):
    proc, lines = _check(tmp_path, micro_world, concept="Nobody Atall")
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert proc.returncode == 1 and len(errors) == 1
    assert errors[0].startswith("error: concept: concept 'Nobody Atall' is not a class name")


def test_spellings_of_one_name_are_one_concept(micro_world, tmp_path):
    """Hyphen, space, underscore and case: the same class and the same caption count, because
    the check uses the filter's own matcher and the one name rule."""
    found = set()
    for spelling in ("Spider-Man", "spider man", "SPIDER_MAN"):
        proc, lines = _check(tmp_path, micro_world, "concept", concept=spelling)
        assert proc.returncode == 0, proc.stdout
        found.add(lines[0].split(" = ", 1)[1])
    assert len(found) == 1 and "character 'Spider-Man'" in found.pop()


def test_wrong_layouts_are_named(micro_world, tmp_path):
    world = tmp_path / "world"
    shutil.copytree(micro_world, world)
    (world / "imagenet" / "LOC_synset_mapping.txt").unlink()
    next((world / "laion").glob("*.parquet")).unlink()
    proc, lines = _check(tmp_path, world, "data.shards", "data.imagenet", "data.celeba")
    by_name = {ln.split(": ")[1]: ln for ln in lines}
    assert proc.returncode == 1 and len(lines) == 3
    assert by_name["data.shards"].startswith("error: data.shards: 1 of 2 shards have no parquet")
    assert by_name["data.imagenet"].startswith("error: data.imagenet: class-names file")
    assert by_name["data.celeba"].startswith("ok: data.celeba:")


def test_bad_device(micro_world, tmp_path):
    missing = "cuda:99" if torch.cuda.is_available() else "cuda"
    proc, lines = _check(tmp_path, micro_world, "device", device=missing)
    assert proc.returncode == 1 and lines == [lines[0]] and lines[0].startswith(
        "error: device: params.yaml: device")
    proc, _ = _check(tmp_path, micro_world, "device", device="gpu")  # not a device name at all
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1 and err == [
        "error: params.yaml: device must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"]


def test_the_filter_stage_stops_on_the_same_line(micro_world, tmp_path):
    pfile = write_params(tmp_path / "params.yaml", {"data": _data(micro_world),
                                                    "concept": "Nobody Atall"})
    proc = run_module("stages.filter", env={"SLUG_PARAMS": str(pfile)}, cwd=tmp_path)
    assert proc.returncode == 1 and not (tmp_path / "data").exists()  # stopped before the scan
    assert proc.stderr.strip().startswith(
        "error: filter: concept 'Nobody Atall' is not a class name")
