"""Stage sd_train (embedded default only): a tiny text-to-image model on the tiny world's shards,
conditioned on the tiny CLIP's text tower, saved as a standard diffusers pipeline folder. It also
learns the UnlearnCanvas grid, each image captioned with its benchmark prompt, as UnlearnCanvas's
SD 1.5 was fine-tuned on it."""

from __future__ import annotations

import time

import torch

from pipeline.canvas import data as canvas_data
from pipeline.datasets.pairs import concat, load_pairs
from pipeline.datasets.shards import data_shards
from pipeline.diffusion.tiny import TinySDConfig, to_unit, train_pipeline
from pipeline.entry import metrics_path, plots_dir, run
from pipeline.io import atomic_dir, write_csv, write_json
from pipeline.models.factory import from_params
from pipeline.models.structure import state_dict_hash
from pipeline.params import Params
from pipeline.progress import progress


def main(p: Params) -> None:
    t, c = p.sd.train, p.canvas
    torch.manual_seed(p.seed)
    bundle = from_params(p.model, "cpu", "fp32")
    cfg = TinySDConfig.from_params(t, p.seed)
    start = time.time()
    shards = load_pairs(data_shards(p.data), to_unit(t.image_size), bundle.tokenizer)
    canvas = canvas_data.grid_pairs(canvas_data.load(p.data.unlearncanvas, c.styles, c.objects),
                                    c.prompt, to_unit(t.image_size), bundle.tokenizer)
    data = concat(shards, canvas)
    load_s = time.time() - start
    res = train_pipeline(bundle.model, bundle.tokenizer, data.images, data.tokens, data.captions,
                         cfg, progress)
    with atomic_dir(t.out) as tmp:  # never a half-written pipeline folder
        res.pipe.save_pretrained(str(tmp))
    write_csv(plots_dir("sd_train") / "history.csv", res.unet_history,
              ["step", "unet_loss", "elapsed_s"])
    vae, unet = res.pipe.vae, res.pipe.unet
    write_json(metrics_path("sd_train"), {
        "samples": len(data.images), "canvas_samples": len(canvas.images),
        "corrupt_images_skipped": data.report.corrupt_images,
        "vae": {"params": sum(x.numel() for x in vae.parameters()),
                "final_mse": res.vae_history[-1]["vae_mse"], "scaling_factor": res.scaling_factor,
                "time_s": round(res.vae_s, 1)},
        "unet": {"params": sum(x.numel() for x in unet.parameters()),
                 "final_loss": res.unet_history[-1]["unet_loss"], "time_s": round(res.unet_s, 1)},
        "load_s": round(load_s, 1), "text_encoder_from": bundle.describe(),
        "clip_sha256": state_dict_hash(bundle.model), "seed": p.seed})
    print(f"sd_train: {len(data.images)} images; VAE mse {res.vae_history[-1]['vae_mse']:.4f} "
          f"({res.vae_s:.0f}s), UNet loss {res.unet_history[-1]['unet_loss']:.4f} "
          f"({res.unet_s:.0f}s)")


if __name__ == "__main__":
    run(main, embedded=True)
