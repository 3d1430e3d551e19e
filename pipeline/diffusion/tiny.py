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
    """The ``sd.train`` params group and the seed (``latent_channels`` and ``kl_weight`` are fixed
    parts of the design, not params)."""
    image_size: int
    vae_channels: tuple
    unet_channels: tuple
    vae_steps: int
    unet_steps: int
    batch_size: int
    vae_lr: float
    unet_lr: float
    cond_drop: float
    seed: int
    latent_channels: int = 4
    kl_weight: float = 1e-6

    @classmethod
    def from_params(cls, t, seed: int) -> "TinySDConfig":
        return cls(image_size=t.image_size,
                   vae_channels=(t.vae_width, 2 * t.vae_width, 2 * t.vae_width),
                   unet_channels=(t.unet_width, 2 * t.unet_width), vae_steps=t.vae_steps,
                   unet_steps=t.unet_steps, batch_size=t.batch_size, vae_lr=t.vae_lr,
                   unet_lr=t.unet_lr, cond_drop=t.cond_drop, seed=seed)


def to_unit(size: int):
    """Image preprocessing for the VAE: RGB, ``size`` x ``size`` bicubic, values in [-1, 1]."""
    from PIL import Image

    def f(img) -> torch.Tensor:
        img = img.convert("RGB").resize((size, size), Image.BICUBIC)
        t = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
        return t.view(size, size, 3).permute(2, 0, 1).float() / 127.5 - 1.0
    return f


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


def assemble(vae, text_encoder, tokenizer, unet):
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    sched = DPMSolverMultistepScheduler.from_config(make_scheduler().config)
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   unet=unet, scheduler=sched, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)



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


@dataclass(frozen=True)
class UNetTraining:
    steps: int
    lr: float
    batch_size: int
    cond_drop: float
    seed: int


def train_unet(unet, text_encoder, latents: torch.Tensor, tokens: torch.Tensor,
               cfg: UNetTraining, progress=lambda x, **k: x) -> list[dict]:
    """Noise prediction on scaled latents; the caption is replaced by the empty prompt with
    probability ``cond_drop`` (see ``_empty_tokens``)."""
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    noise_sched = make_scheduler()
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine(s, cfg.steps))
    text_encoder.eval().requires_grad_(False)
    unet.train()
    history, t0, ema = [], time.time(), None
    for step in progress(range(cfg.steps), desc="UNet"):
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
        if step % 100 == 0 or step == cfg.steps - 1:
            history.append({"step": step, "unet_loss": ema, "elapsed_s": time.time() - t0})
    unet.eval()
    return history


def _empty_tokens(context: int) -> list[int]:
    """The empty prompt as CLIPTokenizer (and open_clip) encode it: BOS, EOS, zero padding."""
    return [49406, 49407] + [0] * (context - 2)


@dataclass
class Trained:
    pipe: object  # a diffusers StableDiffusionPipeline
    vae_history: list[dict]
    unet_history: list[dict]
    scaling_factor: float
    vae_s: float
    unet_s: float


def train_pipeline(clip_model, tokens_of, images: torch.Tensor, tokens: torch.Tensor,
                   captions: list[str], cfg: TinySDConfig, progress=lambda x, **k: x) -> Trained:
    """A tiny text-to-image pipeline on ``images`` (in [-1, 1]) with their caption ``tokens``:
    the text encoder is ``clip_model``'s text tower as a ``CLIPTextModel`` (frozen), the tokenizer
    a ``CLIPTokenizer`` checked to give ``tokens_of``'s (open_clip's) ids; the VAE is trained
    first, then the UNet on its scaled latents."""
    import tempfile
    from pathlib import Path

    from ..errors import ModelError
    from .text_encoder import to_clip_text_model
    from .tokenizer import build_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_tokenizer(Path(tmp) / "tokenizer", tokens.shape[1])
        probe = captions[:512]
        hf_ids = torch.tensor(tokenizer(probe, padding="max_length", truncation=True,
                                        max_length=tokens.shape[1]).input_ids)
        if not torch.equal(hf_ids, tokens_of(probe)):
            raise ModelError("the CLIPTokenizer built from open_clip's vocabulary gives other ids "
                             "than open_clip's tokenizer")
    text_encoder = to_clip_text_model(clip_model)
    vae = make_vae(cfg)
    t0 = time.time()
    vae_hist = train_vae(vae, images, cfg, progress)
    vae_s = time.time() - t0
    latents = encode_latents(vae, images)
    scale = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=scale)
    unet = make_unet(cfg, text_encoder.config.hidden_size)
    t0 = time.time()
    unet_hist = train_unet(unet, text_encoder, latents * scale, tokens, UNetTraining(
        cfg.unet_steps, cfg.unet_lr, cfg.batch_size, cfg.cond_drop, cfg.seed), progress)
    unet_s = time.time() - t0
    return Trained(assemble(vae, text_encoder, tokenizer, unet), vae_hist, unet_hist, scale,
                   vae_s, unet_s)
