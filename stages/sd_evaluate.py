"""Stage sd_evaluate: generate images for the forgotten concept and for retained concepts with
fixed seeds, before and after the text-encoder patch; judge them; an image grid as a plot."""

from __future__ import annotations

import torch

from pipeline.diffusion import evaluate as G
from pipeline.diffusion import sd as sd_mod
from pipeline.diffusion import unlearn as U
from pipeline.entry import metrics_path, plots_dir, run
from pipeline.evaluate.sets import standard_sets
from pipeline.io import write_csv, write_json
from pipeline.models.factory import from_params
from pipeline.params import Params
from pipeline.report.generations import plot_grid
from pipeline.sets.build import read_concept


def main(p: Params) -> None:
    torch.manual_seed(p.seed)
    e = p.sd.evaluate
    bundle = from_params(p.model, p.device)
    pipe = sd_mod.load(p.sd.pipeline)
    sd_mod.check_text_encoder(pipe.text_encoder, bundle.model, atol=1e-6)
    mapped = U.load_mapped(p.sd.patch)
    concept = read_concept(p.sets.out)
    d = p.data
    sets = standard_sets(d.celeba, d.characters, d.imagenet, d.unlearncanvas, p.eval.templates)
    names, prompts, judge = U.prompts_and_judge(sets, [concept], e.templates, e.judge_over,
                                                e.retained_per_kind, bundle)
    g = G.before_after(pipe, mapped, prompts, names, judge, e.images_per_prompt, p.seed, e.steps,
                       e.guidance)
    plots = plots_dir("sd")
    write_csv(plots / "generations.csv", G.table(g, prompts))
    plot_grid(g.before, g.after, prompts, G.grid_rows(prompts), e.images_per_prompt,
              e.grid_images, plots / "grid.png", concept.label)
    over = "every name of every kind" if e.judge_over == "all" else "the names of the prompt kind"
    m = G.metrics(g, prompts)
    write_json(metrics_path("sd_evaluate"), {
        "concept": concept.label, "kind": concept.kind, "images_per_prompt": e.images_per_prompt,
        "steps": e.steps, "guidance": e.guidance, "seed": p.seed, **m,
        "judge": f"CLIP zero-shot (model.*) over {over}"})
    print(f"sd_evaluate: {concept.label} generations judged as {concept.label}: "
          f"{m['before']['forget']:.2f} -> {m['after']['forget']:.2f}; retained concepts: "
          f"{m['before']['retained']:.2f} -> {m['after']['retained']:.2f} "
          f"({g.seconds:.0f}s of generation)")


if __name__ == "__main__":
    run(main)
