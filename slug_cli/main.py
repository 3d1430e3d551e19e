"""The ``slug`` command line.

    slug check [--target STAGE] [--only NAME,...]
                                            params, references, device, data layouts, the
                                            concept and the plan, in seconds, before heavy work
    slug recipe FILE                        apply a params overlay (recipes/*.yaml) to params.yaml
    slug review REV_A REV_B [--out DIR]     a markdown report of what changed between two
                                            revisions or experiments, with the figures
    slug params                             validate params and print them resolved
    slug model                              build the configured model, print what it is
    slug export --out DIR [--patch DIR]     apply a patch to its base model, write an open_clip
                                            model folder (refuses another base model, and a
                                            search that did not reach its criterion unless
                                            --allow-unreached)
    slug export-sd [--pipeline DIR] [--patch DIR] [--out DIR]
                                            write the unlearned diffusion pipeline folder
    slug export-vlm [--vlm DIR] [--patch DIR] --out DIR
                                            write the unlearned VLM folder (model + processor)

Every command reads params.yaml, or the file ``--file`` or ``$SLUG_PARAMS`` names. Expected errors
print one line (``error: ...``) and exit 1; no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from pipeline import params as params_mod
from pipeline import preflight
from pipeline.entry import params_file
from pipeline.errors import ModelError, SlugError


def _load(args) -> params_mod.Params:
    p = params_mod.load(args.file or params_file())
    preflight.references(p)
    return p


def _model_ready(p: params_mod.Params, pretrained: str) -> None:
    stage = preflight.pending(p, pretrained)
    if stage:
        raise ModelError(f"{pretrained} does not exist yet: the {stage} stage writes it "
                         f"(dvc repro tiny/dvc.yaml)")


def _cmd_check(args) -> None:
    from pipeline import check

    p = _load(args)
    only = set(args.only.split(",")) if args.only else None
    failed = 0
    start = time.time()
    checks = check.all_checks(p)
    if args.target:
        from .plan import describe

        checks.append(("plan", lambda: describe(args.target, p.world)))
    for name, fn in checks:
        if only and name not in only:
            continue
        try:
            print(f"ok: {name}: {fn()}", flush=True)
        except SlugError as exc:
            failed += 1
            print(f"error: {name}: {exc}", flush=True)
    print(f"{failed or 'no'} problem{'s' if failed != 1 else ''} found in "
          f"{time.time() - start:.1f} s")
    if failed:
        sys.exit(1)


def _cmd_recipe(args) -> None:
    from .recipe import apply

    target = args.file or params_file()
    groups = apply(args.recipe, target)
    print(f"applied {args.recipe} to {target} ({', '.join(groups)}); next: slug check")


def _cmd_review(args) -> None:
    from pathlib import Path

    from .review import review

    report = review(args.rev_a, args.rev_b, Path(args.out))
    print(f"wrote {report} and its figures")


def _cmd_params(args) -> None:
    print(json.dumps(params_mod.to_dict(_load(args)), indent=2))


def _cmd_model(args) -> None:
    from pipeline.models.factory import build
    from pipeline.models.structure import state_dict_hash

    p = _load(args)
    preflight.device(p.device)
    _model_ready(p, p.model.pretrained)
    b = build(p.model.name, p.model.pretrained, p.model.quick_gelu, p.model.precision, p.device)
    print(json.dumps({**b.describe(), "device": str(b.device), "image_size": b.image_size,
                      "state_dict_sha256": state_dict_hash(b.model)}, indent=2))


def _cmd_export(args) -> None:
    from pipeline.models.factory import build, model_config
    from pipeline.unlearn import patch as patch_mod
    from pipeline.unlearn import stack as stack_mod

    p = _load(args)
    folder = args.patch or p.unlearn.out
    stacked = stack_mod.is_stack(folder)  # several concepts' patches (pipeline.unlearn.multi)
    loaded = stack_mod.load(folder) if stacked else patch_mod.load(folder)
    reached = loaded.reached if stacked else loaded.manifest.get("search", {}).get("reached")
    if reached is False and not args.allow_unreached:
        raise ModelError(f"{folder} holds the strongest trial of a search that did not reach its "
                         f"criterion (manifest: search.reached false); read its held-out "
                         f"metrics, then pass --allow-unreached to export it")
    name = args.model or p.model.name
    pretrained = args.pretrained or p.model.pretrained
    _model_ready(p, pretrained)
    b = build(name, pretrained, p.model.quick_gelu, "fp32", "cpu")
    patch = stack_mod.flatten(b.model, loaded) if stacked else loaded
    out = patch_mod.export(b.model, patch, args.out, model_config(name, pretrained))
    print(f"wrote {out}: {name} with {', '.join(patch.manifest.get('layers', []))} patched; "
          f"load it with\n  import open_clip\n  model, _, preprocess = "
          f"open_clip.create_model_and_transforms('local-dir:{out}')")


def _cmd_export_sd(args) -> None:
    from pathlib import Path

    from pipeline.diffusion import sd as sd_mod
    from pipeline.diffusion import text_encoder as hf_text
    from pipeline.diffusion.unlearn import load_mapped
    from pipeline.io import atomic_dir
    from pipeline.models.factory import build

    p = _load(args)
    patch_dir = args.patch or p.sd.patch
    mapped = load_mapped(patch_dir)
    pipe = sd_mod.load(args.pipeline or p.sd.pipeline)
    clip = build(p.model.name, p.model.pretrained, p.model.quick_gelu, "fp32", "cpu")
    sd_mod.check_text_encoder(pipe.text_encoder, clip.model, atol=1e-6)
    hf_text.apply_mapped(pipe.text_encoder, mapped)
    out = Path(args.out)
    with atomic_dir(out) as tmp:
        pipe.save_pretrained(str(tmp))
    print(f"wrote {out}: {args.pipeline or p.sd.pipeline} with the text-encoder patch of "
          f"{patch_dir} (load with StableDiffusionPipeline.from_pretrained({str(out)!r}))")


def _cmd_export_vlm(args) -> None:
    from pathlib import Path

    from pipeline.diffusion.text_encoder import apply_mapped
    from pipeline.io import atomic_dir, skipped
    from pipeline.models.factory import build
    from pipeline.vlm import llava
    from pipeline.vlm import unlearn as vlm_unlearn
    from pipeline.vlm import vision_tower as vt

    p = _load(args)
    patch_dir = args.patch or p.vlm.patch
    if why := skipped(patch_dir):
        raise ModelError(f"{patch_dir} holds no patch: {why}")
    mapped = vlm_unlearn.load_mapped(patch_dir)
    vlm, processor = llava.load(args.vlm or p.vlm.model)
    clip = build(p.model.name, p.model.pretrained, p.model.quick_gelu, "fp32", "cpu")
    vt.check_vision_tower(vlm.model.vision_tower, clip.model, atol=1e-6)
    apply_mapped(vlm.model.vision_tower, mapped)
    out = Path(args.out)
    with atomic_dir(out) as tmp:
        vlm.save_pretrained(str(tmp))
        processor.save_pretrained(str(tmp))
    print(f"wrote {out}: {args.vlm or p.vlm.model} with the vision-tower patch of {patch_dir} "
          f"(load with LlavaForConditionalGeneration.from_pretrained({str(out)!r}))")


def _cmd_sweep(args) -> None:
    from pathlib import Path

    from . import sweep

    threads = args.threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or _torch_threads()
    done, reran = sweep.sweep(args.target, address=args.address, workers=args.workers,
                              threads=threads, gpus=args.gpus, root=Path("."))
    nodes = sorted({d.node for d in done})
    print(f"swept {args.target}: {len(done)} task(s) on {len(nodes)} node(s), "
          f"{sum(d.seconds for d in done):.0f} task-seconds, committed; then dvc repro ran "
          f"{reran} stage(s)")


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()  # what a stage of the serial run uses


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="slug", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    params_help = "params file (default: $SLUG_PARAMS or params.yaml)"
    for name, fn, helptext in (("params", _cmd_params, "validate and print params"),
                               ("model", _cmd_model, "build the configured model"),
                               ("check", _cmd_check, "check params, references, device, data "
                                                     "layouts and the concept, in seconds")):
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("--file", help=params_help)
        sp.set_defaults(fn=fn)
    sp = sub.add_parser("recipe", help="apply a params overlay (recipes/*.yaml) to params.yaml")
    sp.add_argument("recipe", help="the overlay, e.g. recipes/clip-vit-b-32.yaml")
    sp.add_argument("--file", help=params_help)
    sp.set_defaults(fn=_cmd_recipe)
    sp = sub.add_parser("review", help="a markdown report of what changed between two revisions "
                        "or experiments (params, metrics, figures)")
    sp.add_argument("rev_a", help="a git revision, an experiment name or workspace")
    sp.add_argument("rev_b")
    sp.add_argument("--out", default="review", help="the report's folder (default: review/)")
    sp.set_defaults(fn=_cmd_review)
    sub.choices["check"].add_argument("--target", help="also check what `dvc repro TARGET` would "
                                      "run: no missing input; no tiny-world stage when world is "
                                      "real")
    sub.choices["check"].add_argument("--only", help="comma-separated checks to run (names as "
                                      "printed: refs, device, model, data.shards, concept, ...)")
    sp = sub.add_parser("export", help="write the unlearned model as an open_clip model folder")
    sp.add_argument("--file", help=params_help)
    sp.add_argument("--patch", help="patch folder, or a patch stack's folder (default: "
                    "unlearn.out)")
    sp.add_argument("--model", help="architecture (default: model.name)")
    sp.add_argument("--pretrained", help="base weights (default: model.pretrained)")
    sp.add_argument("--out", required=True, help="the folder to write (open_clip_config.json + "
                    "open_clip_model.safetensors)")
    sp.add_argument("--allow-unreached", action="store_true", help="export a patch whose search "
                    "did not reach its criterion (manifest: search.reached false)")
    sp.set_defaults(fn=_cmd_export)
    sp = sub.add_parser("export-sd", help="write the unlearned diffusion pipeline folder")
    sp.add_argument("--file", help=params_help)
    sp.add_argument("--pipeline", help="diffusers pipeline folder (default: sd.pipeline)")
    sp.add_argument("--patch", help="patch folder from sd_unlearn (default: sd.patch)")
    sp.add_argument("--out", required=True, help="the pipeline folder to write")
    sp.set_defaults(fn=_cmd_export_sd)
    sp = sub.add_parser("export-vlm", help="write the unlearned VLM folder")
    sp.add_argument("--file", help=params_help)
    sp.add_argument("--vlm", help="LLaVA folder (default: vlm.model)")
    sp.add_argument("--patch", help="patch folder from vlm_unlearn (default: vlm.patch)")
    sp.add_argument("--out", required=True, help="the VLM folder to write")
    sp.set_defaults(fn=_cmd_export_vlm)
    sp = sub.add_parser("sweep", help="run a dvc.yaml's changed stages as tasks on a Ray "
                        "cluster (in dependency waves), each wave then dvc commit-ed")
    sp.add_argument("target", nargs="?", default="benchmarks/unlearncanvas/dvc.yaml",
                    help="the dvc.yaml (default: the UnlearnCanvas sweep)")
    sp.add_argument("--address", help="a running Ray cluster (auto, ray://host:10001); default: "
                    "start a local one")
    sp.add_argument("--workers", type=int, default=2, help="tasks at once on the local cluster")
    sp.add_argument("--threads", type=int, help="torch threads per task (default: the serial "
                    "run's, $OMP_NUM_THREADS or torch's)")
    sp.add_argument("--gpus", type=float, default=0.0, help="GPUs per task (1 on a GPU cluster)")
    sp.set_defaults(fn=_cmd_sweep)
    args = ap.parse_args(argv)
    try:
        args.fn(args)
        sys.stdout.flush()
    except SlugError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except BrokenPipeError:  # `slug params | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    main()
