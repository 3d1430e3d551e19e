"""Stage sd_evaluate: generate images for the forgotten concept and for retained concepts with
fixed seeds, before and after the text-encoder patch; judge them; an image grid as a plot."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from pipeline.diffusion import judge as J
from pipeline.diffusion import sd as sd_mod
from pipeline.diffusion import text_encoder as hf_text
from pipeline.errors import ModelError
from pipeline.io import write_json, write_text
from pipeline.models import build
from pipeline.params import Params
from pipeline.report.generations import plot_grid

from ._common import run
from .sd_unlearn import MAPPED, prompts_and_judge

METRICS = Path("metrics/sd_evaluate.json")
TABLE = Path("plots/sd/generations.csv")
GRID = Path("plots/sd/grid.png")


def main(p: Params) -> None:
    torch.manual_seed(p.seed)
    m, e = p.model, p.sd.evaluate
    bundle = build(m.name, m.pretrained, m.quick_gelu, m.precision, p.device)
    pipe = sd_mod.load(p.sd.pipeline)
    sd_mod.check_text_encoder(pipe.text_encoder, bundle.model, atol=1e-6)
    mapped_path = Path(p.sd.patch) / MAPPED
    if not mapped_path.exists():
        raise ModelError(f"{mapped_path} is missing; run the sd_unlearn stage first")
    mapped = load_file(str(mapped_path))
    concept, names, prompts, judge = prompts_and_judge(p, bundle, e.retained_per_kind)
    kind = prompts[0].kind
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor

    start = time.time()
    texts = [pr.text for pr in prompts]
    before = sd_mod.generate(pipe, texts, e.images_per_prompt, p.seed, e.steps, e.guidance, size)
    originals = {k: v.detach().clone() for k, v in pipe.text_encoder.state_dict().items()
                 if k in mapped}
    hf_text.apply_mapped(pipe.text_encoder, mapped)
    after = sd_mod.generate(pipe, texts, e.images_per_prompt, p.seed, e.steps, e.guidance, size)
    hf_text.apply_mapped(pipe.text_encoder, originals)
    gen_s = time.time() - start

    acc_b = J.generation_accuracy(before, prompts, e.images_per_prompt, names, judge)
    acc_a = J.generation_accuracy(after, prompts, e.images_per_prompt, names, judge)
    sb, sa = J.summarize(acc_b, prompts), J.summarize(acc_a, prompts)
    rows = [{"concept": pr.concept, "kind": pr.kind, "prompt": pr.text, "target": pr.target,
             "before": acc_b[pr.concept], "after": acc_a[pr.concept]} for pr in prompts]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    write_text(TABLE, buf.getvalue())
    show, per_kind = [0], {}
    for i, pr in enumerate(prompts[1:], 1):  # two retained prompts of every kind
        if per_kind.setdefault(pr.kind, 0) < 2:
            per_kind[pr.kind] += 1
            show.append(i)
    plot_grid(before, after, prompts, show, e.images_per_prompt, e.grid_images, GRID, concept)
    write_json(METRICS, {
        "concept": concept, "kind": kind, "images_per_prompt": e.images_per_prompt,
        "steps": e.steps, "guidance": e.guidance, "seed": p.seed,
        "before": {k: v for k, v in sb.items() if k != "per_concept"},
        "after": {k: v for k, v in sa.items() if k != "per_concept"},
        "retained_drop": sb["retained"] - sa["retained"], "generation_s": round(gen_s, 1),
        "judge": f"CLIP zero-shot (model.*) over {'every name of every kind' if e.judge_over == 'all' else 'the names of the prompt kind'}",
    })
    print(f"sd_evaluate: {concept} generations judged as {concept}: {sb['forget']:.2f} -> "
          f"{sa['forget']:.2f}; retained concepts: {sb['retained']:.2f} -> {sa['retained']:.2f} "
          f"({gen_s:.0f}s of generation)")


if __name__ == "__main__":
    run(main)
