"""The two losses of SLUG.

* forget: ``L_f = mean(1 - cos(v_i, t_i))`` over matched forget pairs (no negatives, no
  temperature). Its gradient is what SLUG stores; the update ``theta + lambda * grad L_f`` with
  ``lambda > 0`` is *ascent* on ``L_f``: the forget pairs' cosine falls.
* retain: the symmetric CLIP contrastive loss on retain pairs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def forget_loss(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """mean(1 - cos) over rows; inputs need not be normalised."""
    return (1.0 - F.cosine_similarity(image_features, text_features, dim=-1)).mean()


def retain_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor) -> torch.Tensor:
    """0.5 * (CE(image->text) + CE(text->image)) with the diagonal as labels."""
    v = F.normalize(image_features, dim=-1)
    t = F.normalize(text_features, dim=-1)
    logits = logit_scale * v @ t.T
    labels = torch.arange(len(v), device=v.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def paired_cosine(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(image_features, text_features, dim=-1)
