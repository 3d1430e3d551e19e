"""The ``slug`` command line.

    slug params [--file params.yaml]        validate params and print them resolved
    slug model [--file params.yaml]         build the configured model, print what it is
    slug export [--patch DIR] [--out FILE]  apply a patch to its base model, write a full
                                            open_clip checkpoint (refuses another base model)
    slug export-sd [--pipeline DIR] [--patch DIR] [--out DIR]
                                            write the unlearned diffusion pipeline folder

Expected errors print one line (``error: ...``) and exit 1; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from pipeline import params as params_mod
from pipeline.errors import SlugError


def _cmd_params(args) -> None:
    print(json.dumps(params_mod.to_dict(params_mod.load(args.file)), indent=2))


def _cmd_model(args) -> None:
    from pipeline.models.factory import build
    from pipeline.models.structure import state_dict_hash

    p = params_mod.load(args.file)
    b = build(p.model.name, p.model.pretrained, p.model.quick_gelu, p.model.precision, p.device)
    print(json.dumps({**b.describe(), "device": str(b.device), "image_size": b.image_size,
                      "state_dict_sha256": state_dict_hash(b.model)}, indent=2))


def _cmd_export(args) -> None:
    from pipeline.models.factory import build
    from pipeline.unlearn import patch as patch_mod

    p = params_mod.load(args.file)
    patch = patch_mod.load(args.patch or p.unlearn.out)
    name = args.model or p.model.name
    pretrained = args.pretrained or p.model.pretrained
    b = build(name, pretrained, p.model.quick_gelu, "fp32", "cpu")
    out = patch_mod.export(b.model, patch, args.out)
    print(f"wrote {out}: {name} with {', '.join(patch.manifest.get('layers', []))} patched "
          f"(load with open_clip.create_model({name!r}, pretrained={str(out)!r}))")


def _cmd_export_sd(args) -> None:
    from pathlib import Path

    from pipeline.diffusion import sd as sd_mod
    from pipeline.diffusion import text_encoder as hf_text
    from pipeline.diffusion.unlearn import load_mapped
    from pipeline.io import atomic_dir
    from pipeline.models.factory import build

    p = params_mod.load(args.file)
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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="slug", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, fn, helptext in (("params", _cmd_params, "validate and print params"),
                               ("model", _cmd_model, "build the configured model")):
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("--file", default="params.yaml")
        sp.set_defaults(fn=fn)
    sp = sub.add_parser("export", help="write the unlearned model as a full checkpoint")
    sp.add_argument("--file", default="params.yaml")
    sp.add_argument("--patch", help="patch folder (default: unlearn.out)")
    sp.add_argument("--model", help="architecture (default: model.name)")
    sp.add_argument("--pretrained", help="base weights (default: model.pretrained)")
    sp.add_argument("--out", default="models/unlearned.safetensors")
    sp.set_defaults(fn=_cmd_export)
    sp = sub.add_parser("export-sd", help="write the unlearned diffusion pipeline folder")
    sp.add_argument("--file", default="params.yaml")
    sp.add_argument("--pipeline", help="diffusers pipeline folder (default: sd.pipeline)")
    sp.add_argument("--patch", help="patch folder from sd_unlearn (default: sd.patch)")
    sp.add_argument("--out", default="models/unlearned-sd")
    sp.set_defaults(fn=_cmd_export_sd)
    args = ap.parse_args(argv)
    try:
        args.fn(args)
    except SlugError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
