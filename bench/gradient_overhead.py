"""Benchmark: our gradient pass against open_clip's plain forward + backward on the same batches.

Both sides see the same random image-caption pairs (224 px, ``--arch`` with random init: timing
only), the same batch layout and the same losses (``pipeline.unlearn.losses``):

* ``ours``: ``pipeline.unlearn.gradients.gradient_pass`` (per batch: forward, loss, backward,
  then every parameter's gradient added, weighted by the batch's share, into float32 sums);
* ``plain``: per batch forward, ``(share * loss).backward()``, the gradients left to accumulate
  in ``.grad``, as a training loop without its optimizer step.

The gap between the two is what our pass costs beyond the forward and backward passes themselves.
Each side runs ``--repeats`` times, alternating; the medians go to ``bench/gradient_overhead.json``
with the largest gradient difference between the two (they compute the same mean gradient).

    python -m bench.gradient_overhead                       # ViT-B-32, batch 16, 32 + 32 pairs
    python -m bench.gradient_overhead --forget 64 --retain 64 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

OUT = Path("bench/gradient_overhead.json")


def pairs(n: int, size: int, tokenizer, seed: int):
    import torch

    from pipeline.datasets.pairs import PairData
    from pipeline.datasets.shards import ReadReport

    g = torch.Generator().manual_seed(seed)
    caps = [f"a photo of person {i}." for i in range(n)]
    return PairData(torch.randn(n, 3, size, size, generator=g), tokenizer(caps), caps,
                    ReadReport())


def plain(model, data, loss_fn, batch_size: int) -> dict:
    """open_clip's forward + backward per batch, gradients accumulated in ``.grad``."""
    n = len(data.images)
    model.zero_grad(set_to_none=True)
    for s in range(0, n, batch_size):
        out = model(data.images[s:s + batch_size], data.tokens[s:s + batch_size])
        loss = loss_fn(out)
        ((min(s + batch_size, n) - s) / n * loss).backward()
    grads = {k: p.grad.detach().clone() for k, p in model.named_parameters()
             if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="ViT-B-32")
    ap.add_argument("--batch-size", type=int, default=16)  # params.yaml gradients.batch_size
    ap.add_argument("--forget", type=int, default=32)
    ap.add_argument("--retain", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    import torch

    from pipeline.models.factory import build
    from pipeline.unlearn.gradients import gradient_pass
    from pipeline.unlearn.losses import forget_loss, retain_loss

    torch.manual_seed(0)
    b = build(args.arch)
    model = b.model.eval()
    forget = pairs(args.forget, b.image_size, b.tokenizer, 1)
    retain = pairs(args.retain, b.image_size, b.tokenizer, 2)

    def f_loss(o):
        return forget_loss(o["image_features"], o["text_features"])

    def r_loss(o):
        return retain_loss(o["image_features"], o["text_features"], o["logit_scale"])

    times: dict[str, list[float]] = {"ours": [], "plain": []}
    for _ in range(args.repeats):
        start = time.perf_counter()
        ours = gradient_pass(model, forget, retain, args.batch_size)
        times["ours"].append(time.perf_counter() - start)
        start = time.perf_counter()
        ref_f = plain(model, forget, f_loss, args.batch_size)
        ref_r = plain(model, retain, r_loss, args.batch_size)
        times["plain"].append(time.perf_counter() - start)
    diff = max(float((ours.forget[k] - ref_f[k]).abs().max()) for k in ref_f)
    diff = max(diff, max(float((ours.retain[k] - ref_r[k]).abs().max()) for k in ref_r))
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {"arch": args.arch, "batch_size": args.batch_size, "forget": args.forget,
           "retain": args.retain, "image_px": b.image_size, "repeats": args.repeats,
           "ours_s": round(med["ours"], 2), "plain_s": round(med["plain"], 2),
           "overhead": round(med["ours"] / med["plain"] - 1, 3),
           "runs_s": {k: [round(x, 2) for x in v] for k, v in times.items()},
           "max_abs_grad_diff": diff, "torch": torch.__version__,
           "threads": torch.get_num_threads()}
    OUT.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
