"""Labelled evaluation sets read from the real formats, ready for zero-shot scoring."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..datasets import celeba, imagefolder, unlearncanvas
from ..names import label
from .zeroshot import accuracy, encode_images, load_images, text_classifier


@dataclass
class EvalSet:
    """Images of known class; ``classnames`` are prompt-ready (spaces, not underscores)."""

    name: str
    classnames: list[str]
    paths: list[Path]
    targets: torch.Tensor
    templates: Sequence[str]

    def score(self, model, tokenizer, images: torch.Tensor, ks=(1, 5)) -> dict[str, float]:
        clf = text_classifier(model, tokenizer, self.classnames, self.templates)
        return accuracy(encode_images(model, images), clf, self.targets, ks)


def celeba_identities(root: Path, templates: Sequence[str]) -> EvalSet:
    ids = celeba.CelebA(Path(root)).identities()
    names = sorted(ids)
    paths, targets = [], []
    for i, n in enumerate(names):
        paths += ids[n]
        targets += [i] * len(ids[n])
    return EvalSet("identities", names, paths, torch.tensor(targets), templates)


def image_folder(name: str, root: Path, templates: Sequence[str],
                 classnames_file: Path | None = None) -> EvalSet:
    mapping = imagefolder.read_classnames(classnames_file) if classnames_file else None
    names, items = imagefolder.read_folder(Path(root), mapping)
    return EvalSet(name, names, [p for p, _ in items], torch.tensor([t for _, t in items]),
                   templates)


def canvas_styles(root: Path, templates: Sequence[str]) -> EvalSet:
    styles, _, items = unlearncanvas.read_canvas(Path(root))
    return EvalSet("styles", [label(s) for s in styles], [p for p, _, _ in items],
                   torch.tensor([s for _, s, _ in items]), templates)


def load(sets: Sequence[EvalSet], preprocess: Callable) -> dict[str, torch.Tensor]:
    """Decode every set's images once, stacked (small sets only: the held-out evaluation streams
    them, ``evaluate.stream``)."""
    return {s.name: load_images(s.paths, preprocess) for s in sets}


def subsample(s: EvalSet, n: int | None, seed: int, keep: int | None = None) -> EvalSet:
    """A fixed-seed random ``n`` of the set's images (in their order), e.g. the reference's 2,500
    ImageNet images; ``None`` or ``n`` >= the set's size: the set itself. The images of class
    ``keep`` (the concept, when it is of this kind) are all kept, besides the ``n`` others."""
    import numpy as np

    pool = np.arange(len(s.paths)) if keep is None else \
        (s.targets != keep).nonzero().flatten().numpy()
    if n is None or n >= len(pool):
        return s
    picked = set(np.random.default_rng(seed).choice(pool, n, replace=False).tolist())
    if keep is not None:
        picked |= set((s.targets == keep).nonzero().flatten().tolist())
    idx = sorted(picked)
    return EvalSet(s.name, s.classnames, [s.paths[i] for i in idx],
                   s.targets[torch.tensor(idx, dtype=torch.long)], s.templates)


def standard_sets(celeba_root: Path, characters_root: Path, imagenet_root: Path,
                  canvas_root: Path, templates) -> dict[str, EvalSet]:
    """The four labelled sets, keyed by kind (identity, character, object, style)."""
    return {
        "identity": celeba_identities(Path(celeba_root), templates.identities),
        "character": image_folder("characters", Path(characters_root), templates.characters),
        "object": image_folder("objects", Path(imagenet_root) / "val", templates.objects,
                               Path(imagenet_root) / "LOC_synset_mapping.txt"),
        "style": canvas_styles(Path(canvas_root), templates.styles),
    }


def scorer_kinds(sets: dict[str, EvalSet]) -> dict[str, tuple[list[str], list[str]]]:
    """Each kind's class names and templates (what a ``TrialScorer`` takes)."""
    return {k: (s.classnames, s.templates) for k, s in sets.items()}


def classnames(sets: dict[str, EvalSet]) -> dict[str, list[str]]:
    return {k: s.classnames for k, s in sets.items()}
