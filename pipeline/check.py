"""Checks that run in seconds, before any heavy work: ``slug check`` runs them all, and the stages
run the ones they need first (``entry.run`` the references and the device, from
``pipeline.preflight``; ``filter`` the concept), so a bad value fails the same way, with the same line, wherever it is found.

Each check returns a one-line summary of what it found (counts) or raises a ``SlugError`` whose
message is the one line to print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from . import names, refs
from .concept import lookup
from .errors import DataError, ModelError
from .params import Params
from .preflight import device, pending, references, world


def clip_model(p: Params) -> str:
    """The architecture is known and the reference loads: a tag open_clip has for it, a weights
    file, or an open_clip folder (``open_clip_config.json`` + weights)."""
    from .models.factory import check as check_model

    m = p.model
    stage = pending(p, m.pretrained)
    check_model(m.name, None if stage else m.pretrained, m.precision, m.quick_gelu)
    return f"{m.name}, " + (_later(m.pretrained, stage) if stage else
                            f"{m.pretrained} ({refs.kind(m.pretrained)})")


def _later(value: str, stage: str) -> str:
    return f"{value} (written by the {stage} stage)"


def _unless_pending(p: Params, value: str, fn: Callable[[], str]) -> Callable[[], str]:
    """``fn``, or a note when the embedded default's stage that writes ``value`` has not run."""
    def run() -> str:
        stage = pending(p, value)
        return _later(value, stage) if stage else fn()
    return run


def diffusion_pipeline(value: str) -> str:
    """A diffusers pipeline folder (``model_index.json``) or a hub id in the local HF cache."""
    path = Path(value)
    if path.is_dir():
        if not (path / "model_index.json").exists():
            raise ModelError(f"{value} is not a diffusers pipeline folder "
                             f"(no model_index.json)")
        return f"{value} (folder)"
    if path.exists():
        raise ModelError(f"{value} is a file; a diffusers pipeline folder or a hub id "
                         f"is expected")
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(value, "model_index.json"), str):
        raise ModelError(f"{value!r} is neither a local folder nor a hub id in the local "
                         f"Hugging Face cache (download it first, or give its folder)")
    return f"{value} (hub id, in the local cache)"


# ---------------------------------------------------------------------------------- data


def shards(root: str, urls: str = "") -> str:
    """img2dataset webdataset output: ``NNNNN.tar`` + ``.parquet`` (+ ``_stats.json``); with
    ``urls``, the tars are there and ``root`` holds the parquet and stats files."""
    from .datasets.shards import list_shards

    found = list_shards(root, urls)
    missing = [s.parquet.name for s in found if not s.parquet.exists()]
    if missing:
        raise DataError(f"{len(missing)} of {len(found)} shards have no parquet "
                        f"(first: {Path(root) / missing[0]}); img2dataset writes one per tar")
    stats = [s for s in found if s.stats.exists()]
    from .datasets.shards import count_samples

    n = sum(count_samples(s) for s in stats)
    where = f" (tars: {urls})" if urls else ""
    return (f"{root}{where}: {len(found)} shards, {n:,} samples in the {len(stats)} with "
            f"_stats.json")


def eval_layouts(p: Params) -> list[tuple[str, Callable[[], str]]]:
    """One check per evaluation folder, each naming its key."""
    from .datasets.celeba import CelebA
    from .evaluate import sets as S

    d = p.data

    def one(key, root, build):
        def run():
            s = build()
            return f"{root}: {len(s.classnames)} classes, {len(s.paths):,} images"
        return key, _unless_pending(p, root, run)

    def celeba():
        s = S.celeba_identities(Path(d.celeba), p.eval.templates.identities)
        CelebA(Path(d.celeba)).frequent()
        missing = [q for q in s.paths[:50] if not q.exists()]
        if missing:
            raise DataError(f"{missing[0]} is listed in the identity file but "
                            f"missing (img_align_celeba/ expected)")
        return s

    return [
        one("data.celeba", d.celeba, celeba),
        one("data.imagenet", d.imagenet, lambda: S.image_folder(
            "objects", Path(d.imagenet) / "val", p.eval.templates.objects,
            Path(d.imagenet) / "LOC_synset_mapping.txt")),
        one("data.characters", d.characters, lambda: S.image_folder(
            "characters", Path(d.characters), p.eval.templates.characters)),
        one("data.unlearncanvas", d.unlearncanvas, lambda: S.canvas_styles(
            Path(d.unlearncanvas), p.eval.templates.styles)),
    ]


def canvas_grid(p: Params) -> str:
    """Every ``canvas.styles`` x ``canvas.objects`` folder of data.unlearncanvas holds images."""
    from .datasets.unlearncanvas import read_canvas

    root = p.data.unlearncanvas
    styles, objects, items = read_canvas(Path(root), p.canvas.styles, p.canvas.objects)
    return f"{len(styles)} styles x {len(objects)} objects, {len(items):,} images"


def concept(p: Params) -> str:
    """The concept is a class name of an evaluation set, and captions in the first
    ``filter.check_shards`` shards mention it; both by the one name rule (``pipeline.names``)
    and the caption filter's own matcher."""
    from .datasets.shards import data_shards, read_metadata
    from .sets.match import ConceptMatcher

    c = lookup(p.concept, p.concept_kind, p.filter.aliases, p.data, p.eval.templates)
    match = ConceptMatcher(c.name, c.aliases)
    found = data_shards(p.data)[: p.filter.check_shards]
    hits = sum(int(read_metadata(s)["caption"].map(match).sum()) for s in found)
    if not hits:
        raise DataError(f"concept {p.concept!r} ({c.kind} {c.label!r}) is in no caption of the "
                        f"first {len(found)} shard(s) of {p.data.shards}; add spellings to "
                        f"filter.aliases, or check the concept")
    return (f"{p.concept!r} = {c.kind} {c.label!r} (key {names.key(c.label)!r}); "
            f"{hits} matching captions in the first {len(found)} shard(s)")


def all_checks(p: Params) -> list[tuple[str, Callable[[], str]]]:
    """Every check, in the order ``slug check`` prints them."""
    d = p.data
    return [
        ("refs", lambda: references(p)),
        ("world", lambda: world(p)),
        ("device", lambda: device(p.device)),
        ("model", lambda: clip_model(p)),
        ("sd.pipeline", _unless_pending(p, p.sd.pipeline,
                                        lambda: diffusion_pipeline(p.sd.pipeline))),
        ("canvas.pipeline", _unless_pending(p, p.canvas.pipeline,
                                            lambda: diffusion_pipeline(p.canvas.pipeline))),
        ("data.shards", _unless_pending(p, d.shards, lambda: shards(d.shards, d.shard_urls))),
        ("data.nonmembers", _unless_pending(p, d.nonmembers, lambda: shards(d.nonmembers, d.nonmember_urls))),
        *eval_layouts(p),
        ("canvas.grid", _unless_pending(p, d.unlearncanvas, lambda: canvas_grid(p))),
        ("concept", _unless_pending(p, d.shards, lambda: concept(p))),
    ]
