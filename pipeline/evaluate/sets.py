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
    """Decode every set's images once."""
    return {s.name: load_images(s.paths, preprocess) for s in sets}



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


def classnames(sets: dict[str, EvalSet]) -> dict[str, list[str]]:
    return {k: s.classnames for k, s in sets.items()}
