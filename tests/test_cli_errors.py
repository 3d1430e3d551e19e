"""Expected bad input ends in one line on stderr and exit 1, never a traceback."""

import subprocess
import sys
from pathlib import Path

from .helpers import run_module, write_params

ROOT = Path(__file__).resolve().parents[1]


def _run(args, params: dict, tmp_path):
    """``python -m ...`` with ``params`` (params.yaml plus these) as ``$SLUG_PARAMS``."""
    pfile = write_params(tmp_path / "params.yaml", params)
    assert args[0] == "-m"
    return run_module(*args[1:], env={"SLUG_PARAMS": str(pfile)}, cwd=ROOT)


def _one_line_error(proc, *needles):
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("WARNING")]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_stage_with_missing_shards(tmp_path):
    proc = _run(["-m", "stages.pretrain"], {"data": {"shards": str(tmp_path / "nope")}}, tmp_path)
    _one_line_error(proc, "pretrain", "does not exist")


def test_stage_with_bad_param(tmp_path):
    proc = _run(["-m", "stages.tinyworld"], {"tinyworld": {"n_shards": "many"}}, tmp_path)
    _one_line_error(proc, "tinyworld.n_shards must be an integer")


def test_cli_unknown_architecture(tmp_path):
    pfile = write_params(tmp_path / "p.yaml",
                         {"model": {"name": "ViT-Nope", "pretrained": "x.safetensors"},
                          "refs": {"clip": "x.safetensors"}})
    proc = run_module("slug_cli", "model", "--file", str(pfile), cwd=ROOT)
    _one_line_error(proc, "unknown architecture 'ViT-Nope'")


def test_cli_missing_pretrained(tmp_path):
    missing = str(tmp_path / "none.safetensors")
    pfile = write_params(tmp_path / "p.yaml", {"model": {"pretrained": missing},
                                               "refs": {"clip": missing}})
    proc = run_module("slug_cli", "model", "--file", str(pfile), cwd=ROOT)
    _one_line_error(proc, "none.safetensors does not exist")
    assert "dvc repro" not in proc.stderr  # a real checkpoint is not made by a stage


def test_cli_a_pickled_checkpoint_is_named_not_run(tmp_path):
    """A checkpoint with a malicious ``__reduce__`` is never executed, and the user gets one line
    naming the file and the fix (was: torch's multi-line UnpicklingError traceback)."""
    code = "import os\nclass Evil:\n    def __reduce__(self):\n" \
        f"        return (os.system, ('touch {tmp_path / 'PWNED'}',))\n" \
        f"import torch; torch.save({{'w': Evil()}}, '{tmp_path / 'evil.pt'}')"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert not (tmp_path / "PWNED").exists()
    evil = str(tmp_path / "evil.pt")
    pfile = write_params(tmp_path / "p.yaml", {"model": {"pretrained": evil},
                                               "refs": {"clip": evil}})
    proc = run_module("slug_cli", "model", "--file", str(pfile), cwd=ROOT)
    _one_line_error(proc, f"{evil} is not a weights-only checkpoint", "convert it to safetensors")
    assert not (tmp_path / "PWNED").exists()


def test_cli_tiny_checkpoint_not_trained_yet(tmp_path):
    out = str(tmp_path / "tiny.safetensors")
    proc = _run(["-m", "slug_cli", "model"], {"pretrain": {"out": out},
                                              "model": {"pretrained": out},
                                              "refs": {"clip": out}}, tmp_path)
    _one_line_error(proc, "the pretrain stage writes it")


def test_refs_must_list_a_local_reference(tmp_path):
    ckpt = tmp_path / "w.safetensors"
    ckpt.write_bytes(b"x")
    proc = _run(["-m", "slug_cli", "params"], {"model": {"pretrained": str(ckpt)}}, tmp_path)
    _one_line_error(proc, "refs.clip is 'models/tiny-clip.safetensors' but model.pretrained")
    proc = _run(["-m", "slug_cli", "params"], {"model": {"pretrained": str(ckpt)},
                                               "refs": {"clip": str(ckpt)}}, tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_slug_params_reads_slug_params_env(tmp_path):
    proc = _run(["-m", "slug_cli", "params"], {"concept": "Iron Man"}, tmp_path)
    assert proc.returncode == 0 and '"concept": "Iron Man"' in proc.stdout


def test_bad_device_is_one_line(tmp_path):
    proc = _run(["-m", "slug_cli", "model"], {"device": "gpu"}, tmp_path)
    _one_line_error(proc, "device must be auto, cpu, cuda, cuda:N or mps, got 'gpu'")


def test_slug_params_into_a_closed_pipe(tmp_path):
    pfile = write_params(tmp_path / "p.yaml", {})
    proc = subprocess.run(f"{sys.executable} -m slug_cli params --file {pfile} | head -1",
                          shell=True, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.stdout.strip() == "{" and "Traceback" not in proc.stderr, proc.stderr


def test_export_needs_out(tmp_path):
    proc = _run(["-m", "slug_cli", "export"], {}, tmp_path)
    assert proc.returncode == 2 and "--out" in proc.stderr


def test_cli_export_round_trip_and_refusal(tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from pipeline.models.factory import build
    from pipeline.models.structure import state_dict_hash
    from pipeline.unlearn import patch as P

    torch.manual_seed(0)
    base = build("tiny-clip")
    ckpt = tmp_path / "base.safetensors"
    save_file({k: v.contiguous() for k, v in base.model.state_dict().items()}, str(ckpt))
    new = base.model.visual.proj.detach() * 1.5
    good = P.Patch({"visual.proj": new}, {"base_model_sha256": state_dict_hash(base.model),
                                          "layers": ["visual.proj"]})
    P.save(good, tmp_path / "good")
    pfile = write_params(tmp_path / "p.yaml", {"model": {"pretrained": str(ckpt)},
                                               "refs": {"clip": str(ckpt)}})
    out = tmp_path / "unlearned"
    proc = run_module("slug_cli", "export", "--file", str(pfile), "--patch",
                      str(tmp_path / "good"), "--out", str(out), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    # the printed lines, pasted into a fresh python (no import of this project), load it
    printed = proc.stdout.split("load it with\n", 1)[1]
    code = printed.replace("\n  ", "\n").strip() + (
        "\nimport torch, sys\ntorch.save(model.state_dict(), sys.argv[1])")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "sd.pt")], check=True,
                   cwd=tmp_path, capture_output=True)
    loaded = torch.load(tmp_path / "sd.pt", weights_only=True)
    assert torch.equal(loaded["visual.proj"], new)

    bad = P.Patch(good.tensors, {**good.manifest, "base_model_sha256": "f" * 64})
    P.save(bad, tmp_path / "bad")
    proc = run_module("slug_cli", "export", "--file", str(pfile), "--patch",
                      str(tmp_path / "bad"), "--out", str(tmp_path / "x.st"), cwd=ROOT)
    _one_line_error(proc, "made for base model ffffffffffff")
    assert not (tmp_path / "x.st").exists()

    # tampered: the same shape, the tensor multiplied by 100 (was written without a word)
    tensors = {k: v * 100 for k, v in load_file(str(tmp_path / "good" / P.TENSORS)).items()}
    save_file(tensors, str(tmp_path / "good" / P.TENSORS))
    proc = run_module("slug_cli", "export", "--file", str(pfile), "--patch",
                      str(tmp_path / "good"), "--out", str(tmp_path / "y"), cwd=ROOT)
    _one_line_error(proc, "tensor visual.proj differs from the one the patch was made with")
    assert not (tmp_path / "y").exists()


def test_cli_exports_a_patch_stack_as_one_model(tmp_path):
    import torch
    from safetensors.torch import save_file

    from pipeline.models.factory import build
    from pipeline.models.structure import state_dict_hash
    from pipeline.unlearn import patch as P
    from pipeline.unlearn import stack as S

    torch.manual_seed(0)
    base = build("tiny-clip")
    ckpt = tmp_path / "base.safetensors"
    save_file({k: v.contiguous() for k, v in base.model.state_dict().items()}, str(ckpt))
    h, proj = state_dict_hash(base.model), base.model.visual.proj.detach()
    patches = [P.Patch({"visual.proj": proj * f}, {"concept": c, "base_model_sha256": h,
                                                   "layers": ["visual.proj"]})
               for c, f in (("Elon Musk", 1.5), ("Taylor Swift", 0.75))]
    S.save(S.Stack("joint", h, patches), tmp_path / "stack")
    pfile = write_params(tmp_path / "p.yaml", {"model": {"pretrained": str(ckpt)},
                                               "refs": {"clip": str(ckpt)}})
    proc = run_module("slug_cli", "export", "--file", str(pfile), "--patch",
                      str(tmp_path / "stack"), "--out", str(tmp_path / "out"), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    from safetensors.torch import load_file

    have = load_file(str(tmp_path / "out" / P.EXPORT_WEIGHTS))["visual.proj"]
    assert torch.allclose(have, proj * (1 + 0.5 - 0.25))  # both differences added


def test_sd_export_to_a_folder_that_is_not_a_pipeline(tmp_path):
    import torch

    from pipeline.unlearn import patch as P

    (tmp_path / "not-a-pipeline").mkdir()
    P.save(P.Patch({}, {}), tmp_path / "patch",
           {"text_encoder_patch.safetensors": {"x": torch.zeros(1)}})
    proc = _run(["-m", "slug_cli", "export-sd", "--file", str(tmp_path / "params.yaml"),
                 "--patch", str(tmp_path / "patch"), "--pipeline",
                 str(tmp_path / "not-a-pipeline"), "--out", str(tmp_path / "o")], {}, tmp_path)
    _one_line_error(proc, "is not a diffusers pipeline folder")


def test_sd_export_without_a_patch(tmp_path):
    proc = _run(["-m", "slug_cli", "export-sd", "--file", str(tmp_path / "params.yaml"),
                 "--patch", str(tmp_path / "no-patch"), "--out", str(tmp_path / "o")], {},
                tmp_path)
    _one_line_error(proc, "text_encoder_patch.safetensors is missing")


def test_an_embedded_default_stage_refuses_world_real(tmp_path):
    proc = _run(["-m", "stages.pretrain"], {"world": "real"}, tmp_path)
    _one_line_error(proc, "pretrain: world is real, and this stage builds the embedded default")
