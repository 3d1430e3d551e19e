"""Benchmark (a projection, labelled as such): SLUG's and GA's time to forget at real scale.

Measured here: the per-pair cost of a forward pass (``f``) and of a forward + backward pass with
the CLIP loss (``fb``), batch 16, for the tiny CLIP (its own image size) and for ``ViT-B-32`` and
``ViT-L-14`` (random init, 224 px: timing only). Counted on the committed tiny-world run
(``metrics/compare.json``, ``metrics/unlearn.json``, ``data/grads/manifest.json``): SLUG's
evaluations and the cost of one trial relative to a full forward pass of the search data (the
share of the network a trial runs), GA's epochs to reach the criterion and its stop-rule checks.

The model, per forget set of ``N`` search pairs (``R`` retain pairs, ``V`` retain-validation pairs):

* SLUG = ``(N + R) fb`` (the gradient pass) ``+ E · share · (N + V) f`` (the search);
* GA = ``epochs · N · fb`` (its training) ``+ checks · (N + V) f`` (each check scores the search
  data from scratch; ``checks = epochs · checks_per_epoch``).

The counts are assumed to carry over from the tiny world (GA's epochs to forget above all: a
real concept's may differ). The same model applied to the tiny CLIP is printed beside the measured
tiny-world times as a check of the model itself. Run after ``dvc repro compare``:

    python -m bench.scaling_projection      # writes bench/scaling_projection.json
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from pipeline import params as params_mod
from pipeline.unlearn.losses import retain_loss

OUT = Path("bench/scaling_projection.json")
SIZES = (1000, 5000)
BATCH = 16


def per_pair_costs(model, size: int, tokenizer, repeats: int = 2) -> dict:
    images = torch.randn(BATCH, 3, size, size)
    tokens = tokenizer([f"a photo of person {i}." for i in range(BATCH)])
    model.eval()
    fwd, fwdbwd = [], []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        with torch.no_grad():
            model(images, tokens)
        fwd.append(time.perf_counter() - t)
        t = time.perf_counter()
        out = model(images, tokens)
        retain_loss(out["image_features"], out["text_features"], out["logit_scale"]).backward()
        model.zero_grad(set_to_none=True)
        fwdbwd.append(time.perf_counter() - t)
    return {"f": statistics.median(fwd[1:]) / BATCH, "fb": statistics.median(fwdbwd[1:]) / BATCH}


def project(c: dict, n: int, counts: dict) -> dict:
    slug = (n + counts["R"]) * c["fb"] + counts["E"] * counts["share"] * (n + counts["V"]) * c["f"]
    ga = (counts["ga_epochs"] * n * c["fb"]
          + counts["ga_checks"] * (n + counts["V"]) * c["f"])
    return {"n_forget_search": n, "slug_s": slug, "ga_s": ga, "ga_over_slug": ga / slug}


def main() -> None:
    from pipeline.models.factory import build, from_params

    p = params_mod.load()
    cmp_ = json.loads(Path("metrics/compare.json").read_text())["methods"]
    unl = json.loads(Path("metrics/unlearn.json").read_text())
    grads = json.loads(Path(p.gradients.out, "manifest.json").read_text())
    tiny = from_params(p.model, "cpu")
    size = tiny.model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    costs = {"tiny-clip": per_pair_costs(tiny.model, size, tiny.tokenizer)}
    n_f, n_r, n_v = grads["n_forget"], grads["n_retain"], p.sets.n_retain_val
    full_forward = (n_f + n_v) * costs["tiny-clip"]["f"]
    ga = cmp_["ga"]
    counts = {"R": n_r, "V": n_v, "E": unl["evaluations"],
              "share": unl["time_s"] / unl["evaluations"] / full_forward,
              "ga_epochs": ga["epochs"], "ga_checks": ga["epochs"] * p.baselines.checks_per_epoch,
              "ga_reached": ga["reached"]}
    check = {"projected": project(costs["tiny-clip"], n_f, counts),
             "measured": {"slug_s": cmp_["slug"]["time_to_forget_s"],
                          "ga_s": ga["time_to_forget_s"]}}
    print(f"tiny world: projected {json.dumps(check['projected'])}, measured "
          f"{json.dumps(check['measured'])}")
    for arch in ("ViT-B-32", "ViT-L-14"):
        m = build(arch)
        costs[arch] = per_pair_costs(m.model, 224, m.tokenizer)
        del m
        print(f"{arch}: {costs[arch]}")
    rows = [{"arch": a, **project(costs[a], n, counts)} for a in ("ViT-B-32", "ViT-L-14")
            for n in SIZES]
    OUT.write_text(json.dumps({"label": "projection (per-pair costs measured here, counts from "
                                        "the tiny-world run)", "batch_size": BATCH,
                               "threads": torch.get_num_threads(), "costs_s_per_pair": costs,
                               "counts": counts, "tiny_world_check": check, "rows": rows},
                              indent=1) + "\n")
    for r in rows:
        print(f"{r['arch']:9s} N={r['n_forget_search']:5d}: SLUG {r['slug_s']:8.0f} s  GA "
              f"{r['ga_s']:8.0f} s  GA/SLUG {r['ga_over_slug']:.2f}")


if __name__ == "__main__":
    main()
