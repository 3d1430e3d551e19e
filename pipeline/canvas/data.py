"""The UnlearnCanvas grid: styles x objects, its prompts, and one forget tar per concept.

Folder names keep UnlearnCanvas's underscores (``Van_Gogh``); prompts use spaces ("A Cats image in
Van Gogh style."), which the reference meant to do but did not (B12).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..datasets.pairs import PairData
from ..datasets.shards import ReadReport, decode_image, write_tar
from ..datasets.unlearncanvas import read_canvas
from ..errors import DataError
from ..names import key, label

KINDS = ("style", "object")


@dataclass(frozen=True)
class Canvas:
    styles: list[str]
    objects: list[str]
    items: list[tuple[Path, int, int]]  # (image, style index, object index)

    def names(self, kind: str) -> list[str]:
        return self.styles if kind == "style" else self.objects

    def prompt(self, template: str, style: int, obj: int) -> str:
        return template.format(object=label(self.objects[obj]), style=label(self.styles[style]))


@dataclass(frozen=True)
class Target:
    name: str  # folder name
    kind: str  # style | object
    index: int


def load(root: str | Path, styles: Sequence[str] | None = None,
         objects: Sequence[str] | None = None) -> Canvas:
    """The grid; every listed style and object must have its folder (a clear error otherwise)."""
    s, o, items = read_canvas(Path(root), list(styles) if styles else None,
                              list(objects) if objects else None)
    return Canvas(s, o, items)


def find_target(canvas: Canvas, name: str) -> Target | None:
    """``name`` as a style or object (case, spaces and underscores ignored), or None."""
    want = key(name)
    for kind in KINDS:
        for i, n in enumerate(canvas.names(kind)):
            if key(n) == want:
                return Target(n, kind, i)
    return None


def tar_name(kind: str, name: str) -> str:
    return f"{kind}_{name}.tar"


def write_forget_tars(canvas: Canvas, template: str, out: str | Path) -> dict[str, int]:
    """One webdataset tar per style (all its objects) and per object (all its styles), members
    ``{Object}_{Style}_{n}.jpg`` + ``.txt`` (the prompt), as the reference's a0_create_tar_ucanvas.
    Returns the number of pairs per tar."""
    out = Path(out)
    counts = {}
    for kind in KINDS:
        for idx, name in enumerate(canvas.names(kind)):
            chosen = [it for it in canvas.items if it[1 if kind == "style" else 2] == idx]

            def samples(chosen=chosen):
                for path, si, oi in chosen:
                    key = f"{canvas.objects[oi]}_{canvas.styles[si]}_{path.stem}"
                    text = canvas.prompt(template, si, oi)
                    yield key, {"jpg": path.read_bytes(), "txt": text.encode()}

            write_tar(out / tar_name(kind, name), samples())
            counts[tar_name(kind, name)] = len(chosen)
    return counts


def grid_pairs(canvas: Canvas, template: str, preprocess: Callable, tokenizer: Callable
               ) -> PairData:
    """Every canvas image with its prompt as the caption (what the tiny generator also learns
    from). A corrupt image is a counted skip."""
    report = ReadReport()
    images, captions, keys = [], [], []
    for path, si, oi in canvas.items:
        try:
            img = decode_image(path.read_bytes())
        except Exception:  # PIL raises many types on bad data
            report.corrupt_images += 1
            report.corrupt_keys.append(str(path))
            continue
        report.samples += 1
        images.append(preprocess(img))
        captions.append(canvas.prompt(template, si, oi))
        keys.append(f"{canvas.objects[oi]}_{canvas.styles[si]}_{path.stem}")
    if not images:
        raise DataError("no readable UnlearnCanvas image")
    return PairData(torch.stack(images), tokenizer(captions), captions, report, keys)
