"""The evaluation of an unlearning on held-out data, before and after: forget, retain, utility,
membership inference, paired cosine.

Everything here reads *test* data only (never the search split): the concept's evaluation images,
the held-out forget split, CelebA, ImageNet, the other kinds, the non-members.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .. import names
from ..concept import Concept
from ..datasets.pairs import PairData
from .mia import mia_accuracy
from .sets import EvalSet
from .zeroshot import (
    encode_images,
    encode_texts,
    per_class_accuracy,
    text_classifier,
    topk_correct,
)


@dataclass
class EvalInputs:
    sets: dict[str, EvalSet]  # by kind
    images: dict[str, torch.Tensor]  # by kind, preprocessed
    concept: Concept
    forget_test: PairData
    nonmembers: PairData | None
    frequent: list[str]  # CelebA retain: these names, without the target


def eval_inputs(sets: dict[str, EvalSet], bundle, concept: Concept, sets_dir: str,
                nonmembers: bool, celeba_root: str, frequent: int) -> EvalInputs:
    """The held-out evaluation data: every kind's images, the forget test split, the non-members
    (when built) and the first ``frequent`` names of CelebA's frequent-names file."""
    from ..datasets.celeba import CelebA
    from ..sets.build import load_split
    from .sets import load

    images = load(list(sets.values()), bundle.preprocess)
    images = {k: images[s.name] for k, s in sets.items()}
    forget_test = load_split(sets_dir, "forget_test", bundle.preprocess, bundle.tokenizer)
    members = load_split(sets_dir, "nonmembers", bundle.preprocess, bundle.tokenizer) \
        if nonmembers else None
    names = CelebA(Path(celeba_root)).frequent()[:frequent]
    return EvalInputs(sets, images, concept, forget_test, members, names)


@torch.no_grad()
def evaluate(model, tokenizer, x: EvalInputs, mia_seeds: int = 10) -> dict:
    out: dict = {}
    clfs = {k: text_classifier(model, tokenizer, s.classnames, s.templates)
            for k, s in x.sets.items()}
    feats = {k: encode_images(model, x.images[k]) for k in x.sets}
    kind, cidx = x.concept.kind, x.concept.index
    target_set = x.sets[kind]
    x.concept.check(target_set.classnames)

    # forget: the concept's evaluation images, zero-shot over every name of its kind
    mask = target_set.targets == cidx
    logits = feats[kind][mask] @ clfs[kind].T
    tgt = target_set.targets[mask]
    out["forget"] = {f"top{k}": float(topk_correct(logits, tgt, k).float().mean()) for k in (1, 5)}
    # ... and the held-out forget split from the shards (captions name the concept)
    fimg = encode_images(model, x.forget_test.images)
    flog = fimg @ clfs[kind].T
    ftgt = torch.full((len(flog),), cidx, dtype=torch.long)
    out["forget_split"] = {f"top{k}": float(topk_correct(flog, ftgt, k).float().mean())
                           for k in (1, 5)}
    ftxt = encode_texts(model, tokenizer, x.forget_test.captions)
    fcos = (fimg * ftxt).sum(-1)
    out["forget_cosine"] = float(fcos.mean())

    # CelebA-style retain: macro mean over frequent identities, the target excluded
    ids = x.sets["identity"]
    wanted = {names.key(n) for n in x.frequent} - {names.key(x.concept.label)}
    keep = [i for i, c in enumerate(ids.classnames) if names.key(c) in wanted]
    for k in (1, 5):
        acc = per_class_accuracy(feats["identity"], clfs["identity"], ids.targets, k)
        out.setdefault("celeba", {})[f"top{k}"] = float(acc[keep].nanmean()) if keep else None
    # ImageNet-style utility and the other kinds (the target class excluded from its own kind)
    for k_, s in x.sets.items():
        sel = torch.ones(len(s.targets), dtype=torch.bool)
        if k_ == kind:
            sel = s.targets != cidx
        lg = feats[k_][sel] @ clfs[k_].T
        res = {f"top{k}": float(topk_correct(lg, s.targets[sel], k).float().mean()) for k in (1, 5)}
        out[{"object": "imagenet"}.get(k_, s.name)] = res
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


def delta(a: dict, b: dict) -> dict:
    """``b - a`` for every number of two nested metric dicts of the same shape."""
    return {k: (delta(a[k], b[k]) if isinstance(a[k], dict) else
                (None if a[k] is None else b[k] - a[k])) for k in a}


@dataclass
class BeforeAfter:
    before: dict
    after: dict
    matrix_before: torch.Tensor
    matrix_after: torch.Tensor
    matrix_rows: list[str]


def before_after(model, tokenizer, x: EvalInputs, patch, mia_seeds: int, per_class: int
                 ) -> BeforeAfter:
    """Held-out metrics and the concept kind's cosine matrix, before and after ``patch`` (the
    model is left as it was)."""
    from ..unlearn import patch as patch_mod

    s, images = x.sets[x.concept.kind], x.images[x.concept.kind]
    before = evaluate(model, tokenizer, x, mia_seeds)
    mat_before, rows = cosine_matrix(model, tokenizer, s, images, per_class)
    originals = patch_mod.apply(model, patch)
    try:
        after = evaluate(model, tokenizer, x, mia_seeds)
        mat_after, _ = cosine_matrix(model, tokenizer, s, images, per_class)
    finally:
        patch_mod.revert(model, originals)
    return BeforeAfter(before, after, mat_before, mat_after, rows)


def with_edit(model, tokenizer, x: EvalInputs, layer: str, grad: torch.Tensor, lam: float,
              mia_seeds: int) -> dict:
    """Held-out metrics of one SLUG step on ``layer`` (e.g. the naive layer's searched step)."""
    from ..unlearn.slug import edited

    with edited(dict(model.named_parameters())[layer], grad, lam):
        return evaluate(model, tokenizer, x, mia_seeds)
