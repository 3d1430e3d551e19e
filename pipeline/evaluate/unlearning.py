"""The evaluation of an unlearning on held-out data, before and after: forget, retain, utility,
membership inference, paired cosine.

Everything here reads *test* data only (never the search split): the concept's evaluation images,
the held-out forget split, CelebA, ImageNet, the other kinds, the non-members.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..datasets.pairs import PairData
from .mia import mia_accuracy
from .sets import EvalSet
from .zeroshot import encode_images, encode_texts, per_class_accuracy, text_classifier, topk_correct


@dataclass
class EvalInputs:
    sets: dict[str, EvalSet]  # by kind
    images: dict[str, torch.Tensor]  # by kind, preprocessed
    kind: str
    concept: str
    forget_test: PairData
    nonmembers: PairData | None
    frequent: list[str]  # CelebA retain: these names, without the target


def _norm(s: str) -> str:
    return s.replace("_", " ").lower()


@torch.no_grad()
def evaluate(model, tokenizer, x: EvalInputs, mia_seeds: int = 10) -> dict:
    out: dict = {}
    clfs = {k: text_classifier(model, tokenizer, s.classnames, s.templates)
            for k, s in x.sets.items()}
    feats = {k: encode_images(model, x.images[k]) for k in x.sets}
    target_set = x.sets[x.kind]
    cidx = [_norm(c) for c in target_set.classnames].index(_norm(x.concept))

    # forget: the concept's evaluation images, zero-shot over every name of its kind
    mask = target_set.targets == cidx
    logits = feats[x.kind][mask] @ clfs[x.kind].T
    tgt = target_set.targets[mask]
    out["forget"] = {f"top{k}": float(topk_correct(logits, tgt, k).float().mean()) for k in (1, 5)}
    # ... and the held-out forget split from the shards (captions name the concept)
    fimg = encode_images(model, x.forget_test.images)
    flog = fimg @ clfs[x.kind].T
    ftgt = torch.full((len(flog),), cidx, dtype=torch.long)
    out["forget_split"] = {f"top{k}": float(topk_correct(flog, ftgt, k).float().mean())
                           for k in (1, 5)}
    ftxt = encode_texts(model, tokenizer, x.forget_test.captions)
    fcos = (fimg * ftxt).sum(-1)
    out["forget_cosine"] = float(fcos.mean())

    # CelebA-style retain: macro mean over frequent identities, the target excluded
    ids = x.sets["identity"]
    wanted = {_norm(n) for n in x.frequent} - {_norm(x.concept)}
    keep = [i for i, c in enumerate(ids.classnames) if _norm(c) in wanted]
    for k in (1, 5):
        acc = per_class_accuracy(feats["identity"], clfs["identity"], ids.targets, k)
        out.setdefault("celeba", {})[f"top{k}"] = float(acc[keep].nanmean()) if keep else None
    # ImageNet-style utility and the other kinds (the target class excluded from its own kind)
    for kind, s in x.sets.items():
        sel = torch.ones(len(s.targets), dtype=torch.bool)
        if kind == x.kind:
            sel = s.targets != cidx
        lg = feats[kind][sel] @ clfs[kind].T
        res = {f"top{k}": float(topk_correct(lg, s.targets[sel], k).float().mean()) for k in (1, 5)}
        out[{"object": "imagenet"}.get(kind, s.name)] = res
    if x.nonmembers is not None and len(x.nonmembers.images) >= 5:
        nimg = encode_images(model, x.nonmembers.images)
        ntxt = encode_texts(model, tokenizer, x.nonmembers.captions)
        mean, std = mia_accuracy(fcos.numpy(), (nimg * ntxt).sum(-1).numpy(), seeds=mia_seeds)
        out["mia"] = {"mean": mean, "std": std}
    return out


@torch.no_grad()
def cosine_matrix(model, tokenizer, s: EvalSet, images: torch.Tensor, per_class: int
                  ) -> tuple[torch.Tensor, list[str]]:
    """Cosine similarity of ``per_class`` images of every class (rows) with every class name
    prompt (columns), for the before/after figures."""
    rows = []
    for c in range(len(s.classnames)):
        idx = (s.targets == c).nonzero().flatten()[:per_class]
        rows.append(idx)
    idx = torch.cat(rows)
    img = encode_images(model, images[idx])
    clf = text_classifier(model, tokenizer, s.classnames, s.templates)
    return img @ clf.T, [s.classnames[int(s.targets[i])] for i in idx]
