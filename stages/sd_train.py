"""Stage sd_train (embedded default only): a tiny text-to-image model on the tiny world's shards,
conditioned on the tiny CLIP's text tower, saved as a standard diffusers pipeline folder. It also
learns the UnlearnCanvas grid, each image captioned with its benchmark prompt, as UnlearnCanvas's
SD 1.5 was fine-tuned on it."""

from __future__ import annotations

import csv
import io
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from pipeline.canvas import data as canvas_data
from pipeline.datasets.pairs import PairData, load_pairs
from pipeline.datasets.shards import list_shards
from pipeline.diffusion import sd as sd_mod
from pipeline.diffusion.text_encoder import to_clip_text_model
from pipeline.diffusion.tiny import (
    TinySDConfig,
    encode_latents,
    make_unet,
    make_vae,
    train_unet,
    train_vae,
)
from pipeline.diffusion.tokenizer import build_tokenizer
from pipeline.errors import ModelError
from pipeline.io import atomic_dir, write_json, write_text
from pipeline.models import build, state_dict_hash
from pipeline.params import Params
from pipeline.progress import progress

from ._common import run

METRICS = Path("metrics/sd_train.json")
HISTORY = Path("plots/sd_train/history.csv")


def _to_unit(size: int):
    def f(img: Image.Image) -> torch.Tensor:
        img = img.convert("RGB").resize((size, size), Image.BICUBIC)
        t = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
        return t.view(size, size, 3).permute(2, 0, 1).float() / 127.5 - 1.0
    return f


def main(p: Params) -> None:
    t = p.sd.train
    torch.manual_seed(p.seed)
    m = p.model
    bundle = build(m.name, m.pretrained, m.quick_gelu, "fp32", "cpu")
    cfg = TinySDConfig(image_size=t.image_size, vae_channels=(t.vae_width, 2 * t.vae_width,
                                                               2 * t.vae_width),
                       unet_channels=(t.unet_width, 2 * t.unet_width), vae_steps=t.vae_steps,
                       unet_steps=t.unet_steps, batch_size=t.batch_size, vae_lr=t.vae_lr,
                       unet_lr=t.unet_lr, cond_drop=t.cond_drop, seed=p.seed)
    start = time.time()
    shards = load_pairs(list_shards(p.data.shards), _to_unit(t.image_size), bundle.tokenizer)
    canvas = canvas_data.grid_pairs(
        canvas_data.load(p.data.unlearncanvas, p.canvas.styles, p.canvas.objects),
        p.canvas.prompt, _to_unit(t.image_size), bundle.tokenizer)
    data = PairData(torch.cat([shards.images, canvas.images]),
                    torch.cat([shards.tokens, canvas.tokens]), shards.captions + canvas.captions,
                    shards.report)
    data.report.add(canvas.report)
    load_s = time.time() - start
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_tokenizer(Path(tmp) / "tokenizer", data.tokens.shape[1])
        probe = data.captions[:512]
        hf_ids = torch.tensor(tokenizer(probe, padding="max_length", truncation=True,
                                        max_length=data.tokens.shape[1]).input_ids)
        if not torch.equal(hf_ids, bundle.tokenizer(probe)):
            raise ModelError("the CLIPTokenizer built from open_clip's vocabulary gives other ids "
                             "than open_clip's tokenizer")
    text_encoder = to_clip_text_model(bundle.model)

    vae = make_vae(cfg)
    t0 = time.time()
    vae_hist = train_vae(vae, data.images, cfg, progress)
    vae_s = time.time() - t0
    latents = encode_latents(vae, data.images)
    scale = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=scale)
    unet = make_unet(cfg, text_encoder.config.hidden_size)
    t0 = time.time()
    unet_hist = train_unet(unet, text_encoder, latents * scale, data.tokens, cfg, progress)
    unet_s = time.time() - t0

    pipe = sd_mod.assemble(vae, text_encoder, tokenizer, unet)
    with atomic_dir(t.out) as tmp:  # never a half-written pipeline folder
        pipe.save_pretrained(str(tmp))

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["step", "unet_loss", "elapsed_s"])
    w.writeheader()
    w.writerows(unet_hist)
    write_text(HISTORY, buf.getvalue())
    write_json(METRICS, {
        "samples": len(data.images), "canvas_samples": len(canvas.images), "corrupt_images_skipped": data.report.corrupt_images,
        "vae": {"params": sum(x.numel() for x in vae.parameters()), "final_mse":
                vae_hist[-1]["vae_mse"], "scaling_factor": scale, "time_s": round(vae_s, 1)},
        "unet": {"params": sum(x.numel() for x in unet.parameters()),
                 "final_loss": unet_hist[-1]["unet_loss"], "time_s": round(unet_s, 1)},
        "load_s": round(load_s, 1), "text_encoder_from": bundle.describe(),
        "clip_sha256": state_dict_hash(bundle.model), "seed": p.seed,
    })
    print(f"sd_train: {len(data.images)} images; VAE mse {vae_hist[-1]['vae_mse']:.4f} "
          f"({vae_s:.0f}s), UNet loss {unet_hist[-1]['unet_loss']:.4f} ({unet_s:.0f}s)")


if __name__ == "__main__":
    run(main)
