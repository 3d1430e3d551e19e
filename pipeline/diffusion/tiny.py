"""A tiny Stable-Diffusion-shaped model, trained inside the pipeline on the tiny world.

Parts, all standard diffusers/transformers classes so that ``StableDiffusionPipeline
.from_pretrained(folder)`` loads the result offline:

* text encoder: the tiny CLIP's text tower converted to ``CLIPTextModel`` (frozen, as in SD);
* tokenizer: ``CLIPTokenizer`` from open_clip's BPE vocabulary (same ids);
* VAE: a small ``AutoencoderKL`` (32 px -> 8x8x4 latents), trained first;
* UNet: a small ``UNet2DConditionModel`` on those latents, trained with the DDPM noise-prediction
  loss, the caption dropped 10 % of the time for classifier-free guidance.

Latent rather than pixel space, from measurements: the 8x8x4 latent UNet trains several times
faster per step than a 32x32x3 pixel UNet of the same width, and SD's pipeline needs a VAE anyway.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import NumericalError


@dataclass
class TinySDConfig:
    image_size: int = 32
    vae_channels: tuple = (16, 32, 32)
    latent_channels: int = 4
    unet_channels: tuple = (32, 64)
    vae_steps: int = 800
    unet_steps: int = 2500
    batch_size: int = 32
    vae_lr: float = 2e-3
    unet_lr: float = 1e-3
    kl_weight: float = 1e-6
    cond_drop: float = 0.1
    seed: int = 0


def make_vae(cfg: TinySDConfig):
    from diffusers import AutoencoderKL

    n = len(cfg.vae_channels)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n,
                         block_out_channels=tuple(cfg.vae_channels), layers_per_block=1,
                         latent_channels=cfg.latent_channels, norm_num_groups=8,
                         sample_size=cfg.image_size)


def make_unet(cfg: TinySDConfig, cross_attention_dim: int):
    from diffusers import UNet2DConditionModel

    latent = cfg.image_size // 2 ** (len(cfg.vae_channels) - 1)
    return UNet2DConditionModel(
        sample_size=latent, in_channels=cfg.latent_channels, out_channels=cfg.latent_channels,
        layers_per_block=1, block_out_channels=tuple(cfg.unet_channels),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=8, norm_num_groups=8)


def make_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear",
                         beta_start=0.00085, beta_end=0.012, clip_sample=False,
                         steps_offset=1)


def _cosine(step: int, total: int, warmup: int = 50) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _check(loss: torch.Tensor, what: str, step: int) -> None:
    if not torch.isfinite(loss):
        raise NumericalError(f"the {what} loss became non-finite at step {step}")


def train_vae(vae, images: torch.Tensor, cfg: TinySDConfig, progress=lambda x, **k: x
              ) -> list[dict]:
    """Reconstruction (MSE) plus a small KL term; ``images`` in [-1, 1]."""
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine(s, cfg.vae_steps))
    vae.train()
    history = []
    for step in progress(range(cfg.vae_steps), desc="VAE"):
        idx = torch.randint(len(images), (cfg.batch_size,), generator=gen)
        x = images[idx]
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        mse = F.mse_loss(rec, x)
        kl = post.kl().mean() / x[0].numel()
        loss = mse + cfg.kl_weight * kl
        _check(loss, "VAE", step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == cfg.vae_steps - 1:
            history.append({"step": step, "vae_mse": float(mse.detach())})
    vae.eval()
    return history


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Posterior means (deterministic), unscaled."""
    return torch.cat([vae.encode(images[i:i + batch_size]).latent_dist.mean
                      for i in range(0, len(images), batch_size)])


def train_unet(unet, text_encoder, latents: torch.Tensor, tokens: torch.Tensor,
               cfg: TinySDConfig, progress=lambda x, **k: x) -> list[dict]:
    """Noise prediction on scaled latents; the caption is replaced by the empty prompt with
    probability ``cond_drop`` (its tokens are ``tokens[-1]``'s convention: see ``empty``)."""
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    noise_sched = make_scheduler()
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.unet_lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine(s, cfg.unet_steps))
    text_encoder.eval().requires_grad_(False)
    unet.train()
    history, t0, ema = [], time.time(), None
    for step in progress(range(cfg.unet_steps), desc="UNet"):
        idx = torch.randint(len(latents), (cfg.batch_size,), generator=gen)
        z0 = latents[idx]
        tok = tokens[idx].clone()
        drop = torch.rand(len(idx), generator=gen) < cfg.cond_drop
        tok[drop] = tokens.new_tensor(_empty_tokens(tokens.shape[1]))
        with torch.no_grad():
            ctx = text_encoder(tok).last_hidden_state
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (len(idx),), generator=gen)
        zt = noise_sched.add_noise(z0, noise, t)
        loss = F.mse_loss(unet(zt, t, encoder_hidden_states=ctx).sample, noise)
        _check(loss, "UNet", step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        ema = float(loss.detach()) if ema is None else 0.98 * ema + 0.02 * float(loss.detach())
        if step % 100 == 0 or step == cfg.unet_steps - 1:
            history.append({"step": step, "unet_loss": ema, "elapsed_s": time.time() - t0})
    unet.eval()
    return history


def _empty_tokens(context: int) -> list[int]:
    """The empty prompt as CLIPTokenizer (and open_clip) encode it: BOS, EOS, zero padding."""
    return [49406, 49407] + [0] * (context - 2)
