"""Stage pretrain: train the tiny CLIP from scratch on the tiny world's shards (embedded default).

Writes the weights as safetensors, zero-shot accuracies per kind as metrics and the training
history as a plot table.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from pipeline.datasets.shards import list_shards
from pipeline.evaluate import sets as evalsets
from pipeline.io import atomic_path, sha256_file, write_json, write_text
from pipeline.models import build, state_dict_hash
from pipeline.params import Params
from pipeline.report.figures import plot_history
from pipeline.datasets.pairs import load_pairs
from pipeline.train.clip import TrainConfig, train

from ._common import run

METRICS = Path("metrics/pretrain.json")
HISTORY = Path("plots/pretrain/history.csv")
FIGURE = Path("plots/pretrain/history.png")


def eval_sets(p: Params) -> list[evalsets.EvalSet]:
    d = p.data
    return list(evalsets.standard_sets(d.celeba, d.characters, d.imagenet, d.unlearncanvas,
                                       p.eval.templates).values())


def main(p: Params) -> None:
    cfg = p.pretrain
    torch.manual_seed(p.seed)
    bundle = build(cfg.arch, None, p.model.quick_gelu, "fp32", p.device)
    shards = list_shards(p.data.shards)
    sets = eval_sets(p)  # fail on a missing eval set before training, not after
    start = time.time()
    data = load_pairs(shards, bundle.preprocess, bundle.tokenizer)
    images = evalsets.load(sets, bundle.preprocess)
    load_s = time.time() - start

    def evaluate(model):
        return {s.name: s.score(model, bundle.tokenizer, images[s.name])["top1"] for s in sets}

    history = train(bundle.model, data, TrainConfig(
        steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
        warmup=cfg.warmup, seed=p.seed, eval_every=cfg.eval_every,
        augment_shift=cfg.augment_shift), evaluate)
    train_s = time.time() - start - load_s
    final = {s.name: s.score(bundle.model, bundle.tokenizer, images[s.name]) for s in sets}

    state = {k: v.detach().cpu().contiguous() for k, v in bundle.model.state_dict().items()}
    with atomic_path(cfg.out, ".safetensors") as tmp:
        save_file(state, str(tmp), metadata={"arch": cfg.arch, "seed": str(p.seed)})
    write_json(METRICS, {
        "zeroshot": final,
        "train": {"steps": cfg.steps, "final_loss": history[-1]["loss"],
                  "samples": data.report.samples,
                  "skipped_corrupt_images": data.report.corrupt_images,
                  "skipped_incomplete": data.report.incomplete},
        "time_s": {"load": round(load_s, 1), "train": round(train_s, 1)},
        "model": {**bundle.describe(), "sha256": sha256_file(cfg.out),
                  "state_dict_sha256": state_dict_hash(bundle.model)},
        "seed": p.seed, "torch": torch.__version__,
    })
    buf = io.StringIO()
    keys = sorted({k for row in history for k in row}, key=lambda k: (k != "step", k))
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(history)
    write_text(HISTORY, buf.getvalue())
    plot_history(history, [s.name for s in sets], FIGURE)
    if data.report.corrupt_images:
        print(f"pretrain: skipped {data.report.corrupt_images} corrupt image(s)")
    print("pretrain: zero-shot top-1 " + ", ".join(f"{k} {v['top1']:.3f}"
                                                    for k, v in final.items()))


if __name__ == "__main__":
    run(main)
