"""Scoring one SLUG trial on the *search* data (never on the test data).

* forget: share of the forget-search images whose concept is among the top-k zero-shot
  predictions over all names of its kind;
* retain: the mean of (a) zero-shot top-1 on retain-validation images whose caption names exactly
  one *other* concept of the kind, and (b) image-to-caption recall@1 within the retain-validation
  pairs (which keeps objects, styles and everything else in view).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..datasets.pairs import PairData
from ..evaluate.cache import FeatureCache
from ..evaluate.zeroshot import topk_correct
from ..sets.match import ConceptMatcher
from .losses import paired_cosine


def caption_labels(captions: Sequence[str], names: Sequence[str]) -> torch.Tensor:
    """Index of the single class name a caption mentions, else -1."""
    matchers = [ConceptMatcher(n) for n in names]
    out = []
    for c in captions:
        hits = [i for i, m in enumerate(matchers) if m(c)]
        out.append(hits[0] if len(hits) == 1 else -1)
    return torch.tensor(out, dtype=torch.long)


class TrialScorer:
    def __init__(self, model, tokenizer, names: Sequence[str], templates: Sequence[str],
                 concept_index: int, forget: PairData, retain_val: PairData, topk: int = 1,
                 cached: bool = True):
        self.n_cls, self.n_tpl = len(names), len(templates)
        self.concept, self.topk = concept_index, topk
        labels = caption_labels(retain_val.captions, names)
        labels[labels == concept_index] = -1
        self.labels = labels
        texts = {"classes": tokenizer([t.format(n) for n in names for t in templates]),
                 "forget_captions": forget.tokens, "retain_captions": retain_val.tokens}
        images = {"forget": forget.images, "retain": retain_val.images}
        self.cache = FeatureCache(model, images, texts, cached=cached)

    def prepare(self, layer: str) -> None:
        self.cache.prepare(layer)

    def score(self) -> tuple[float, float, dict]:
        f = self.cache.features()
        clf = F.normalize(f["classes"].view(self.n_cls, self.n_tpl, -1).mean(1), dim=-1)
        fl = f["forget"] @ clf.T
        target = torch.full((len(fl),), self.concept, dtype=torch.long)
        forget = float(topk_correct(fl, target, self.topk).float().mean())
        named = self.labels >= 0
        parts = {}
        if named.any():
            pred = (f["retain"][named] @ clf.T).argmax(1)
            parts["retain_named_top1"] = float((pred == self.labels[named]).float().mean())
        sims = f["retain"] @ f["retain_captions"].T
        parts["retain_recall1"] = float((sims.argmax(1) == torch.arange(len(sims))).float().mean())
        parts["forget_cosine"] = float(paired_cosine(f["forget"], f["forget_captions"]).mean())
        retain = sum(v for k, v in parts.items() if k.startswith("retain")) / \
            sum(k.startswith("retain") for k in parts)
        return forget, retain, parts
