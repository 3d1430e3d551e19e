"""open_clip's text tower <-> transformers' ``CLIPTextModel`` (what diffusers pipelines load).

SLUG's gradients, ranking and search stay in open_clip; a text-tower patch is *mapped* onto the
diffusion pipeline's text encoder by name. The two layouts differ in three ways:

* open_clip fuses attention in ``attn.in_proj_weight`` [3d, d]; transformers has ``q_proj``,
  ``k_proj``, ``v_proj`` ([d, d] each, in that order);
* ``mlp.c_fc``/``mlp.c_proj`` are ``mlp.fc1``/``mlp.fc2``; ``ln_1``/``ln_2``/``ln_final`` are
  ``layer_norm1``/``layer_norm2``/``final_layer_norm``;
* open_clip's ``text_projection`` is used as ``x @ P`` ([d, e]); transformers' is a bias-free
  ``nn.Linear`` with weight ``P.T``.

SD 1.5's text encoder is ViT-L-14/openai's text tower; SD 2.x uses ViT-H-14's *without its last
block* (``num_hidden_layers`` = 23 of 24). The mapping therefore takes the number of layers from
the target, and a patch on a block the target does not have is refused.
"""

from __future__ import annotations

import re

import torch

from ..errors import ModelError

_BLOCK = re.compile(r"^transformer\.resblocks\.(\d+)\.(.+)$")
_HF_BLOCK = re.compile(r"^text_model\.encoder\.layers\.(\d+)\.(.+)$")
_PARTS = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
          "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
_TOP = {"token_embedding.weight": "text_model.embeddings.token_embedding.weight",
        "positional_embedding": "text_model.embeddings.position_embedding.weight",
        "ln_final.weight": "text_model.final_layer_norm.weight",
        "ln_final.bias": "text_model.final_layer_norm.bias"}


def is_text_param(name: str) -> bool:
    return name in _TOP or name == "text_projection" or bool(_BLOCK.match(name))


def text_config(model, num_layers: int | None = None):
    """A ``CLIPTextConfig`` equal to ``model``'s text tower (optionally truncated)."""
    from transformers import CLIPTextConfig

    blocks = model.transformer.resblocks
    b0 = blocks[0]
    act = type(b0.mlp.gelu).__name__
    proj = model.text_projection
    if proj is None or isinstance(proj, torch.nn.Linear):
        raise ModelError("only open_clip text towers with a projection matrix can be mapped")
    if getattr(model, "text_pool_type", "argmax") != "argmax":
        raise ModelError(f"text pooling {model.text_pool_type!r} has no CLIPTextModel equivalent")
    return CLIPTextConfig(
        vocab_size=model.token_embedding.num_embeddings, hidden_size=model.transformer.width,
        intermediate_size=b0.mlp.c_fc.out_features, projection_dim=proj.shape[1],
        num_hidden_layers=num_layers or len(blocks), num_attention_heads=b0.attn.num_heads,
        max_position_embeddings=model.positional_embedding.shape[0],
        hidden_act="quick_gelu" if act == "QuickGELU" else "gelu",
        layer_norm_eps=model.ln_final.eps, pad_token_id=0, bos_token_id=49406,
        eos_token_id=49407)


def to_hf(name: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    """One open_clip text parameter as the transformers tensors it becomes."""
    if name in _TOP:
        return {_TOP[name]: value}
    if name == "text_projection":
        return {"text_projection.weight": value.T.contiguous()}
    m = _BLOCK.match(name)
    if not m:
        raise ModelError(f"{name} is not a text-tower parameter; a diffusion pipeline's text "
                         f"encoder cannot take it (rank the text tower only)")
    i, rest = m.groups()
    pre = f"text_model.encoder.layers.{i}."
    if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
        kind = "weight" if rest.endswith("weight") else "bias"
        q, k, v = value.chunk(3, dim=0)
        return {f"{pre}self_attn.{p}_proj.{kind}": t.contiguous()
                for p, t in zip("qkv", (q, k, v))}
    for oc, hf in _PARTS.items():
        if rest.startswith(oc + "."):
            return {pre + hf + rest[len(oc):]: value}
    raise ModelError(f"no CLIPTextModel name for {name}")


def from_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers text-encoder state dict (with or without the ``text_model.`` prefix) as
    open_clip text-tower parameters."""
    state = {(k if k.startswith(("text_model.", "text_projection")) else "text_model." + k): v
             for k, v in state.items()}
    inv_top = {v: k for k, v in _TOP.items()}
    inv_parts = {v: k for k, v in _PARTS.items()}
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for name, value in state.items():
        if name in inv_top:
            out[inv_top[name]] = value
        elif name == "text_projection.weight":
            out["text_projection"] = value.T.contiguous()
        elif name == "text_model.embeddings.position_ids":
            continue
        elif m := _HF_BLOCK.match(name):
            i, rest = m.groups()
            if am := re.match(r"self_attn\.([qkv])_proj\.(weight|bias)$", rest):
                qkv.setdefault((i, am.group(2)), {})[am.group(1)] = value
                continue
            for hf, oc in inv_parts.items():
                if rest.startswith(hf + "."):
                    out[f"transformer.resblocks.{i}.{oc}{rest[len(hf):]}"] = value
                    break
            else:
                raise ModelError(f"no open_clip name for {name}")
        else:
            raise ModelError(f"no open_clip name for {name}")
    for (i, kind), parts in qkv.items():
        out[f"transformer.resblocks.{i}.attn.in_proj_{kind}"] = torch.cat(
            [parts["q"], parts["k"], parts["v"]])
    return out


def _local(name: str, keys) -> str | None:
    """``name`` (checkpoint naming, ``text_model.`` prefix) as the module's own state-dict key:
    transformers 5's ``CLIPTextModel`` drops the prefix in memory and restores it on disk."""
    if name in keys:
        return name
    short = name.removeprefix("text_model.")
    return short if short in keys else None


def text_state(model) -> dict[str, torch.Tensor]:
    """The text tower's parameters in transformers naming."""
    out = {}
    for name, p in model.state_dict().items():
        if is_text_param(name):
            out.update(to_hf(name, p.detach()))
    return out


def to_clip_text_model(model, num_layers: int | None = None, projection: bool = False):
    """A transformers ``CLIPTextModel`` (or ``...WithProjection``) with ``model``'s text weights."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    cfg = text_config(model, num_layers)
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    hf = cls(cfg)
    keys = hf.state_dict().keys()
    keep = {}
    for name, value in text_state(model).items():
        if (local := _local(name, keys)) is not None:
            keep[local] = value
    missing = [k for k in keys if k not in keep and not k.endswith("position_ids")]
    if missing:
        raise ModelError(f"the open_clip text tower has no tensor for {missing[0]}")
    hf.load_state_dict(keep, strict=False)
    return hf.eval()


def map_patch(tensors: dict[str, torch.Tensor], encoder) -> dict[str, torch.Tensor]:
    """An open_clip patch as tensors of ``encoder`` (a ``CLIPTextModel``), checked by name and shape."""
    have = encoder.state_dict()
    out = {}
    for name, value in tensors.items():
        for hf_name, t in to_hf(name, value).items():
            local = _local(hf_name, have.keys())
            if local is None:
                raise ModelError(f"the patch edits {name}, which the text encoder does not have "
                                 f"({hf_name}; it has {encoder.config.num_hidden_layers} layers)")
            if have[local].shape != t.shape:
                raise ModelError(f"{name} -> {hf_name}: shape {tuple(t.shape)} != encoder's "
                                 f"{tuple(have[local].shape)}")
            out[local] = t
    return out


def maps_onto(name: str, encoder) -> bool:
    """Whether the open_clip text parameter ``name`` has a counterpart in ``encoder`` (a plain
    ``CLIPTextModel`` has no ``text_projection``; SD 2.x's lacks the last block)."""
    keys = encoder.state_dict().keys()
    try:
        targets = to_hf(name, torch.zeros(3, 3))
    except ModelError:
        return False
    return all(_local(k, keys) is not None for k in targets)


@torch.no_grad()
def apply_mapped(encoder, mapped: dict[str, torch.Tensor]) -> None:
    params = dict(encoder.named_parameters())
    for k, v in mapped.items():
        params[k].copy_(v.to(params[k].device, params[k].dtype))


@torch.no_grad()
def open_clip_hidden(model, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's text tower up to ``ln_final`` at every position: what ``CLIPTextModel``
    returns as ``last_hidden_state`` (and what a diffusion UNet attends to)."""
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast) + model.positional_embedding.to(cast)
    x = model.transformer(x, attn_mask=model.attn_mask)
    return model.ln_final(x)
