"""Where a parameter sits in an open_clip CLIP (its tower, its depth in that tower), and the hash
that identifies a model's weights."""

from __future__ import annotations

import hashlib
import re

import torch

_BLOCK = re.compile(r"resblocks\.(\d+)\.")
EMBEDDING = -1.0  # before the first block
HEAD = 1e6  # after the last block


def tower(name: str) -> str:
    return "vision" if name.startswith("visual.") or ".visual." in name else "text"


def depth(name: str) -> float:
    """Position in its tower: embeddings first, then blocks in order, then the head."""
    m = _BLOCK.search(name)
    if m:
        return float(m.group(1))
    if any(k in name for k in ("conv1", "token_embedding", "class_embedding", "positional")):
        return EMBEDDING
    return HEAD  # proj, text_projection, ln_post, ln_final


def state_dict_hash(model: torch.nn.Module) -> str:
    """SHA-256 over parameter names, shapes, dtypes and bytes: identifies a base model exactly."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
