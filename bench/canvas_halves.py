"""Benchmark (diagnostic): what each UnlearnCanvas patch does to what the generator reads.

For every target of the sweep and each method (``canvas.methods``), the patch is applied to the
generator's text encoder and the relative change of its output (every token's hidden state, what
the UNet attends to) is measured on the grid's prompts of three groups: the target's own, the
other concepts of its kind that a selective step's projection saw (the first half,
``pipeline.canvas.target.halves``) and those it did not (the second half). Text only, no
generation: it shows where a step moves the generator's input, and whether a projection that
leaves the seen half in place also leaves the unseen half.

    python -m bench.canvas_halves       # after `python3 dev.py canvas`; bench/canvas_halves.json
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import torch

OUT = Path("bench/canvas_halves.json")


def moved(encoder, ids: torch.Tensor, before: torch.Tensor) -> float:
    """Mean over prompts of ||h' - h|| / ||h|| on the encoder's whole output sequence."""
    with torch.no_grad():
        after = encoder(ids)[0]
    return float(((after - before).flatten(1).norm(dim=1)
                  / before.flatten(1).norm(dim=1)).mean())


def setup():
    """The params, the canvas and the generator the sweep used (for the canvas benchmarks)."""
    from pipeline.canvas import data as canvas_data
    from pipeline.diffusion import sd as sd_mod
    from pipeline.params import load

    p = load()
    canvas = canvas_data.load(p.data.unlearncanvas, p.canvas.styles, p.canvas.objects)
    return p, canvas, sd_mod.load(p.canvas.pipeline)


def prompt_ids(p, canvas, tok, kind: str, names: list[str]) -> torch.Tensor:
    """The token ids of every grid prompt of the concepts ``names`` of ``kind``."""
    c = p.canvas
    n_other = len(c.objects if kind == "style" else c.styles)
    cells = [(canvas.names(kind).index(n), x) for n in names for x in range(n_other)]
    texts = [canvas.prompt(c.prompt, *(cell if kind == "style" else cell[::-1]))
             for cell in cells]
    return tok(texts, padding="max_length", max_length=tok.model_max_length, truncation=True,
               return_tensors="pt").input_ids


def main() -> None:
    from pipeline.canvas import data as canvas_data
    from pipeline.canvas.target import halves
    from pipeline.diffusion import text_encoder as hf_text
    from pipeline.diffusion import unlearn as U

    p, canvas, pipe = setup()
    c = p.canvas
    enc, tok = pipe.text_encoder, pipe.tokenizer

    def prompts(kind: str, names: list[str]) -> torch.Tensor:
        return prompt_ids(p, canvas, tok, kind, names)

    rows = []
    for kind in ("style", "object"):
        for name in canvas.names(kind):
            target = canvas_data.find_target(canvas, name)
            seen, unseen = halves(canvas, target)
            groups = {"target": prompts(kind, [name]), "seen": prompts(kind, seen),
                      "unseen": prompts(kind, unseen)}
            with torch.no_grad():
                base = {g: enc(ids)[0] for g, ids in groups.items()}
            for mode in c.methods:
                folder = Path(c.out) / mode / kind / name / "patch"
                mapped = U.load_mapped(folder)
                original = {k: enc.state_dict()[k].detach().clone() for k in mapped}
                hf_text.apply_mapped(enc, mapped)
                try:
                    row = {g: moved(enc, ids, base[g]) for g, ids in groups.items()}
                finally:
                    hf_text.apply_mapped(enc, original)
                metrics = json.loads((folder.parent / "metrics.json").read_text())
                rows.append({"target": name, "kind": kind, "method": metrics["method"],
                             "layer": metrics["layer"], "rel_step": metrics["rel_step"], **row})
                print(f"{metrics['method']:>15} {kind:6} {name:11} target {row['target']:.3f} "
                      f"seen {row['seen']:.3f} unseen {row['unseen']:.3f}")
    summary = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        for kind in ("style", "object"):
            sub = [r for r in rows if r["method"] == method and r["kind"] == kind]
            summary[f"{method}/{kind}"] = {
                g: round(statistics.median(r[g] for r in sub), 4)
                for g in ("target", "seen", "unseen")}
            summary[f"{method}/{kind}"]["unseen_over_seen"] = round(statistics.median(
                r["unseen"] / max(r["seen"], 1e-12) for r in sub), 2)
    OUT.write_text(json.dumps({"what": "median relative change of the text encoder's output "
                                       "sequence, per prompt group (grid prompts)",
                               "summary": summary, "rows": rows}, indent=2) + "\n")
    for k, v in summary.items():
        print(f"{k:>28}: target {v['target']:.3f}  seen {v['seen']:.3f}  unseen "
              f"{v['unseen']:.3f}  (unseen / seen x{v['unseen_over_seen']})")


if __name__ == "__main__":
    main()
