"""UnlearnCanvas's metrics on a judged style x object grid of generations.

Every cell (style s, object o) is generated from its prompt with fixed seeds and judged by both
classifiers; ``Grid`` keeps, per cell, the share of images whose style (object) is recognised.
For a style target t:

* UA  = 1 - style accuracy on the cells of style t (share of its images *not* judged as t);
* IRA = style accuracy on the cells of every other style (in-domain retain);
* CRA = object accuracy on the cells of every other style (cross-domain retain).

For an object target, swap the roles of styles and objects. The same numbers on the unedited
generator are the ceiling an edit can keep.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..diffusion import sd as sd_mod
from ..errors import DataError
from ..io import sha256_file, write_json
from .classifiers import Judge
from .data import Canvas, Target

GRID = "grid.json"


@dataclass
class Grid:
    style_acc: np.ndarray   # [styles, objects], share of images judged as the cell's style
    object_acc: np.ndarray  # [styles, objects], share judged as the cell's object
    images_per_prompt: int

    def to_dict(self) -> dict:
        return {"style_acc": self.style_acc.round(6).tolist(),
                "object_acc": self.object_acc.round(6).tolist(),
                "images_per_prompt": self.images_per_prompt}

    @classmethod
    def from_dict(cls, d: dict) -> "Grid":
        return cls(np.asarray(d["style_acc"], float), np.asarray(d["object_acc"], float),
                   int(d["images_per_prompt"]))


def judged(pipe, prompts: list[str], per_prompt: int, seed: int, steps: int, guidance: float,
           size: int, judges: list[Judge]) -> list[torch.Tensor]:
    """Generate ``per_prompt`` images per prompt (image j of prompt i: seed + 1000 i + j, as
    ``sd.generate``) and return each judge's predictions, ``[len(prompts) * per_prompt]``.
    Images are judged chunk by chunk and dropped, so memory does not grow with the grid."""
    preds: list[list[torch.Tensor]] = [[] for _ in judges]
    for _, images in sd_mod.generate_chunks(pipe, prompts, per_prompt, seed, steps, guidance,
                                            size):
        for k, j in enumerate(judges):
            preds[k].append(j.predict(images))
    return [torch.cat(p) for p in preds]


def judge_grid(pipe, canvas: Canvas, template: str, style_judge: Judge, object_judge: Judge,
               per_prompt: int, seed: int, steps: int, guidance: float, size: int) -> Grid:
    cells = [(s, o) for s in range(len(canvas.styles)) for o in range(len(canvas.objects))]
    prompts = [canvas.prompt(template, s, o) for s, o in cells]
    ps, po = judged(pipe, prompts, per_prompt, seed, steps, guidance, size,
                    [style_judge, object_judge])
    truth_s = torch.tensor([s for s, _ in cells]).repeat_interleave(per_prompt)
    truth_o = torch.tensor([o for _, o in cells]).repeat_interleave(per_prompt)
    shape = (len(canvas.styles), len(canvas.objects))
    acc_s = (ps == truth_s).float().view(len(cells), per_prompt).mean(1).view(shape)
    acc_o = (po == truth_o).float().view(len(cells), per_prompt).mean(1).view(shape)
    return Grid(acc_s.double().numpy(), acc_o.double().numpy(), per_prompt)


def scores(grid: Grid, target: Target, others: list[int] | None = None) -> dict[str, float]:
    """UA, IRA and CRA of ``target`` (fractions), plus the target's own accuracy; IRA and CRA
    over ``others`` (indices in the target's kind; default: every other concept)."""
    same, cross = (grid.style_acc, grid.object_acc) if target.kind == "style" else \
        (grid.object_acc.T, grid.style_acc.T)  # rows: the target's kind
    if others is None:
        others = [i for i in range(same.shape[0]) if i != target.index]
    acc = float(same[target.index].mean())
    return {"UA": 1.0 - acc, "target_accuracy": acc, "IRA": float(same[others].mean()),
            "CRA": float(cross[others].mean())}


def overall(grid: Grid) -> dict[str, float]:
    """The classifiers' accuracy on the whole grid (the ceiling of IRA and CRA)."""
    return {"style": float(grid.style_acc.mean()), "object": float(grid.object_acc.mean())}


def grid_settings(styles: list[str], objects: list[str], prompt: str, seed: int, e,
                  style_ckpt: str | Path, object_ckpt: str | Path) -> dict:
    """What a judged grid depends on (``e``: the ``canvas.evaluate`` group); a grid made with
    other settings is refused."""
    return {"styles": styles, "objects": objects, "prompt": prompt, "seed": seed,
            "images_per_prompt": e.images_per_prompt, "steps": e.steps, "guidance": e.guidance,
            "classifiers": {"style": sha256_file(style_ckpt), "object": sha256_file(object_ckpt)}}


def save_grid(folder: str | Path, settings: dict, grid: Grid) -> None:
    write_json(Path(folder) / GRID, {"settings": settings, "grid": grid.to_dict(),
                                     "ceiling": overall(grid)})


def read_ceiling(folder: str | Path) -> dict[str, float]:
    """The classifiers' accuracy on the unedited grid, as ``save_grid`` recorded it."""
    path = Path(folder) / GRID
    if not path.exists():
        raise DataError(f"{path} not found; judge the unedited generator's grid first "
                        f"(params: canvas.base)")
    return json.loads(path.read_text())["ceiling"]


def read_grid(folder: str | Path, settings: dict | None = None) -> Grid:
    """The unedited generator's judged grid; refused if made with other ``settings``."""
    path = Path(folder) / GRID
    if not path.exists():
        raise DataError(f"{path} not found; judge the unedited generator's grid first "
                        f"(params: canvas.base)")
    saved = json.loads(path.read_text())
    if settings is not None and saved["settings"] != settings:
        raise DataError(f"{path} was made with other canvas settings or classifiers; judge the "
                        f"unedited grid again")
    return Grid.from_dict(saved["grid"])
