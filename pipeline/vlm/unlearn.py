"""SLUG for a vision-language model: the open_clip vision layers the VLM reads are ranked and
searched through the one SLUG entry point (``pipeline.unlearn.slug``), each trial judged on the
VLM's own answers; the searched tensor is mapped onto the VLM's vision tower by name
(``vision_tower.map_patch``) before every score, so what is judged is exactly what ships.

Scores, on search images only: ``forget`` is the share of the target's images whose answer names
the target; ``retain`` the share of the retained concepts' images whose answer names their own
concept (``llava.names_it``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..datasets.shards import ReadReport, Shard, iter_samples
from ..diffusion.text_encoder import apply_mapped
from ..errors import DataError, ModelError, NumericalError
from ..io import save_skipped
from ..models.structure import tower
from ..params import VLM_KINDS, RankParams, UnlearnParams, VLMParams
from . import llava
from . import vision_tower as vt


def readable(num_layers: int, feature_layer: int) -> Callable[[str], bool]:
    """The open_clip layers a VLM reading ``hidden_states[feature_layer]`` reads (for
    ``slug.rank``: the Pareto front is taken within them)."""
    return lambda name: tower(name) == "vision" and vt.is_read(name, num_layers, feature_layer)


@dataclass
class Questions:
    """Images, the question asked of each, and the names that count as naming its concept."""
    pixels: torch.Tensor
    questions: list[str]
    names: list[tuple[str, ...]]

    def __post_init__(self):
        if not (len(self.pixels) == len(self.questions) == len(self.names)) or not self.names:
            raise ValueError("pixels, questions and names must be as many, and not none")


def named_share(model, processor, q: Questions, template: str, batch_size: int = 64) -> float:
    """The share of ``q``'s images whose answer names their concept."""
    said = llava.answers(model, processor, q.pixels, q.questions, template, batch_size)
    return sum(llava.names_it(a, n) for a, n in zip(said, q.names)) / len(said)


class AnswerScorer:
    """A ``slug.Scorer`` on the VLM's answers. The search edits the open_clip model's parameter in
    place; ``score`` maps its current value onto the VLM's tower, asks, and puts the tower's
    tensor back, so the VLM is left as it was between trials."""

    def __init__(self, clip_model, vlm, processor, template: str, forget: Questions,
                 retained: Questions, batch_size: int = 64):
        self.tower = vlm.model.vision_tower
        vt.check_vision_tower(self.tower, clip_model, atol=1e-6)
        self.clip, self.vlm, self.processor, self.template = clip_model, vlm, processor, template
        self.forget, self.retained, self.batch_size = forget, retained, batch_size
        self.num_layers = self.tower.config.num_hidden_layers
        self.feature_layer = vlm.config.vision_feature_layer
        self.layer: str | None = None

    def prepare(self, layer: str, direction: torch.Tensor | None = None) -> None:
        vt.check_read([layer], self.num_layers, self.feature_layer)
        self.layer = layer

    @torch.no_grad()
    def score(self) -> tuple[float, float, dict]:
        if self.layer is None:
            raise RuntimeError("prepare(layer) before score()")
        value = dict(self.clip.named_parameters())[self.layer].detach()
        mapped = vt.map_patch({self.layer: value}, self.tower)
        have = self.tower.state_dict()
        saved = {k: have[k].detach().clone() for k in mapped}
        apply_mapped(self.tower, mapped)
        try:
            forget = named_share(self.vlm, self.processor, self.forget, self.template,
                                 self.batch_size)
            retain = named_share(self.vlm, self.processor, self.retained, self.template,
                                 self.batch_size)
        finally:
            apply_mapped(self.tower, saved)
        return forget, retain, {}


MAPPED = "vision_tower_patch.safetensors"


def layers(rows: list[dict], grads: dict, r: RankParams, num_layers: int, feature_layer: int) -> list[str]:
    """The layers to search: ranked (``rank.*``) among the vision layers the VLM reads, kept
    where the gradient pass stored a gradient."""
    from ..unlearn import slug

    ranked, _ = slug.rank(rows, slug.RankConfig(r.alignment == "signed", r.fronts, r.rule),
                          readable(num_layers, feature_layer))
    if not (kept := [x for x in ranked if x in grads]):
        raise DataError("no vision layer the VLM reads has a stored gradient; run the gradient "
                        "pass again")
    return kept


def split_questions(tar: Path, question: str, names: tuple[str, ...], preprocess,
                    limit: int | None = None) -> Questions:
    """The first ``limit`` images of a forget split, each asked ``question``."""
    report = ReadReport()
    pixels = []
    for _, img, _ in iter_samples([Shard(Path(tar))], report):
        pixels.append(preprocess(img))
        if limit is not None and len(pixels) == limit:
            break
    if not pixels:
        raise DataError(f"no readable image in {tar}")
    return Questions(torch.stack(pixels), [question] * len(pixels), [names] * len(pixels))


def labelled_questions(tar: Path, labels: dict[str, list[str]], questions: dict[str, str],
                       preprocess) -> Questions:
    """Every image of a VLM sets split, asked the question of its concept's kind."""
    report = ReadReport()
    pixels, qs, names = [], [], []
    for key, img, _ in iter_samples([Shard(Path(tar))], report):
        name, kind = labels[key]
        pixels.append(preprocess(img))
        qs.append(questions[kind])
        names.append((name,))
    return Questions(torch.stack(pixels), qs, names)


def hidden(tower, pixels: torch.Tensor, feature_layer: int) -> torch.Tensor:
    with torch.no_grad():
        return tower(pixels, output_hidden_states=True).hidden_states[feature_layer]


def check_mapping(clip_model, tower, res, mapped: dict[str, torch.Tensor], pixels: torch.Tensor,
                  feature_layer: int, atol: float = 1e-4) -> tuple[float, float]:
    """The largest difference between what the VLM reads of ``pixels`` and open_clip's same
    hidden state, before and after the edit (open_clip edited by the search's step, the tower
    by the mapped patch)."""
    from ..unlearn.slug import edited

    index = vt.read_blocks(tower.config.num_hidden_layers, feature_layer)

    def err():
        want = vt.open_clip_hidden_states(clip_model, pixels)[index]
        return float((hidden(tower, pixels, feature_layer) - want).abs().max())

    before = err()
    have = tower.state_dict()
    originals = {k: have[k].detach().clone() for k in mapped}
    apply_mapped(tower, mapped)
    try:
        with edited(dict(clip_model.named_parameters())[res.layer], res.grads[res.layer],
                    res.lam):
            after = err()
    finally:
        apply_mapped(tower, originals)
    if max(before, after) > atol:
        raise NumericalError(f"the mapped patch does not reproduce open_clip's vision features "
                             f"(max error {max(before, after):.2e})")
    return before, after


def save(patch, mapped: dict[str, torch.Tensor], folder: str | Path) -> None:
    """The patch (open_clip names) and its mapping onto the VLM's vision tower, as one folder
    (hashed)."""
    from ..unlearn import patch as patch_mod

    patch_mod.save(patch, folder, {MAPPED: mapped})


def load_mapped(folder: str | Path) -> dict[str, torch.Tensor]:
    """The patch mapped onto the vision tower, checked against the patch's hashes."""
    from ..unlearn import patch as patch_mod

    if not (Path(folder) / MAPPED).exists():
        raise ModelError(f"{Path(folder) / MAPPED} is missing; unlearn the VLM's vision tower "
                         f"first (params: vlm.patch)")
    return patch_mod.read_tensors(folder, MAPPED)


def search(bundle, vlm, processor, concept, grads: dict, layers: list[str], forget: Questions,
           v: VLMParams, u: UnlearnParams, sets_out: str, kinds: Callable[[], dict], retain=None,
           progress=lambda x, **k: x):
    """The step search through the one SLUG entry point, judged by ``v.search.judge``:
    ``answers`` (the VLM asked about the target's and the retained concepts' search images; then
    ``v.search.target``) or ``clip`` (the reference: CLIP zero-shot on the forget-search split;
    then ``u.target``; ``kinds()`` gives every kind's names and templates). Under
    ``u.selectivity`` the steps are projected on ``retain``'s inputs. When no layer reaches the
    target, the strongest trial is kept and the result says so (``reached``)."""
    from ..sets.build import load_split
    from ..unlearn import slug
    from . import sets as vs

    if v.search.judge == "answers":
        questions = {k: getattr(v.questions, k) for k in VLM_KINDS}
        retained = labelled_questions(*vs.read(v.sets.out, "search"), questions,
                                      llava.preprocess(processor))
        scorer = AnswerScorer(bundle.model, vlm, processor, v.template, forget, retained,
                              v.batch_size)
        target = v.search.target
    else:
        from ..unlearn.trials import TrialScorer

        splits = [load_split(sets_out, x, bundle.preprocess, bundle.tokenizer)
                  for x in ("forget_search", "retain_val")]
        scorer = TrialScorer(bundle.model, bundle.tokenizer, kinds(), concept, *splits, u.topk,
                             shortcut=u.shortcut)
        target = u.target
    grads, layers, proj = slug.selective(bundle.model, grads, layers, retain,
                                         slug.Selectivity(u.selectivity, u.energy))
    res = slug.search(bundle.model, grads, layers, scorer,
                      slug.SearchConfig(target, u.max_evals, u.scale0, u.rtol, u.prune),
                      fallback=slug.strongest, progress=progress, score_base=True)
    res.projection = proj
    return res, target


def metrics(res, concept, layers: list[str], judge: str, target: float,
            mapped: dict[str, torch.Tensor], errors: tuple[float, float],
            feature_layer: int) -> dict:
    """The text-encoder path's record of a mapped search (``diffusion.unlearn.metrics``), with
    the feature layer the VLM reads and whether the search reached its target (a VLM search
    that misses ships its strongest trial)."""
    from ..diffusion.unlearn import metrics as mapped_metrics

    m = mapped_metrics(res, concept, layers, judge, target, mapped, errors)
    m["search"]["reached"] = res.reached
    return {**m, "feature_layer": feature_layer}


def skip_unless_asked(concept, kinds, folder: str | Path) -> str | None:
    """For a concept of a kind the VLM is not asked to name: an empty patch folder that says
    why (the later stages report the skip), and the reason."""
    if concept.kind in kinds:
        return None
    why = f"{concept.label} is a {concept.kind}; the VLM is asked to name {', '.join(kinds)}"
    save_skipped(folder, why)
    return why


def target_questions(sets_out: str, concept, v: VLMParams, preprocess) -> Questions:
    """The target's first ``v.search.target_images`` forget-search images, asked the question
    of its kind; its name or an alias counts."""
    from ..sets.build import require_split

    return split_questions(require_split(sets_out, "forget_search"),
                           getattr(v.questions, concept.kind),
                           (concept.label, *concept.aliases), preprocess,
                           v.search.target_images)


def make_patch(res, bundle, concept, judge: str, target: float, provenance: dict):
    """The vision-tower patch with its manifest (what was searched and how)."""
    from ..models.structure import state_dict_hash

    return res.patch(bundle.model, {"concept": concept.label, "kind": concept.kind},
                     tower="vision", base_model=bundle.describe(),
                     base_model_sha256=state_dict_hash(bundle.model),
                     search={"judge": judge, "target": target, "reached": res.reached,
                             "forget": res.trial.forget, "retain": res.trial.retain},
                     selectivity=res.selectivity, **provenance)
