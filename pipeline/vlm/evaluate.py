"""The VLM asked about held-out images before and after the patch, in one streamed pass.

Each batch of images is answered twice, by the unedited VLM and with the patch mapped onto its
vision tower (then taken back), so the data set is read once and never held in memory. An
answer counts when it names the image's concept (``llava.names_it``). Reported: the share of
the target's images it still names, the share of each retained concept's images named right
(their mean is the retain score), the target's most frequent answers before and after, and a
few images per concept for the grid.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
from PIL import Image

from ..datasets.shards import ReadReport, Shard, iter_samples
from ..diffusion.text_encoder import apply_mapped
from ..progress import progress
from . import llava


@dataclass
class Item:
    """One image to ask about: its concept (name, kind) and the names that count as naming it."""
    image: Image.Image
    name: str
    kind: str
    names: tuple[str, ...]


def items(tar: Path, labels: Callable[[str], tuple[str, str, tuple[str, ...]] | None],
          report: ReadReport) -> Iterator[Item]:
    """The tar's images whose key ``labels`` gives a concept for."""
    for key, img, _ in iter_samples([Shard(Path(tar))], report):
        if (lab := labels(key)) is not None:
            yield Item(img, *lab)


@dataclass
class Answers:
    """Every image's answers before and after, per concept, and a few images for the grid."""
    before: dict[str, list[str]] = field(default_factory=dict)
    after: dict[str, list[str]] = field(default_factory=dict)
    names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    thumbs: dict[str, list[Image.Image]] = field(default_factory=dict)

    def named(self, which: str, concept: str) -> float:
        said = getattr(self, which)[concept]
        return sum(llava.names_it(a, self.names[concept]) for a in said) / len(said)


@torch.no_grad()
def ask(vlm, processor, preprocess: Callable, template: str, questions: dict[str, str],
        stream: Iterable[Item], mapped: dict[str, torch.Tensor], batch_size: int = 64,
        thumbs: int = 4, max_new_tokens: int = 8) -> Answers:
    """Answer every item's question before and after ``mapped`` (tensors of the VLM's vision
    tower, ``vision_tower.map_patch``)."""
    tower = vlm.model.vision_tower
    have = tower.state_dict()
    base = {k: have[k].detach().clone() for k in mapped}
    out = Answers()
    batch: list[Item] = []

    def flush():
        pixels = torch.stack([preprocess(x.image) for x in batch]).to(vlm.device)
        qs = [questions[x.kind] for x in batch]
        got = {}
        for when, tensors in (("before", base), ("after", mapped)):
            apply_mapped(tower, tensors)
            got[when] = llava.answers(vlm, processor, pixels, qs, template, batch_size,
                                      max_new_tokens)
        apply_mapped(tower, base)
        for x, b, a in zip(batch, got["before"], got["after"]):
            out.before.setdefault(x.name, []).append(b)
            out.after.setdefault(x.name, []).append(a)
            out.names[x.name], out.kinds[x.name] = x.names, x.kind
            shown = out.thumbs.setdefault(x.name, [])
            if len(shown) < thumbs:
                shown.append(x.image.copy())
        batch.clear()

    for item in progress(stream, desc="asking the VLM"):
        batch.append(item)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return out


def metrics(a: Answers, target: str, top: int = 5) -> dict:
    """The target's named share, the retained concepts' (mean over concepts, per kind, per
    concept), before and after, and the target's most frequent answers."""
    others = [c for c in a.before if c != target]

    def mean(xs):
        return round(sum(xs) / len(xs), 4) if xs else None

    def side(which):
        per = {c: round(a.named(which, c), 4) for c in others}
        kinds = sorted({a.kinds[c] for c in others})
        return {"target": round(a.named(which, target), 4), "retained": mean(list(per.values())),
                "retained_per_kind": {k: mean([per[c] for c in others if a.kinds[c] == k])
                                      for k in kinds},
                "retained_per_concept": per}

    return {"before": side("before"), "after": side("after"),
            "images": {c: len(a.before[c]) for c in a.before},
            "target_answers": {w: Counter(getattr(a, w)[target]).most_common(top)
                               for w in ("before", "after")}}


def stream(target_tar: Path, concept, eval_tar: Path, labels: dict[str, list[str]],
           report: ReadReport) -> Iterator[Item]:
    """The target's held-out images (its forget-test split; its name or an alias counts), then
    the retained concepts' held-out images (their manifest labels)."""
    names = (concept.label, *concept.aliases)
    yield from items(target_tar, lambda k: (concept.label, concept.kind, names), report)
    yield from items(eval_tar, lambda k: (labels[k][0], labels[k][1], (labels[k][0],))
                     if k in labels else None, report)


TABLE_FIELDS = ["concept", "kind", "target", "images", "named_before", "named_after"]


def table(a: Answers, target: str) -> list[dict]:
    """One row per concept: its kind, images, and the share named before and after."""
    return [{"concept": c, "kind": a.kinds[c], "target": c == target, "images": len(a.before[c]),
             "named_before": round(a.named("before", c), 4),
             "named_after": round(a.named("after", c), 4)} for c in a.before]


def grid_rows(a: Answers, target: str) -> list[str]:
    """The target, then the first retained concept of each kind."""
    rows, kinds = [target], set()
    for c in a.before:
        if c != target and a.kinds[c] not in kinds:
            rows.append(c)
            kinds.add(a.kinds[c])
    return rows
