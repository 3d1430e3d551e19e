"""Stage pretrain: train the tiny CLIP from scratch on the tiny world's shards (embedded default).

Writes the weights as safetensors, zero-shot accuracies per kind as metrics and the training
history as a plot table.
"""

from __future__ import annotations

import torch

from pipeline.datasets.shards import data_shards
from pipeline.entry import metrics_path, plots_dir, run
from pipeline.evaluate.sets import standard_sets
from pipeline.io import save_tensors, sha256_file, write_csv, write_json
from pipeline.models.factory import build
from pipeline.models.structure import state_dict_hash
from pipeline.params import Params
from pipeline.report.figures import plot_history
from pipeline.train.clip import TrainConfig, pretrain


def main(p: Params) -> None:
    cfg = p.pretrain
    torch.manual_seed(p.seed)
    bundle = build(cfg.arch, None, p.model.quick_gelu, "fp32", p.device)
    shards = data_shards(p.data)
    d = p.data  # a missing evaluation set fails before training, not after
    sets = list(standard_sets(d.celeba, d.characters, d.imagenet, d.unlearncanvas,
                              p.eval.templates).values())
    res = pretrain(bundle, shards, sets, TrainConfig.from_params(cfg, p.seed))
    save_tensors(cfg.out, bundle.model.state_dict(), {"arch": cfg.arch, "seed": p.seed})
    write_json(metrics_path("pretrain"), {
        "zeroshot": res.zeroshot,
        "train": {"steps": cfg.steps, "final_loss": res.history[-1]["loss"],
                  "samples": res.report.samples,
                  "skipped_corrupt_images": res.report.corrupt_images,
                  "skipped_incomplete": res.report.incomplete},
        "time_s": {"load": round(res.load_s, 1), "train": round(res.train_s, 1)},
        "model": {**bundle.describe(), "sha256": sha256_file(cfg.out),
                  "state_dict_sha256": state_dict_hash(bundle.model)},
        "seed": p.seed, "torch": torch.__version__})
    plots = plots_dir("pretrain")
    write_csv(plots / "history.csv", res.history,
              sorted({k for row in res.history for k in row}, key=lambda k: (k != "step", k)))
    plot_history(res.history, [s.name for s in sets], plots / "history.png")
    print("pretrain: zero-shot top-1 " + ", ".join(f"{k} {v['top1']:.3f}"
                                                    for k, v in res.zeroshot.items()))


if __name__ == "__main__":
    run(main, embedded=True)
