"""Stage canvas_generator (embedded default only): the tiny text-to-image model of sd_train,
its UNet fine-tuned on the canvas grid with the benchmark prompts, as UnlearnCanvas fine-tuned
SD 1.5 on its images. The text encoder and VAE stay as they are (SLUG edits the encoder)."""

from __future__ import annotations

import time

import torch

from pipeline.canvas import data as canvas_data
from pipeline.diffusion import sd as sd_mod
from pipeline.diffusion.tiny import UNetTraining, encode_latents, to_unit, train_unet
from pipeline.entry import metrics_path, run
from pipeline.io import atomic_dir, write_json
from pipeline.models.factory import from_params
from pipeline.params import Params
from pipeline.progress import progress


def main(p: Params) -> None:
    c, f = p.canvas, p.canvas.finetune
    torch.manual_seed(p.seed)
    pipe = sd_mod.load(p.sd.train.out)
    bundle = from_params(p.model, "cpu", "fp32")
    sd_mod.check_text_encoder(pipe.text_encoder, bundle.model, atol=1e-6)
    canvas = canvas_data.load(p.data.unlearncanvas, c.styles, c.objects)
    data = canvas_data.grid_pairs(canvas, c.prompt, to_unit(sd_mod.image_size(pipe)),
                                  bundle.tokenizer)
    latents = encode_latents(pipe.vae, data.images) * pipe.vae.config.scaling_factor
    start = time.time()
    hist = train_unet(pipe.unet, pipe.text_encoder, latents, data.tokens, UNetTraining(
        f.steps, f.lr, f.batch_size, p.sd.train.cond_drop, p.seed + 17), progress)
    with atomic_dir(f.out) as tmp:
        pipe.save_pretrained(str(tmp))
    write_json(metrics_path("canvas_generator"), {
        "canvas_images": len(data.images), "skipped_corrupt_images": data.report.corrupt_images,
        "steps": f.steps, "final_loss": hist[-1]["unet_loss"],
        "time_s": round(time.time() - start, 1), "from": p.sd.train.out, "seed": p.seed})
    print(f"canvas_generator: UNet fine-tuned on {len(data.images)} canvas images, loss "
          f"{hist[-1]['unet_loss']:.4f}")


if __name__ == "__main__":
    run(main, embedded=True)
