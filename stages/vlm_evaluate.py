"""Stage vlm_evaluate: the VLM asked about held-out images (the target's forget-test split, the
retained concepts' eval images) before and after the vision-tower patch, greedy decoding; the
share of answers naming the right concept, the target's most frequent answers, a grid."""

from __future__ import annotations

import torch

from pipeline.datasets.shards import ReadReport
from pipeline.entry import metrics_path, plots_dir, run
from pipeline.io import skipped, write_csv, write_json
from pipeline.models.factory import from_params
from pipeline.params import VLM_KINDS, Params
from pipeline.report.generations import plot_answers, plot_note
from pipeline.sets.build import read_concept, require_split
from pipeline.vlm import evaluate as E
from pipeline.vlm import llava
from pipeline.vlm import sets as vs
from pipeline.vlm import unlearn as U
from pipeline.vlm import vision_tower as vt


def main(p: Params) -> None:
    torch.manual_seed(p.seed)
    v = p.vlm
    bundle = from_params(p.model, p.device)
    vlm, processor = llava.load(v.model, bundle.device)
    vt.check_vision_tower(vlm.model.vision_tower, bundle.model, atol=1e-6)
    concept = read_concept(p.sets.out)
    plots = plots_dir("vlm")
    if why := skipped(v.patch):
        write_csv(plots / "answers.csv", [], E.TABLE_FIELDS)
        plot_note(why, plots / "answers.png")
        write_json(metrics_path("vlm_evaluate"), {"concept": concept.label, "skipped": why})
        return print(f"vlm_evaluate: skipped ({why})")
    questions = {k: getattr(v.questions, k) for k in VLM_KINDS}
    report = ReadReport()
    items = E.stream(require_split(p.sets.out, "forget_test"), concept,
                     *vs.read(v.sets.out, "eval"), report)
    a = E.ask(vlm, processor, llava.preprocess(processor), v.template, questions, items,
              U.load_mapped(v.patch), v.batch_size, v.grid_images, v.max_new_tokens)
    write_csv(plots / "answers.csv", E.table(a, concept.label), E.TABLE_FIELDS)
    rows = E.grid_rows(a, concept.label)
    plot_answers(a.thumbs, a.before, a.after, {r: questions[a.kinds[r]] for r in rows}, rows,
                 plots / "answers.png", concept.label)
    m = E.metrics(a, concept.label)
    write_json(metrics_path("vlm_evaluate"), {
        "concept": concept.label, "kind": concept.kind, **m, "read": report.as_dict(),
        "decoding": {"greedy": True, "max_new_tokens": v.max_new_tokens}, "seed": p.seed})
    b, f = m["before"], m["after"]
    print(f"vlm_evaluate: {concept.label} named {b['target']:.2f} -> {f['target']:.2f}; "
          f"retained named {b['retained']:.2f} -> {f['retained']:.2f}")


if __name__ == "__main__":
    run(main)
