"""Stage canvas_generator (embedded default only): the tiny text-to-image model of sd_train,
its UNet fine-tuned on the canvas grid with the benchmark prompts, as UnlearnCanvas fine-tuned
SD 1.5 on its images. The text encoder and VAE stay as they are (SLUG edits the encoder)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from pipeline.canvas import data as canvas_data
from pipeline.diffusion import sd as sd_mod
from pipeline.diffusion.tiny import TinySDConfig, encode_latents, train_unet
from pipeline.io import atomic_dir, write_json
from pipeline.models import build
from pipeline.params import Params
from pipeline.progress import progress

from ._common import run
from .sd_train import _to_unit

METRICS = Path("metrics/canvas_generator.json")


def main(p: Params) -> None:
    c, f = p.canvas, p.canvas.finetune
    torch.manual_seed(p.seed)
    pipe = sd_mod.load(p.sd.pipeline)
    m = p.model
    bundle = build(m.name, m.pretrained, m.quick_gelu, "fp32", "cpu")
    sd_mod.check_text_encoder(pipe.text_encoder, bundle.model, atol=1e-6)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    canvas = canvas_data.load(p.data.unlearncanvas, c.styles, c.objects)
    data = canvas_data.grid_pairs(canvas, c.prompt, _to_unit(size), bundle.tokenizer)
    latents = encode_latents(pipe.vae, data.images) * pipe.vae.config.scaling_factor
    cfg = TinySDConfig(unet_steps=f.steps, unet_lr=f.lr, batch_size=f.batch_size,
                       cond_drop=p.sd.train.cond_drop, seed=p.seed + 17)
    start = time.time()
    hist = train_unet(pipe.unet, pipe.text_encoder, latents, data.tokens, cfg, progress)
    with atomic_dir(f.out) as tmp:
        pipe.save_pretrained(str(tmp))
    write_json(METRICS, {"canvas_images": len(data.images),
                         "skipped_corrupt_images": data.report.corrupt_images,
                         "steps": f.steps, "final_loss": hist[-1]["unet_loss"],
                         "time_s": round(time.time() - start, 1), "from": p.sd.pipeline,
                         "seed": p.seed})
    print(f"canvas_generator: UNet fine-tuned on {len(data.images)} canvas images, loss "
          f"{hist[-1]['unet_loss']:.4f}")


if __name__ == "__main__":
    run(main)
