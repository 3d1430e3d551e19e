"""Image-text pairs decoded into memory: images preprocessed, captions tokenised, keys kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ..errors import DataError
from ..progress import progress
from .shards import ReadReport, Shard, iter_samples


@dataclass
class PairData:
    images: torch.Tensor  # [N, 3, H, W], preprocessed
    tokens: torch.Tensor  # [N, context]
    captions: list[str]
    report: ReadReport
    keys: list[str] = field(default_factory=list)


def load_pairs(shards: Sequence[Shard], preprocess: Callable, tokenizer: Callable,
               only: set[str] | None = None) -> PairData:
    report = ReadReport()
    images, captions, keys = [], [], []
    for key, img, caption in progress(iter_samples(shards, report, keys=only), desc="reading"):
        images.append(preprocess(img))
        captions.append(caption)
        keys.append(key)
    if not images:
        raise DataError(f"no usable samples in {len(shards)} shard(s)")
    return PairData(torch.stack(images), tokenizer(captions), captions, report, keys)


def concat(*parts: PairData) -> PairData:
    """One set from several, in order; the reports are summed."""
    report = ReadReport()
    for d in parts:
        report.add(d.report)
    return PairData(torch.cat([d.images for d in parts]), torch.cat([d.tokens for d in parts]),
                    [c for d in parts for c in d.captions], report,
                    [k for d in parts for k in d.keys])
