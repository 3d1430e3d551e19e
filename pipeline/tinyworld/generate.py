"""Write the tiny world into the real on-disk formats.

Every image is drawn from its own generator ``default_rng([seed, stream, index])``: the output
does not depend on the number of worker processes or on the order they finish, and the evaluation
sets (other streams) never share a seed with the training shards.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..datasets import celeba as celeba_fmt
from ..datasets import imagefolder, shards
from ..io import write_bytes, write_json
from ..names import file_name, label
from ..parallel import ordered_map
from ..params import MIX_KINDS
from . import captions, draw
from .concepts import (
    CHARACTER_NAMES,
    OBJECT_NAMES,
    STYLE_NAMES,
    identities,
    object_wnids,
)

STREAMS = {"laion": 1, "celeba": 2, "imagenet": 3, "characters": 4, "unlearncanvas": 5,
           "holdout": 6}
KINDS = MIX_KINDS
COLOURS = tuple(draw.BRIGHT)


@dataclass(frozen=True)
class WorldConfig:
    """The ``tinyworld`` params group (``mix`` as a tuple in KINDS order) and the seed."""
    seed: int
    n_shards: int
    samples_per_shard: int
    fail_rate: float
    mix: tuple[float, ...]  # in KINDS order
    anonymous_rate: float
    celeba_per_identity: int
    imagenet_per_class: int
    characters_per_class: int
    canvas_per_pair: int
    holdout_samples: int  # a shard the model never trains on (non-members for the MIA)
    jpeg_quality: int
    workers: int

    @classmethod
    def from_params(cls, t, seed: int) -> "WorldConfig":
        """From a ``TinyWorldParams`` (its ``out`` is where ``generate`` writes, not a setting)."""
        fields = {k: getattr(t, k) for k in cls.__dataclass_fields__ if k not in ("seed", "mix")}
        return cls(seed=seed, mix=tuple(float(t.mix[k]) for k in KINDS), **fields)


def _rng(seed: int, stream: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, STREAMS[stream], index])


def _jpeg(img, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def laion_sample(cfg: WorldConfig, index: int, draw_image: bool = True, stream: str = "laion"):
    """One LAION-like sample: ``(kind, concept, caption, jpeg bytes or None)``."""
    rng = _rng(cfg.seed, stream, index)
    kind = KINDS[int(rng.choice(len(KINDS), p=np.asarray(cfg.mix) / sum(cfg.mix)))]
    img = None
    if kind == "identity":
        who = _pick(rng, identities())
        anon = bool(rng.random() < cfg.anonymous_rate)
        caption = captions.identity_caption(who.name, who.hair, who.shirt, rng, anon)
        concept = None if anon else who.name
        if draw_image:
            img = draw.portrait(who.hair, who.shirt, rng)
    elif kind == "character":
        concept = _pick(rng, CHARACTER_NAMES)
        caption = captions.character_caption(concept, rng)
        if draw_image:
            img = draw.character(concept, rng)
    elif kind == "object":
        concept, colour = _pick(rng, OBJECT_NAMES), _pick(rng, COLOURS)
        caption = captions.object_caption(concept, colour, rng)
        if draw_image:
            img = draw.object_photo(concept, colour, rng)
    elif kind == "style":
        obj, concept = _pick(rng, OBJECT_NAMES), _pick(rng, STYLE_NAMES)
        caption = captions.style_caption(obj, concept, rng)
        if draw_image:
            img = draw.stylized(obj, concept, rng)
    else:  # a name in the caption, an object in the picture
        name = _pick(rng, [i.name for i in identities()] + list(CHARACTER_NAMES))
        concept, colour = _pick(rng, OBJECT_NAMES), _pick(rng, COLOURS)
        caption = captions.distractor_caption(name, concept, colour, rng)
        if draw_image:
            img = draw.object_photo(concept, colour, rng)
    return kind, concept, caption, (_jpeg(img, cfg.jpeg_quality) if img is not None else None)


def _laion_job(args):
    cfg, index, failed, stream = args
    return laion_sample(cfg, index, draw_image=not failed, stream=stream)


def _eval_job(args):
    cfg, stream, index, kind, concept, extra = args
    rng = _rng(cfg.seed, stream, index)
    if kind == "identity":
        who = next(i for i in identities() if i.name == concept)
        img = draw.portrait(who.hair, who.shirt, rng)
    elif kind == "character":
        img = draw.character(concept, rng)
    elif kind == "object":
        img = draw.object_photo(concept, _pick(rng, COLOURS), rng)
    else:
        img = draw.stylized(extra, concept, rng)
    return _jpeg(img, cfg.jpeg_quality)


def _map(fn, jobs, workers: int, desc: str) -> list:
    """Ordered parallel map (results do not depend on ``workers``)."""
    return list(ordered_map(fn, jobs, workers, desc, chunksize=64))


def write_laion(cfg: WorldConfig, root: Path, stream: str = "laion", n_shards: int | None = None,
                per_shard: int | None = None) -> Counter:
    """img2dataset-style shards; returns how often each identity is named in the captions."""
    n_shards = cfg.n_shards if n_shards is None else n_shards
    per_shard = cfg.samples_per_shard if per_shard is None else per_shard
    digits = max(4, len(str(per_shard - 1)))
    mentions: Counter = Counter()
    for s in range(n_shards):
        base = s * per_shard
        frng = np.random.default_rng([cfg.seed, STREAMS[stream], 10**9 + s])
        fails = (frng.random(per_shard) < cfg.fail_rate).tolist()
        results = _map(_laion_job, [(cfg, base + i, fails[i], stream) for i in range(per_shard)],
                       cfg.workers, f"{stream} shard {s:05d}")
        rows, images = [], {}
        for i, ((kind, concept, caption, jpeg), failed) in enumerate(zip(results, fails)):
            key = f"{s:05d}{i:0{digits}d}"
            url = f"https://images.tinyworld.invalid/{key}.jpg"
            sim = float(np.random.default_rng([cfg.seed, 99, base + i]).uniform(0.28, 0.42))
            row = {"key": key, "caption": caption, "url": url,
                   "status": "failed_to_download" if failed else "success",
                   "error_message": "HTTP Error 404: Not Found" if failed else None,
                   "width": None if failed else draw.SIZE, "height": None if failed else draw.SIZE,
                   "original_width": None if failed else draw.SIZE,
                   "original_height": None if failed else draw.SIZE,
                   "similarity": round(sim, 6), "NSFW": "UNLIKELY", "LICENSE": "?"}
            rows.append(row)
            if not failed:
                images[key] = jpeg
                if kind == "identity" and concept:
                    mentions[concept] += 1
        shards.write_shard(root, s, rows, images)
    return mentions


def write_celeba(cfg: WorldConfig, root: Path, frequent: list[str]) -> None:
    people = [i.name for i in identities()]
    jobs = [(cfg, "celeba", n, "identity", name, None)
            for n, name in enumerate(p for p in people for _ in range(cfg.celeba_per_identity))]
    order = np.random.default_rng([cfg.seed, STREAMS["celeba"], 10**9]).permutation(len(jobs))
    jobs = [jobs[i] for i in order]  # CelebA's image ids are not grouped by identity
    images = _map(_eval_job, jobs, cfg.workers, "celeba")
    assignments = []
    for n, (job, jpeg) in enumerate(zip(jobs, images), start=1):
        image_id = f"{n:06d}.jpg"
        write_bytes(root / celeba_fmt.IMAGES_DIR / image_id, jpeg)
        assignments.append((image_id, job[4]))
    celeba_fmt.write_lists(root, assignments, frequent)


def write_imagenet(cfg: WorldConfig, root: Path) -> None:
    wnids = object_wnids()
    jobs = [(cfg, "imagenet", n, "object", obj, None)
            for n, obj in enumerate(o for o in OBJECT_NAMES for _ in range(cfg.imagenet_per_class))]
    for k, (job, jpeg) in enumerate(zip(jobs, _map(_eval_job, jobs, cfg.workers, "imagenet"))):
        write_bytes(root / "val" / wnids[job[4]] / f"ILSVRC2012_val_{k + 1:08d}.JPEG", jpeg)
    imagefolder.write_classnames(root / imagefolder.CLASSNAMES_FILE,
                                 {wnids[o]: o for o in OBJECT_NAMES})


def write_characters(cfg: WorldConfig, root: Path) -> None:
    jobs = [(cfg, "characters", n, "character", c, None)
            for n, c in enumerate(c for c in CHARACTER_NAMES for _ in range(cfg.characters_per_class))]
    for k, (job, jpeg) in enumerate(zip(jobs, _map(_eval_job, jobs, cfg.workers, "characters"))):
        write_bytes(root / file_name(job[4]) / f"{k:06d}.jpg", jpeg)


def write_unlearncanvas(cfg: WorldConfig, root: Path) -> None:
    pairs = [(s, o, n) for s in STYLE_NAMES for o in OBJECT_NAMES
             for n in range(1, cfg.canvas_per_pair + 1)]
    jobs = [(cfg, "unlearncanvas", k, "style", s, o) for k, (s, o, _) in enumerate(pairs)]
    for (s, o, n), jpeg in zip(pairs, _map(_eval_job, jobs, cfg.workers, "unlearncanvas")):
        write_bytes(root / s / o.capitalize() / f"{n}.jpg", jpeg)


def generate(cfg: WorldConfig, out: Path) -> dict:
    """Write every part of the tiny world under ``out``; return a summary for the manifest."""
    out = Path(out)
    mentions = write_laion(cfg, out / "laion")
    people = [i.name for i in identities()]
    frequent = sorted(people, key=lambda n: (-mentions[n], n))
    write_celeba(cfg, out / "celeba", frequent)
    write_imagenet(cfg, out / "imagenet")
    write_characters(cfg, out / "characters")
    write_unlearncanvas(cfg, out / "unlearncanvas")
    write_laion(cfg, out / "holdout", stream="holdout", n_shards=1, per_shard=cfg.holdout_samples)
    summary = {
        "seed": cfg.seed,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()
                   if k != "workers"},  # the output does not depend on it
        "identities": [{"name": i.name, "hair": i.hair, "shirt": i.shirt} for i in identities()],
        "characters": list(CHARACTER_NAMES),
        "objects": list(OBJECT_NAMES),
        "styles": [label(s) for s in STYLE_NAMES],
        "identity_mentions": dict(sorted(mentions.items())),
    }
    write_json(out / "world.json", summary)
    return summary
