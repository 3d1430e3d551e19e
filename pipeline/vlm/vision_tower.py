"""open_clip's vision tower <-> transformers' ``CLIPVisionModel`` (what a LLaVA's vision tower is).

SLUG's gradients, ranking and search stay in open_clip; a vision-tower patch is *mapped* onto the
VLM's vision tower by name, as a text-tower patch is mapped onto a diffusion pipeline's text
encoder (``pipeline.diffusion.text_encoder``, whose block mapping this module reuses: a residual
block is named the same way in both towers of both libraries). The vision tower adds:

* ``conv1`` (no bias) is ``embeddings.patch_embedding``; ``class_embedding`` and
  ``positional_embedding`` are ``embeddings.class_embedding`` and
  ``embeddings.position_embedding.weight``; ``ln_pre``/``ln_post`` are ``pre_layrnorm`` (sic)
  and ``post_layernorm``;
* ``proj`` is used as ``x @ P``; transformers' ``visual_projection`` is a bias-free ``nn.Linear``
  with weight ``P.T`` (``CLIPVisionModelWithProjection`` only: a LLaVA has no projection).

Names are given with the ``vision_model.`` prefix, as the checkpoints store them; a module in
memory (transformers 5 drops the prefix, a LLaVA holds the tower as ``model.vision_tower``) is
matched with or without it.

**What a VLM reads.** LLaVA takes ``hidden_states[vision_feature_layer]`` of the tower: index 0
is the embeddings after ``pre_layrnorm``, index ``i`` the output of block ``i - 1``. With ``L``
blocks and feature layer ``f < 0`` it reads blocks ``0 .. L + f - 1`` and the embeddings; the
blocks after them, ``ln_post`` and ``proj`` never reach the language model, so a patch on them
would change nothing it says (LLaVA-1.5: ``f = -2``, the last block unread).
"""

from __future__ import annotations

import re

import torch

from ..diffusion import text_encoder
from ..errors import ModelError

PREFIX = "vision_model."
_BLOCK = re.compile(r"^visual\.(transformer\.resblocks\.(\d+)\..+)$")
_TOP = {"visual.conv1.weight": "embeddings.patch_embedding.weight",
        "visual.class_embedding": "embeddings.class_embedding",
        "visual.positional_embedding": "embeddings.position_embedding.weight",
        "visual.ln_pre.weight": "pre_layrnorm.weight",
        "visual.ln_pre.bias": "pre_layrnorm.bias",
        "visual.ln_post.weight": "post_layernorm.weight",
        "visual.ln_post.bias": "post_layernorm.bias"}
_HEAD = {"visual.ln_post.weight", "visual.ln_post.bias", "visual.proj"}


def is_vision_param(name: str) -> bool:
    return name in _TOP or name == "visual.proj" or bool(_BLOCK.match(name))


def vision_config(model):
    """A ``CLIPVisionConfig`` equal to ``model``'s vision tower, or a ModelError naming what
    transformers' CLIP vision tower cannot express."""
    from transformers import CLIPVisionConfig

    v = model.visual
    if type(v).__name__ != "VisionTransformer":
        raise ModelError(f"only open_clip ViT vision towers can be mapped (this is "
                         f"{type(v).__name__})")
    unsupported = {"pool_type": v.pool_type != "tok", "attn_pool": v.attn_pool is not None,
                   "final_ln_after_pool": v.final_ln_after_pool,
                   "conv1 bias": v.conv1.bias is not None,
                   "proj": not isinstance(v.proj, torch.nn.Parameter)}
    bad = [k for k, is_bad in unsupported.items() if is_bad]
    if bad:
        raise ModelError(f"the open_clip vision tower has {', '.join(bad)}, which "
                         f"CLIPVisionModel has no equivalent for")
    b0 = v.transformer.resblocks[0]
    size = v.image_size[0] if isinstance(v.image_size, (tuple, list)) else v.image_size
    patch = v.patch_size[0] if isinstance(v.patch_size, (tuple, list)) else v.patch_size
    return CLIPVisionConfig(
        hidden_size=v.transformer.width, intermediate_size=b0.mlp.c_fc.out_features,
        projection_dim=v.proj.shape[1], num_hidden_layers=len(v.transformer.resblocks),
        num_attention_heads=b0.attn.num_heads, num_channels=3, image_size=int(size),
        patch_size=int(patch),
        hidden_act="quick_gelu" if type(b0.mlp.gelu).__name__ == "QuickGELU" else "gelu",
        layer_norm_eps=v.ln_pre.eps)


def to_hf(name: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    """One open_clip vision parameter as the transformers tensors it becomes."""
    if name in _TOP:
        return {PREFIX + _TOP[name]: value}
    if name == "visual.proj":
        return {"visual_projection.weight": value.T.contiguous()}
    m = _BLOCK.match(name)
    if not m:
        raise ModelError(f"{name} is not a vision-tower parameter; a VLM's vision tower cannot "
                         f"take it (rank the vision tower only)")
    return {PREFIX + k.removeprefix("text_model."): t
            for k, t in text_encoder.to_hf(m.group(1), value).items()}


def from_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers vision-tower state dict (with or without the ``vision_model.`` prefix) as
    open_clip vision parameters."""
    inv_top = {PREFIX + v: k for k, v in _TOP.items()}
    out: dict[str, torch.Tensor] = {}
    blocks: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        full = name if name.startswith((PREFIX, "visual_projection")) else PREFIX + name
        if full in inv_top:
            out[inv_top[full]] = value
        elif full == "visual_projection.weight":
            out["visual.proj"] = value.T.contiguous()
        elif full == PREFIX + "embeddings.position_ids":
            continue
        elif full.startswith(PREFIX + "encoder.layers."):
            blocks["text_model." + full.removeprefix(PREFIX)] = value
        else:
            raise ModelError(f"no open_clip name for {name}")
    out.update({"visual." + k: v for k, v in text_encoder.from_hf(blocks).items()})
    return out


def local_key(name: str, keys) -> str | None:
    """``name`` (checkpoint naming) as a module's own state-dict key, with or without the
    prefix."""
    if name in keys:
        return name
    short = name.removeprefix(PREFIX)
    return short if short in keys else None


def vision_state(model) -> dict[str, torch.Tensor]:
    """The vision tower's parameters in transformers naming."""
    out = {}
    for name, p in model.state_dict().items():
        if is_vision_param(name):
            out.update(to_hf(name, p.detach()))
    return out


def to_clip_vision_model(model, projection: bool = False):
    """A transformers ``CLIPVisionModel`` (or ``...WithProjection``) with ``model``'s vision
    weights."""
    from transformers import CLIPVisionModel, CLIPVisionModelWithProjection

    cls = CLIPVisionModelWithProjection if projection else CLIPVisionModel
    hf = cls(vision_config(model))
    keys = hf.state_dict().keys()
    keep = {}
    for name, value in vision_state(model).items():
        if (local := local_key(name, keys)) is not None:
            keep[local] = value
    missing = [k for k in keys if k not in keep and not k.endswith("position_ids")]
    if missing:
        raise ModelError(f"the open_clip vision tower has no tensor for {missing[0]}")
    hf.load_state_dict(keep, strict=False)
    return hf.eval()


def read_blocks(num_layers: int, feature_layer: int) -> int:
    """How many blocks a VLM reading ``hidden_states[feature_layer]`` runs (see the module
    docstring)."""
    index = feature_layer if feature_layer >= 0 else num_layers + 1 + feature_layer
    if not 0 <= index <= num_layers:
        raise ModelError(f"vision_feature_layer {feature_layer} does not exist in a tower of "
                         f"{num_layers} blocks (allowed: {-num_layers - 1} .. {num_layers})")
    return index


def is_read(name: str, num_layers: int, feature_layer: int) -> bool:
    """Whether the open_clip vision parameter ``name`` reaches the VLM's language model."""
    if not is_vision_param(name) or name in _HEAD:
        return False
    m = _BLOCK.match(name)
    return m is None or int(m.group(2)) < read_blocks(num_layers, feature_layer)


def check_read(names, num_layers: int, feature_layer: int) -> None:
    """Refuse a patch on a layer the VLM never reads: it would change nothing it says."""
    for name in names:
        if not is_read(name, num_layers, feature_layer):
            n = read_blocks(num_layers, feature_layer)
            raise ModelError(f"the VLM does not read {name}: with vision_feature_layer "
                             f"{feature_layer} it reads the embeddings and blocks 0..{n - 1} "
                             f"of {num_layers}, never ln_post or proj; rank the readable "
                             f"vision layers only")


def map_patch(tensors: dict[str, torch.Tensor], tower) -> dict[str, torch.Tensor]:
    """An open_clip patch as tensors of ``tower`` (a ``CLIPVisionModel``), checked by name and
    shape."""
    have = tower.state_dict()
    out = {}
    for name, value in tensors.items():
        for hf_name, t in to_hf(name, value).items():
            local = local_key(hf_name, have.keys())
            if local is None:
                raise ModelError(f"the patch edits {name}, which the vision tower does not "
                                 f"have ({hf_name}; it has {tower.config.num_hidden_layers} "
                                 f"layers)")
            if have[local].shape != t.shape:
                raise ModelError(f"{name} -> {hf_name}: shape {tuple(t.shape)} != the tower's "
                                 f"{tuple(have[local].shape)}")
            out[local] = t
    return out


@torch.no_grad()
def open_clip_hidden_states(model, images: torch.Tensor) -> list[torch.Tensor]:
    """open_clip's vision tower as transformers reports ``hidden_states``: the embeddings after
    ``ln_pre``, then every block's output (batch first)."""
    v = model.visual
    x = v.conv1(images.to(v.conv1.weight.dtype))
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
    x = v.ln_pre(x)
    states = [x]
    for block in v.transformer.resblocks:
        x = block(x)
        states.append(x)
    return states


def image_processor(preprocess_cfg: dict):
    """A ``CLIPImageProcessor`` doing what open_clip's eval preprocessing does (shortest-side
    resize, centre crop, mean/std), from the model's ``visual.preprocess_cfg``."""
    from PIL import Image
    from transformers import CLIPImageProcessorPil

    size = preprocess_cfg["size"]
    h, w = (size, size) if isinstance(size, int) else size
    if preprocess_cfg.get("resize_mode", "shortest") != "shortest" or h != w:
        raise ModelError(f"only a square, shortest-side resize maps onto CLIPImageProcessor "
                         f"(this model: {preprocess_cfg.get('resize_mode')}, {h}x{w})")
    resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}.get(
        preprocess_cfg.get("interpolation", "bicubic"))
    if resample is None:
        raise ModelError(f"interpolation {preprocess_cfg['interpolation']!r} has no PIL equivalent")
    return CLIPImageProcessorPil(
        do_resize=True, size={"shortest_edge": h}, resample=resample, do_center_crop=True,
        crop_size={"height": h, "width": w}, do_rescale=True, rescale_factor=1 / 255,
        do_normalize=True, image_mean=list(preprocess_cfg["mean"]),
        image_std=list(preprocess_cfg["std"]), do_convert_rgb=True)


def check_vision_tower(tower, clip_model, atol: float = 0.0) -> None:
    """Refuse a VLM whose vision tower is not ``clip_model``'s (every tensor the tower has,
    compared numerically): SLUG's patch is only valid on the weights it was computed on."""
    want = {k.removeprefix(PREFIX): v for k, v in vision_state(clip_model).items()}
    for name, t in tower.state_dict().items():
        name = name.removeprefix(PREFIX)
        if name.endswith("position_ids"):
            continue
        ok = name in want and t.shape == want[name].shape and torch.allclose(
            t.float().cpu(), want[name].float().cpu(), atol=atol)
        if not ok:
            raise ModelError(f"the VLM's vision tower differs from the CLIP model's vision tower "
                             f"at {name}; SLUG's patch is only valid for the tower it was "
                             f"computed on (check model.* and the VLM folder)")
