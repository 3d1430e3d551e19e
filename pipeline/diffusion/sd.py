"""Diffusers pipelines: load offline, check the text encoder against the CLIP model, generate with
fixed seeds (the tiny pipeline is assembled and trained in ``tiny``)."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from ..errors import ModelError, not_weights_only
from . import text_encoder as hf_text


def load(name_or_folder: str, device: str | torch.device = "cpu"):
    """A ``StableDiffusionPipeline`` from a local folder (or a model id already in the HF cache)."""
    from diffusers import StableDiffusionPipeline

    path = Path(name_or_folder)
    if name_or_folder.startswith((".", "/")) or path.exists():
        if not (path / "model_index.json").exists():
            raise ModelError(f"{path} is not a diffusers pipeline folder (no model_index.json)")
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            name_or_folder, safety_checker=None, requires_safety_checker=False,
            local_files_only=True)
    except pickle.UnpicklingError:
        raise not_weights_only(name_or_folder) from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the diffusion pipeline {name_or_folder!r}: "
                         f"{str(exc).splitlines()[0]}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def image_size(pipe) -> int:
    """The pipeline's native image side in pixels."""
    return pipe.unet.config.sample_size * pipe.vae_scale_factor


def check_text_encoder(encoder, clip_model, atol: float = 0.0) -> None:
    """Refuse a pipeline whose text encoder is not ``clip_model``'s text tower (the layers it has)."""
    want = {k.removeprefix("text_model."): v for k, v in hf_text.text_state(clip_model).items()}
    have = encoder.state_dict()
    for name, t in have.items():
        name = name.removeprefix("text_model.")
        if name.endswith("position_ids") or name not in want:
            continue
        if t.shape != want[name].shape or not torch.allclose(t.float().cpu(),
                                                             want[name].float(), atol=atol):
            raise ModelError(f"the pipeline's text encoder differs from the CLIP model's text "
                             f"tower at {name}; SLUG's patch is only valid for the encoder it was "
                             f"computed on (check model.* and sd.pipeline)")


@torch.no_grad()
def generate(pipe, prompts: list[str], per_prompt: int, seed: int, steps: int, guidance: float,
             size: int, batch: int = 64) -> torch.Tensor:
    """``[len(prompts) * per_prompt, 3, size, size]`` images in [0, 1]; image ``j`` of prompt
    ``i`` always uses seed ``seed + 1000 * i + j``, whatever the batching."""
    jobs = [(p, seed + 1000 * i + j) for i, p in enumerate(prompts) for j in range(per_prompt)]
    out = []
    for s in range(0, len(jobs), batch):
        chunk = jobs[s:s + batch]
        gens = [torch.Generator().manual_seed(sd) for _, sd in chunk]
        res = pipe([p for p, _ in chunk], generator=gens, num_inference_steps=steps,
                   guidance_scale=guidance, height=size, width=size, output_type="pt")
        out.append(res.images.float().cpu())
    return torch.cat(out)


def generate_chunks(pipe, prompts: list[str], per_prompt: int, seed: int, steps: int,
                    guidance: float, size: int, chunk: int = 256):
    """``(first prompt index, images)`` chunk by chunk, about ``chunk`` images each, so that a
    caller can judge and drop them as they come; the seeds are those of one ``generate`` call."""
    per_chunk = max(1, chunk // per_prompt)
    for start in range(0, len(prompts), per_chunk):
        yield start, generate(pipe, prompts[start:start + per_chunk], per_prompt,
                              seed + 1000 * start, steps, guidance, size)
