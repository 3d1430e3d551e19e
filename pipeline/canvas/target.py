"""SLUG for one UnlearnCanvas target (a style or an object), on the generator's text encoder.

1. One gradient pass over the text tower only (the generator has no vision tower; the image
   features come from the frozen CLIP vision tower): forget = the target's canvas images, captioned
   with the concept name (the reference) or their prompts; retain = other concepts' canvas images
   with their prompts, interleaved so that a batch rarely repeats a prompt (the contrastive loss
   needs distinct texts; the reference's HF path replaced them all by the name, B4).
2. Rank the text layers the pipeline's encoder has; pick by ``rule``.
3. Search the step on generations from *search* seeds, judged by the target kind's classifier:
   forget = share of the target's images still judged as it, retain = accuracy on other concepts.
   Where no layer reaches the search threshold, the strongest trial is reported, flagged.
4. Judge the whole grid on the evaluation seeds with the patch mapped onto the encoder.

All through the one SLUG entry point (``pipeline.unlearn.slug``) with a generation scorer.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..datasets.pairs import PairData, concat, load_pairs
from ..datasets.shards import Shard
from ..diffusion import sd as sd_mod
from ..diffusion import text_encoder as hf_text
from ..diffusion import unlearn as sd_unlearn
from ..diffusion.scorer import SEARCH_SEED_OFFSET, GenerationScorer, PromptSet
from ..errors import DataError
from ..io import sha256_file
from ..measure import Meter
from ..models.factory import from_params
from ..models.structure import state_dict_hash, tower
from ..names import label
from ..params import CanvasParams, GradientsParams, ModelParams
from ..unlearn import slug
from .classifiers import Judge, load_judges
from .data import Canvas, Target, tar_name
from .protocol import Grid, grid_settings, judge_grid, read_grid, scores


def interleave(captions: list[str], n: int) -> list[int]:
    """Up to ``n`` indices taking one image per distinct caption in turn (first images first)."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(captions):
        groups.setdefault(c, []).append(i)
    order, depth = [], 0
    while len(order) < n and any(depth < len(g) for g in groups.values()):
        order += [g[depth] for g in groups.values() if depth < len(g)]
        depth += 1
    return order[:n]


def _subset(d: PairData, idx: list[int]) -> PairData:
    return PairData(d.images[idx], d.tokens[idx], [d.captions[i] for i in idx], d.report,
                    [d.keys[i] for i in idx] if d.keys else [])


def halves(canvas: Canvas, target: Target) -> tuple[list[str], list[str]]:
    """The other concepts of the target's kind in two halves (every other one, in the canvas's
    order): the selective step's projection sees the first only, so the second shows whether
    what it keeps generalises."""
    others = [n for n in canvas.names(target.kind) if n != target.name]
    return others[0::2], others[1::2]


def forget_retain(canvas: Canvas, target: Target, tars: str | Path, preprocess: Callable,
                  tokenizer: Callable, captions: str, n_retain: int
                  ) -> tuple[PairData, PairData, list[str]]:
    """The forget pairs, the retain pairs (other concepts of the kind, interleaved) and the
    concept of each retain pair."""
    tars = Path(tars)
    path = tars / tar_name(target.kind, target.name)
    if not path.exists():
        raise DataError(f"forget tar {path} not found; write the canvas forget tars first "
                        f"(params: canvas.sets)")
    forget = load_pairs([Shard(path)], preprocess, tokenizer)
    if captions == "name":
        forget.tokens = tokenizer([label(target.name)] * len(forget.captions))
    others = [n for n in canvas.names(target.kind) if n != target.name]
    if not others:
        raise DataError(f"no other {target.kind} to retain: the canvas lists only {target.name}")
    parts = [load_pairs([Shard(tars / tar_name(target.kind, n))], preprocess, tokenizer)
             for n in others]
    retain, concepts = concat(*parts), [n for n, d in zip(others, parts) for _ in d.captions]
    order = interleave(retain.captions, n_retain)
    return forget, _subset(retain, order), [concepts[i] for i in order]


@dataclass(frozen=True)
class CanvasPrompt:
    text: str
    truth: int  # the index, in the judged kind, of the concept the prompt asks for


def _hits(judge: Judge):
    def hits(images01, prompts, per_prompt: int) -> list[bool]:
        truth = torch.tensor([pr.truth for pr in prompts]).repeat_interleave(per_prompt)
        return (judge.predict(images01) == truth).tolist()
    return hits


def scorer(pipe, clip_model, canvas: Canvas, template: str, target: Target, judge: Judge,
           per_prompt: int, retained: int, seed: int, steps: int, guidance: float,
           size: int) -> GenerationScorer:
    """The target's prompts (every cell of its row or column, ``per_prompt`` images each) and
    ``retained`` other cells of the same kind (one image each), on search seeds."""
    n_other = len(canvas.objects if target.kind == "style" else canvas.styles)

    def cell(concept: int, other: int) -> tuple[int, int]:
        return (concept, other) if target.kind == "style" else (other, concept)

    targets = [CanvasPrompt(canvas.prompt(template, *cell(target.index, x)), target.index)
               for x in range(n_other)]
    others = [i for i in range(len(canvas.names(target.kind))) if i != target.index]
    rng = np.random.default_rng(seed)
    picks = [(c, int(x)) for x in range(n_other) for c in others]  # every other cell
    picks = [picks[i] for i in rng.permutation(len(picks))]
    picks = sorted(picks[:retained], key=lambda t: (t[0], t[1]))
    kept = [CanvasPrompt(canvas.prompt(template, *cell(c, x)), c) for c, x in picks]
    seed += SEARCH_SEED_OFFSET
    return GenerationScorer(pipe, clip_model, PromptSet(targets, per_prompt, seed),
                            PromptSet(kept, 1, seed + 500_000), _hits(judge), steps, guidance,
                            size)


@dataclass
class TargetResult:
    slug: slug.Slug
    patch: object  # pipeline.unlearn.patch.Patch
    mapped: dict[str, torch.Tensor]
    before: Grid
    after: Grid
    time_s: float  # the unlearning: data, gradients, ranking, search
    peak_bytes: int
    eval_s: float
    forget_pairs: int
    retain_pairs: int
    device: torch.device
    base_hash: str
    halves: tuple[list[str], list[str]]  # other concepts: seen by a projection, and not
    method: str  # slug.Selectivity.method


def run(canvas: Canvas, target: Target, c: CanvasParams, model: ModelParams,
        g: GradientsParams, *, device: str, seed: int, signed: bool, scale0: float,
        selectivity: slug.Selectivity = slug.Selectivity(),
        progress=lambda x, **k: x) -> TargetResult:
    """SLUG on the generator's text tower for one target (the strongest trial if no layer reaches
    the search threshold), then the whole grid judged on the evaluation seeds with the patch
    mapped onto the encoder, beside the unedited grid (``c.base``)."""
    torch.manual_seed(seed)
    s, e, k = c.search, c.evaluate, c.classifiers
    before = read_grid(c.base, grid_settings(c.styles, c.objects, c.prompt, seed, e, k.style,
                                             k.object))
    bundle = from_params(model, device)
    clip, base_hash = bundle.model, state_dict_hash(bundle.model)
    pipe = sd_mod.load(c.pipeline, next(clip.parameters()).device)
    sd_mod.check_text_encoder(pipe.text_encoder, clip, atol=1e-6)
    judges = load_judges(k, c.styles, c.objects, pipe.device)
    search = slug.SearchConfig(s.target, s.max_evals, scale0)
    with Meter(pipe.device) as meter:
        forget, retain, concepts = forget_retain(canvas, target, c.sets, bundle.preprocess,
                                                 bundle.tokenizer, c.forget_captions, c.n_retain)
        seen = set(halves(canvas, target)[0])
        projection_set = _subset(retain, [i for i, n in enumerate(concepts) if n in seen])
        sc = scorer(pipe, clip, canvas, c.prompt, target, judges[target.kind == "object"],
                    s.images_per_prompt, s.retained_prompts, seed, e.steps, e.guidance,
                    sd_mod.image_size(pipe))
        res = slug.unlearn(clip, forget, retain, sc, search, slug.RankConfig(signed, s.fronts,
                                                                            s.rule),
                           batch_size=g.batch_size, exclude=g.exclude,
                           readable=sd_unlearn.readable(pipe.text_encoder),
                           trainable=lambda n: tower(n) == "text", fallback=slug.strongest,
                           selectivity=selectivity, projection_set=projection_set,
                           progress=progress)
    if not res.reached:  # a benchmark row still needs numbers: the strongest forgetting tried
        print(f"warning: {target.name}: no text layer reached a search accuracy <= "
              f"{search.target} within {search.max_evals} evaluations; reporting the lowest one "
              f"tried ({res.trial.forget:.3f}), flagged reached: false", file=sys.stderr)
    patch = res.patch(clip, {"concept": target.name, "kind": target.kind}, tower="text",
                      base_model=bundle.describe(), base_model_sha256=base_hash, seed=seed,
                      search={"target": search.target, "reached": res.reached,
                              "forget": res.trial.forget, "retain": res.trial.retain})
    mapped = hf_text.map_patch(patch.tensors, pipe.text_encoder)
    start = time.time()
    enc = pipe.text_encoder.state_dict()
    originals = {k: enc[k].detach().clone() for k in mapped}
    hf_text.apply_mapped(pipe.text_encoder, mapped)
    try:
        after = judge_grid(pipe, canvas, c.prompt, *judges, e.images_per_prompt, seed, e.steps,
                           e.guidance, sd_mod.image_size(pipe))
    finally:
        hf_text.apply_mapped(pipe.text_encoder, originals)
    return TargetResult(res, patch, mapped, before, after, meter.time_s, meter.peak_bytes,
                        time.time() - start, len(forget.images), len(retain.images),
                        pipe.device, base_hash, halves(canvas, target), selectivity.method)


def metrics(r: TargetResult, target: Target, c: CanvasParams, storage_bytes: int) -> dict:
    res, before, after = r.slug, scores(r.before, target), scores(r.after, target)
    names = c.styles if target.kind == "style" else c.objects
    split = {}
    for half, members in zip(("seen", "unseen"), r.halves):
        if not members:  # one other concept only: no unseen half
            continue
        idx = [names.index(n) for n in members]
        b, a = scores(r.before, target, idx), scores(r.after, target, idx)
        split[half] = {"concepts": members, "IRA": a["IRA"], "CRA": a["CRA"],
                       "ceiling": {"IRA": b["IRA"], "CRA": b["CRA"]}}
    rule, eval_per_prompt = c.search.rule, c.evaluate.images_per_prompt
    return {
        "concept": target.name, "kind": target.kind, "method": r.method, "skipped": False,
        "UA": after["UA"], "IRA": after["IRA"], "CRA": after["CRA"],
        "before": before, "after": after, "ceiling": {"IRA": before["IRA"], "CRA": before["CRA"]},
        "halves": split,
        "selectivity": res.selectivity,
        "layer": res.layer, "mapped_tensors": sorted(r.mapped), "lambda": res.lam,
        "rel_step": res.rel_step,
        "search": {"rule": rule, "target": r.patch.manifest["search"]["target"],
                   "reached": res.reached, "forget": res.trial.forget,
                   "retain": res.trial.retain, "evaluations": res.evaluations,
                   "layers": {x.layer: [{"rel_step": x.rel(t.lam), "forget": t.forget,
                                         "retain": t.retain} for t in x.result.trials]
                              for x in res.searches},
                   "forget_pairs": r.forget_pairs, "retain_pairs": r.retain_pairs},
        "ranking": [{k: row[k] for k in ("name", "importance", "alignment", "front_level")}
                    for row in sorted(res.ranking, key=lambda x: (x["front_level"],
                                                                  -x["importance"]))],
        "time_s": round(r.time_s, 2), "peak_memory_mb": round(r.peak_bytes / 2 ** 20, 1),
        "memory_measure": "CUDA max allocated" if r.device.type == "cuda" else
        "growth of the process RSS over the loaded models",
        "storage_mb": round(storage_bytes / 2 ** 20, 4),
        "eval": {"images": int(r.after.style_acc.size * eval_per_prompt),
                 "images_per_prompt": eval_per_prompt, "time_s": round(r.eval_s, 1)},
        "seed": r.patch.manifest["seed"], "torch": torch.__version__,
        "threads": torch.get_num_threads(), "base_model_sha256": r.base_hash,
        "forget_tar_sha256": sha256_file(Path(c.sets) / tar_name(target.kind, target.name)),
    }


def find_or_skip(canvas: Canvas, name: str, explicit: bool, patch_dir: str | Path,
                 metrics_file: str | Path) -> Target | None:
    """The target named ``name``; for a concept that is no canvas style or object, an error when
    it was asked for ``explicit``-ly, else a reported skip (a marker patch folder, metrics that
    say why) and None."""
    from ..io import atomic_dir, write_json
    from .data import find_target

    target = find_target(canvas, name)
    if target is not None:
        return target
    if explicit:
        raise DataError(f"{name!r} is neither a style (canvas.styles) nor an object "
                        f"(canvas.objects)")
    with atomic_dir(patch_dir) as tmp:
        (tmp / "SKIPPED").write_text(f"{name} is no UnlearnCanvas style or object\n")
    write_json(metrics_file, {"concept": name, "skipped": True, "reason":
                              f"{name!r} is neither a canvas style nor object; run "
                              f"`dvc exp run -S concept=<Style or Object>`"})
    print(f"canvas: skipped, {name!r} is no UnlearnCanvas style or object")
    return None
