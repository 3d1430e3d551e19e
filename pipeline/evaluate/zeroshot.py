"""Zero-shot classification: text classifiers from class names x templates, top-k accuracy.

Image embeddings and text classifiers are computed once and passed around as tensors, so a caller
that changes only one tower can reuse the other tower's side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..datasets.shards import decode_image
from ..errors import DataError


def load_images(paths: Sequence[Path], preprocess: Callable) -> torch.Tensor:
    """Decode and preprocess image files into one batch tensor (corrupt files are an error here:
    evaluation sets are curated, a broken one must not silently shrink a metric)."""
    out = []
    for p in paths:
        try:
            img = decode_image(Path(p).read_bytes())
        except Exception as exc:
            raise DataError(f"evaluation image {p} cannot be decoded ({exc})") from None
        out.append(preprocess(img))
    if not out:
        raise DataError("no evaluation images")
    return torch.stack(out)


@torch.no_grad()
def encode_images(model, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    device = next(model.parameters()).device
    feats = [model.encode_image(images[i:i + batch_size].to(device), normalize=True).float()
             for i in range(0, len(images), batch_size)]
    return torch.cat(feats)


@torch.no_grad()
def encode_texts(model, tokenizer, texts: Sequence[str], batch_size: int = 1024) -> torch.Tensor:
    device = next(model.parameters()).device
    feats = [model.encode_text(tokenizer(list(texts[i:i + batch_size])).to(device),
                               normalize=True).float()
             for i in range(0, len(texts), batch_size)]
    return torch.cat(feats)


@torch.no_grad()
def text_classifier(model, tokenizer, classnames: Sequence[str], templates: Sequence[str]
                    ) -> torch.Tensor:
    """[classes, dim]: per class, the normalised mean of its normalised template embeddings."""
    if not classnames or not templates:
        raise DataError("a zero-shot classifier needs at least one class name and one template")
    texts = [t.format(c) for c in classnames for t in templates]
    emb = encode_texts(model, tokenizer, texts).view(len(classnames), len(templates), -1)
    return F.normalize(emb.mean(dim=1), dim=-1)


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean per row: is the target among the k highest logits."""
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == targets[:, None]).any(dim=1)


def accuracy(image_features: torch.Tensor, classifier: torch.Tensor, targets: torch.Tensor,
             ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    logits = image_features @ classifier.T
    return {f"top{k}": float(topk_correct(logits, targets, k).float().mean()) for k in ks}


def per_class_accuracy(image_features, classifier, targets, k: int = 1) -> torch.Tensor:
    """Accuracy of each class separately (macro averages exclude or include what they must)."""
    hit = topk_correct(image_features @ classifier.T, targets, k).float()
    n = classifier.shape[0]
    counts = torch.bincount(targets, minlength=n).float()
    sums = torch.bincount(targets, weights=hit, minlength=n)
    return torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, float("nan")))
