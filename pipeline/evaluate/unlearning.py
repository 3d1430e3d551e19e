"""The evaluation of an unlearning on held-out data, before and after: forget, retain, utility,
membership inference, paired cosine.

Everything here reads *test* data only (never the search split): the concept's evaluation images,
the held-out forget split, CelebA, ImageNet, the other kinds, the non-members (and the retain
split, as the MIA-efficacy attacker's members). Images are streamed (``evaluate.stream``):
decoded, preprocessed and encoded one batch at a time, so memory does not grow with the sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .. import names
from ..concept import Concept
from ..datasets.pairs import PairData
from .mia import membership
from .sets import EvalSet, subsample
from .stream import (
    BATCH_SIZE,
    Images,
    Pairs,
    TarPairs,
    as_images,
    encode_images,
    encode_pairs,
    file_images,
)
from .zeroshot import (
    encode_texts,
    per_class_accuracy,
    text_classifier,
    topk_correct,
)


@dataclass
class EvalInputs:
    sets: dict[str, EvalSet]  # by kind
    images: dict[str, Images | torch.Tensor]  # by kind: a source (or preprocessed tensor)
    concept: Concept
    forget_test: Pairs | PairData
    nonmembers: Pairs | PairData | None
    frequent: list[str]  # CelebA retain: these names, without the target
    retain: Pairs | PairData | None = None  # the MIA-efficacy attacker's members
    batch_size: int = BATCH_SIZE  # images decoded and encoded at a time


def _kind_images(sets: dict[str, EvalSet], bundle, concepts: Sequence[Concept],
                 imagenet_images: int | None, seed: int) -> tuple[dict, dict]:
    """Every kind's images as sources; the object kind a ``seed``-fixed ``imagenet_images`` of
    them, the first object concept's own images kept."""
    if imagenet_images is not None and "object" in sets:
        keep = next((c.index for c in concepts if c.kind == "object"), None)
        sets = {**sets, "object": subsample(sets["object"], imagenet_images, seed, keep)}
    return sets, {k: file_images(s.paths, bundle.preprocess, s.name) for k, s in sets.items()}


def eval_inputs(sets: dict[str, EvalSet], bundle, concept: Concept, sets_dir: str,
                nonmembers: bool, celeba_root: str, frequent: int,
                imagenet_images: int | None = None, seed: int = 0,
                batch_size: int = BATCH_SIZE) -> EvalInputs:
    """The held-out evaluation data, as sources read batch by batch: every kind's images (the
    object kind: a ``seed``-fixed ``imagenet_images`` of them, the concept's own images kept), the
    forget test split, the retain split, the non-members (when built) and the first ``frequent``
    names of CelebA's frequent-names file."""
    from ..datasets.celeba import CelebA
    from ..sets.build import require_split

    sets, images = _kind_images(sets, bundle, [concept], imagenet_images, seed)

    def split(name: str) -> TarPairs:
        return TarPairs(require_split(sets_dir, name), bundle.preprocess)

    names_ = CelebA(Path(celeba_root)).frequent()[:frequent]
    return EvalInputs(sets, images, concept, split("forget_test"),
                      split("nonmembers") if nonmembers else None, names_,
                      split("retain"), batch_size)


def many_inputs(sets: dict[str, EvalSet], bundle, concepts: Sequence[Concept], celeba_root: str,
                frequent: int, imagenet_images: int | None = None, seed: int = 0,
                batch_size: int = BATCH_SIZE) -> EvalInputs:
    """``eval_inputs`` for several concepts at once (``held_out`` takes their forget test
    splits): every kind's images and the CelebA names; no membership inference."""
    from ..datasets.celeba import CelebA

    sets, images = _kind_images(sets, bundle, concepts, imagenet_images, seed)
    return EvalInputs(sets, images, concepts[0], None, None,
                      CelebA(Path(celeba_root)).frequent()[:frequent], None, batch_size)


def paired_cosine(model, tokenizer, pairs: Pairs | PairData, batch_size: int = BATCH_SIZE,
                  limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pair (the first ``limit``), cos(image, its caption), and the image embeddings."""
    img, captions = encode_pairs(model, pairs, batch_size, limit)
    return (img * encode_texts(model, tokenizer, captions)).sum(-1), img


@torch.no_grad()
def held_out(model, tokenizer, x: EvalInputs, concepts: Sequence[Concept],
             forget_tests: Sequence[Pairs | PairData]) -> tuple[dict, dict[str, torch.Tensor]]:
    """Forget and retain on held-out data for one or several concepts forgotten together:
    per concept (``concepts``: by label), its evaluation images and its forget test split,
    zero-shot over every name of its kind; CelebA retain, the macro mean over the frequent
    identities that are none of them; every kind's accuracy, their classes left out. Every
    kind's images are encoded once. Also returns each concept's forget-pair cosines."""
    out: dict = {"concepts": {}}
    bs = x.batch_size
    clfs = {k: text_classifier(model, tokenizer, s.classnames, s.templates)
            for k, s in x.sets.items()}
    feats = {k: encode_images(model, x.images[k], bs) for k in x.sets}
    cosines = {}
    for c, split in zip(concepts, forget_tests):
        s = x.sets[c.kind]
        c.check(s.classnames)
        mask = s.targets == c.index  # the concept's evaluation images
        logits = feats[c.kind][mask] @ clfs[c.kind].T
        r = {"forget": {f"top{k}": float(topk_correct(logits, s.targets[mask], k).float().mean())
                        for k in (1, 5)}}
        fcos, fimg = paired_cosine(model, tokenizer, split, bs)  # captions name the concept
        flog = fimg @ clfs[c.kind].T
        ftgt = torch.full((len(flog),), c.index, dtype=torch.long)
        r["forget_split"] = {f"top{k}": float(topk_correct(flog, ftgt, k).float().mean())
                             for k in (1, 5)}
        r["forget_cosine"] = float(fcos.mean())
        out["concepts"][c.label], cosines[c.label] = r, fcos

    # CelebA-style retain: macro mean over frequent identities, the targets excluded
    ids = x.sets["identity"]
    wanted = {names.key(n) for n in x.frequent} - {names.key(c.label) for c in concepts}
    keep = [i for i, c in enumerate(ids.classnames) if names.key(c) in wanted]
    for k in (1, 5):
        acc = per_class_accuracy(feats["identity"], clfs["identity"], ids.targets, k)
        out.setdefault("celeba", {})[f"top{k}"] = float(acc[keep].nanmean()) if keep else None
    # ImageNet-style utility and the other kinds (the targets' classes excluded from their kind)
    for k_, s in x.sets.items():
        sel = torch.ones(len(s.targets), dtype=torch.bool)
        for c in concepts:
            if c.kind == k_:
                sel &= s.targets != c.index
        lg = feats[k_][sel] @ clfs[k_].T
        res = {f"top{k}": float(topk_correct(lg, s.targets[sel], k).float().mean()) for k in (1, 5)}
        out[{"object": "imagenet"}.get(k_, s.name)] = res
    return out, cosines


@torch.no_grad()
def evaluate(model, tokenizer, x: EvalInputs, mia_seeds: int = 10, cosines: bool = False
             ) -> dict:
    """The held-out metrics of ``x.concept`` (``held_out``) and the membership inference;
    ``cosines`` adds ``forget_cosines``, the forget test pairs' paired cosines as a tensor (for a
    distance between methods; not a JSON value)."""
    rest, cos = held_out(model, tokenizer, x, [x.concept], [x.forget_test])
    out = rest.pop("concepts")[x.concept.label]
    fcos = cos[x.concept.label]
    if cosines:
        out["forget_cosines"] = fcos.cpu()
    out.update(rest)
    bs = x.batch_size
    if x.nonmembers is not None:
        ncos = paired_cosine(model, tokenizer, x.nonmembers, bs)[0].cpu().numpy()
        retain = None if x.retain is None else \
            (lambda n: paired_cosine(model, tokenizer, x.retain, bs, n)[0].cpu().numpy())
        out.update(membership(fcos.cpu().numpy(), ncos, retain, mia_seeds))
    return out


@torch.no_grad()
def cosine_matrix(model, tokenizer, s: EvalSet, images: Images | torch.Tensor, per_class: int,
                  batch_size: int = BATCH_SIZE) -> tuple[torch.Tensor, list[str]]:
    """Cosine similarity of ``per_class`` images of every class (rows) with every class name
    prompt (columns), for the before/after figures."""
    rows = []
    for c in range(len(s.classnames)):
        idx = (s.targets == c).nonzero().flatten()[:per_class]
        rows.append(idx)
    idx = torch.cat(rows)
    img = encode_images(model, as_images(images).subset(idx.tolist()), batch_size)
    clf = text_classifier(model, tokenizer, s.classnames, s.templates)
    return img @ clf.T, [s.classnames[int(s.targets[i])] for i in idx]


def delta(a: dict, b: dict) -> dict:
    """``b - a`` for every number of two nested metric dicts of the same shape (notes, strings,
    left out)."""
    return {k: (delta(a[k], b[k]) if isinstance(a[k], dict) else
                (None if a[k] is None else b[k] - a[k])) for k in a if not isinstance(a[k], str)}


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
    mat_before, rows = cosine_matrix(model, tokenizer, s, images, per_class, x.batch_size)
    originals = patch_mod.apply(model, patch)
    try:
        after = evaluate(model, tokenizer, x, mia_seeds)
        mat_after, _ = cosine_matrix(model, tokenizer, s, images, per_class, x.batch_size)
    finally:
        patch_mod.revert(model, originals)
    return BeforeAfter(before, after, mat_before, mat_after, rows)


def with_edit(model, tokenizer, x: EvalInputs, layer: str, grad: torch.Tensor, lam: float,
              mia_seeds: int) -> dict:
    """Held-out metrics of one SLUG step on ``layer`` (e.g. the naive layer's searched step)."""
    from ..unlearn.slug import edited

    with edited(dict(model.named_parameters())[layer], grad, lam):
        return evaluate(model, tokenizer, x, mia_seeds)
