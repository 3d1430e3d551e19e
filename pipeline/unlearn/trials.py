"""Scoring one SLUG trial on the *search* data (never on the test data).

* forget: share of the forget-search images whose concept is among the top-k zero-shot
  predictions over all names of its kind;
* retain: the mean of (a) zero-shot top-1 on retain-validation images whose caption names one
  concept of a kind (identities, characters, objects, styles: every kind, so that forgetting a
  character cannot silently damage identities), averaged over kinds, the target excluded; and
  (b) image-to-caption recall@1 within the retain-validation pairs.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..concept import Concept
from ..datasets.pairs import PairData
from ..evaluate.zeroshot import topk_correct
from ..sets.match import ConceptMatcher
from .features import FeatureCache
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
    """A ``Scorer`` (``pipeline.unlearn.slug``) on the search data. ``kinds`` maps a kind to
    ``(class names, templates)``; the target is ``kinds[concept.kind][0][concept.index]``."""

    def __init__(self, model, tokenizer, kinds: dict[str, tuple[Sequence[str], Sequence[str]]],
                 concept: Concept, forget: PairData, retain_val: PairData, topk: int,
                 cached: bool = True, shortcut: bool = True):
        concept.check(kinds[concept.kind][0])
        self.kinds = {k: (len(n), len(t)) for k, (n, t) in kinds.items()}
        self.target_kind, self.concept, self.topk = concept.kind, concept.index, topk
        self.labels = {}
        for k, (names, _) in kinds.items():
            lab = caption_labels(retain_val.captions, names)
            if k == concept.kind:
                lab[lab == concept.index] = -1
            if (lab >= 0).any():
                self.labels[k] = lab
        texts = {f"classes:{k}": tokenizer([t.format(n) for n in names for t in tpl])
                 for k, (names, tpl) in kinds.items()}
        texts.update(forget_captions=forget.tokens, retain_captions=retain_val.tokens)
        images = {"forget": forget.images, "retain": retain_val.images}
        self.cache = FeatureCache(model, images, texts, cached=cached, shortcut=shortcut)

    def prepare(self, layer: str, direction: torch.Tensor | None = None) -> None:
        self.cache.prepare(layer, direction)

    def _classifier(self, f, kind):
        n, t = self.kinds[kind]
        return F.normalize(f[f"classes:{kind}"].view(n, t, -1).mean(1), dim=-1)

    def score(self, cosine: bool = False) -> tuple[float, float, dict]:
        """Forget and retain scores; ``cosine`` adds the forget pairs' mean cosine (it needs the
        forget captions encoded, so trials skip it)."""
        keys = {"forget", "retain", "retain_captions", *(f"classes:{k}" for k in self.kinds)}
        f = self.cache.features(keys | ({"forget_captions"} if cosine else set()))
        clf = self._classifier(f, self.target_kind)
        fl = f["forget"] @ clf.T
        target = torch.full((len(fl),), self.concept, dtype=torch.long)
        forget = float(topk_correct(fl, target, self.topk).float().mean())
        parts = {}
        for kind, lab in self.labels.items():
            sel = lab >= 0
            pred = (f["retain"][sel] @ self._classifier(f, kind).T).argmax(1)
            parts[f"named_{kind}"] = float((pred == lab[sel]).float().mean())
        sims = f["retain"] @ f["retain_captions"].T
        recall = float((sims.argmax(1) == torch.arange(len(sims))).float().mean())
        named = sum(parts.values()) / len(parts) if parts else None
        parts["retain_named_top1"] = named
        parts["retain_recall1"] = recall
        if cosine:
            parts["forget_cosine"] = float(paired_cosine(f["forget"], f["forget_captions"]).mean())
        retain = recall if named is None else 0.5 * (named + recall)
        return forget, retain, parts
