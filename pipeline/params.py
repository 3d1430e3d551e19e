"""Typed, validated params: one dataclass per stage group of params.yaml.

``params.yaml`` is the only place a value lives. This module keeps what a value may be: its type,
its range, its choices, and whether it names a file or folder (``path``; the dependency test
requires such a param, where a stage reads it, to be a declared ``dvc.yaml`` dep or out).
``load(path)`` checks every key before any heavy work starts; a bad or missing value fails at once
with a message that names the key, e.g.::

    params.yaml: pretrain.lr must be a number > 0, got 'fast'
    params.yaml: missing key unlearn.target (...)
"""

from __future__ import annotations

import dataclasses
import re
import string
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ParamsError

# The choices, each listed once; the library imports them from here.
PRECISIONS = ("fp32", "fp16", "bf16", "amp", "amp_bf16")
CONCEPT_KINDS = ("identity", "character", "object", "style")
RULES = ("front", "deepest", "best_ratio")  # which layers of the Pareto front to search
ALIGNMENTS = ("abs", "signed")
RETAIN_SOURCES = ("fresh", "pool")  # gradients.retain: a fresh pass, or the amortised pool
SELECTIVITY = ("none", "nullspace")  # unlearn.selectivity: the paper's step, or projected
MAX_FRONTS = 3  # the gradients stage stores the forget gradients of fronts 1..MAX_FRONTS
BASELINE_METHODS = ("ft", "ga", "gaft", "salun_ref", "ssd")
ITERATIVE_METHODS = ("ft", "ga", "gaft", "salun_ref")
DAMAGE_POLICIES = ("error", "skip")  # data.on_damaged_shard
MULTI_STRATEGIES = ("joint", "sequential")  # several concepts at once (pipeline.unlearn.multi)
VLM_KINDS = ("identity", "character", "object")  # what a VLM is asked to name
MIX_KINDS = ("identity", "character", "object", "style", "distractor")
DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"


def _choice(*values):
    return {"choices": values}


def _range(lo=None, hi=None, lo_open=False):
    return {"range": (lo, hi, lo_open)}


def _path():
    return {"path": True}


def _ref(name: str):
    """A model reference (``pipeline.refs``): a local file or folder, which ``refs.<name>`` lists
    so that DVC hashes it, or a name (an open_clip tag, a hub id), tracked as a param."""
    return {"ref": name}


@dataclass
class TinyWorldParams:
    """The embedded default's synthetic world (``tinyworld`` stage)."""
    n_shards: int = field(metadata=_range(1))
    samples_per_shard: int = field(metadata=_range(10))
    fail_rate: float = field(metadata=_range(0.0, 0.5))
    mix: dict
    anonymous_rate: float = field(metadata=_range(0.0, 1.0))
    celeba_per_identity: int = field(metadata=_range(1))
    imagenet_per_class: int = field(metadata=_range(1))
    characters_per_class: int = field(metadata=_range(1))
    canvas_per_pair: int = field(metadata=_range(1))
    holdout_samples: int = field(metadata=_range(10))
    jpeg_quality: int = field(metadata=_range(50, 100))
    workers: int = field(metadata=_range(1))
    out: str = field(metadata=_path())


@dataclass
class DataParams:
    shards: str = field(metadata=_path())
    celeba: str = field(metadata=_path())
    imagenet: str = field(metadata=_path())
    characters: str = field(metadata=_path())
    unlearncanvas: str = field(metadata=_path())
    nonmembers: str = field(metadata=_path())
    shard_urls: str = field(metadata={"empty_ok": True})  # "": the tars are in `shards`
    nonmember_urls: str = field(metadata={"empty_ok": True})
    on_damaged_shard: str = field(metadata=_choice(*DAMAGE_POLICIES))
    max_damaged_share: float = field(metadata=_range(0.0, 1.0))
    workers: int = field(metadata=_range(1))


@dataclass
class ModelParams:
    name: str
    pretrained: str = field(metadata=_ref("clip"))
    quick_gelu: bool
    precision: str = field(metadata=_choice(*PRECISIONS))


@dataclass
class PretrainParams:
    arch: str
    steps: int = field(metadata=_range(1))
    batch_size: int = field(metadata=_range(2))
    lr: float = field(metadata=_range(0.0, None, lo_open=True))
    weight_decay: float = field(metadata=_range(0.0))
    warmup: int = field(metadata=_range(0))
    eval_every: int = field(metadata=_range(1))
    augment_shift: int = field(metadata=_range(0))
    out: str = field(metadata=_path())


@dataclass
class EvalTemplates:
    identities: list
    characters: list
    objects: list
    styles: list


@dataclass
class EvalParams:
    templates: EvalTemplates


@dataclass
class FilterParams:
    aliases: list = field(metadata={"empty_ok": True})
    max_matches: int = field(metadata=_range(2))
    check_shards: int = field(metadata=_range(1))
    out: str = field(metadata=_path())


@dataclass
class SetsParams:
    out: str = field(metadata=_path())
    test_fraction: float = field(metadata=_range(0.05, 0.95))
    n_retain: int = field(metadata=_range(2))
    n_retain_val: int = field(metadata=_range(2))
    n_nonmembers: int = field(metadata=_range(0))


@dataclass
class GradientsParams:
    batch_size: int = field(metadata=_range(2))
    max_forget: int | None = field(metadata=_range(1))  # None: every forget-search pair
    retain: str = field(metadata=_choice(*RETAIN_SOURCES))
    exclude: list
    out: str = field(metadata=_path())
    nproc: int = field(metadata=_range(1))  # processes of the stage's pass (pipeline.distributed)


@dataclass
class PoolParams:
    """The retain pool (stage retain_pool): the amortised retain gradient."""
    n: int = field(metadata=_range(2))
    out: str = field(metadata=_path())


@dataclass
class RankParams:
    rule: str = field(metadata=_choice(*RULES))
    alignment: str = field(metadata=_choice(*ALIGNMENTS))
    fronts: int = field(metadata=_range(1, MAX_FRONTS))
    out: str = field(metadata=_path())


@dataclass
class UnlearnParams:
    topk: int = field(metadata=_range(1))
    target: float = field(metadata=_range(0.0, 1.0))
    max_evals: int = field(metadata=_range(1, 50))
    rtol: float = field(metadata=_range(0.0, None))
    prune: bool
    shortcut: bool
    selectivity: str = field(metadata=_choice(*SELECTIVITY))
    energy: float = field(metadata=_range(0.0, 1.0, lo_open=True))
    scale0: float = field(metadata=_range(0.0, None, lo_open=True))
    out: str = field(metadata=_path())
    trace: str = field(metadata=_path())


@dataclass
class BaselineLR:
    """One learning rate per iterative method."""
    ft: float = field(metadata=_range(0.0, None, lo_open=True))
    ga: float = field(metadata=_range(0.0, None, lo_open=True))
    gaft: float = field(metadata=_range(0.0, None, lo_open=True))
    salun_ref: float = field(metadata=_range(0.0, None, lo_open=True))


@dataclass
class SSDParams:
    alpha: float = field(metadata=_range(0.0, None, lo_open=True))
    lam: float = field(metadata=_range(0.0, None, lo_open=True))
    batch_size: int = field(metadata=_range(1))
    max_evals: int = field(metadata=_range(1, 50))


@dataclass
class BaselinesParams:
    methods: list = field(metadata={"each": BASELINE_METHODS})
    selective: list = field(metadata={"each": SELECTIVITY})
    epochs: int = field(metadata=_range(1))
    batch_size: int = field(metadata=_range(2))
    weight_decay: float = field(metadata=_range(0.0))
    checks_per_epoch: int = field(metadata=_range(1))
    lr: BaselineLR
    salun_mask_fraction: float = field(metadata=_range(0.0, 1.0, lo_open=True))
    ssd: SSDParams
    out: str = field(metadata=_path())


@dataclass
class SDTrainParams:
    """The tiny text-to-image model (embedded default only)."""
    out: str = field(metadata=_path())
    image_size: int = field(metadata=_range(8))
    vae_width: int = field(metadata=_range(8))
    unet_width: int = field(metadata=_range(16))
    vae_steps: int = field(metadata=_range(1))
    unet_steps: int = field(metadata=_range(1))
    batch_size: int = field(metadata=_range(2))
    vae_lr: float = field(metadata=_range(0.0, None, lo_open=True))
    unet_lr: float = field(metadata=_range(0.0, None, lo_open=True))
    cond_drop: float = field(metadata=_range(0.0, 1.0))


@dataclass
class SDPromptTemplates:
    identity: str
    character: str
    object: str
    style: str


@dataclass
class SDEvaluateParams:
    images_per_prompt: int = field(metadata=_range(1))
    steps: int = field(metadata=_range(1))
    guidance: float = field(metadata=_range(0.0))
    retained_per_kind: int = field(metadata=_range(1))
    judge_over: str = field(metadata=_choice("all", "kind"))
    templates: SDPromptTemplates
    grid_images: int = field(metadata=_range(1))


@dataclass
class SDSearchParams:
    """How sd_unlearn judges a step: by generations (search seeds, never the evaluation seeds) or,
    as the reference, by CLIP zero-shot on the forget-search split (then ``unlearn.target``)."""
    judge: str = field(metadata=_choice("generations", "clip"))
    target_images: int = field(metadata=_range(1))
    images_per_prompt: int = field(metadata=_range(1))
    retained_per_kind: int = field(metadata=_range(1))
    target: float = field(metadata=_range(0.0, 1.0))


@dataclass
class SDParams:
    pipeline: str = field(metadata=_ref("sd"))  # a diffusers pipeline folder or a hub id
    train: SDTrainParams
    patch: str = field(metadata=_path())
    search: SDSearchParams
    evaluate: SDEvaluateParams


@dataclass
class CanvasClassifierParams:
    """The style and object judges. ``tiny-cnn``: trained by canvas_classifiers on the canvas;
    any other name: a timm architecture (UnlearnCanvas: vit_large_patch16_224) whose local
    checkpoint is loaded with ``weights_only=True``."""
    arch: str
    style: str = field(metadata=_path())
    object: str = field(metadata=_path())
    key: str  # where a .pth checkpoint keeps its state dict ("-": top level)
    image_size: int = field(metadata=_range(8))
    mean: float
    std: float = field(metadata=_range(0.0, None, lo_open=True))


@dataclass
class CanvasTrainParams:
    """The tiny classifiers (embedded default only)."""
    width: int = field(metadata=_range(8))
    epochs: int = field(metadata=_range(1))
    batch_size: int = field(metadata=_range(2))
    lr: float = field(metadata=_range(0.0, None, lo_open=True))
    val_fraction: float = field(metadata=_range(0.0, 0.9, lo_open=True))
    blur: float = field(metadata=_range(0.0))
    out: str = field(metadata=_path())


@dataclass
class CanvasFinetuneParams:
    """The tiny generator fine-tuned on the canvas grid (embedded default only)."""
    out: str = field(metadata=_path())
    steps: int = field(metadata=_range(1))
    batch_size: int = field(metadata=_range(2))
    lr: float = field(metadata=_range(0.0, None, lo_open=True))


@dataclass
class CanvasSearchParams:
    """The step search judges generations from *search* seeds, never the evaluation seeds."""
    images_per_prompt: int = field(metadata=_range(1))
    retained_prompts: int = field(metadata=_range(1))
    target: float = field(metadata=_range(0.0, 1.0))
    rule: str = field(metadata=_choice(*RULES))
    fronts: int = field(metadata=_range(1))
    max_evals: int = field(metadata=_range(1))


@dataclass
class CanvasEvaluateParams:
    images_per_prompt: int = field(metadata=_range(1))
    steps: int = field(metadata=_range(1))
    guidance: float = field(metadata=_range(0.0))


@dataclass
class CanvasParams:
    pipeline: str = field(metadata=_ref("canvas"))
    styles: list
    objects: list
    methods: list = field(metadata={"each": SELECTIVITY})
    prompt: str
    forget_captions: str = field(metadata=_choice("name", "prompt"))
    n_retain: int = field(metadata=_range(2))
    sets: str = field(metadata=_path())
    classifiers: CanvasClassifierParams
    train: CanvasTrainParams
    finetune: CanvasFinetuneParams
    search: CanvasSearchParams
    evaluate: CanvasEvaluateParams
    base: str = field(metadata=_path())
    patch: str = field(metadata=_path())
    out: str = field(metadata=_path())
    table: str = field(metadata=_path())


@dataclass
class VLMQuestions:
    """What the VLM is asked about an image of each kind."""
    identity: str
    character: str
    object: str


@dataclass
class VLMTrainParams:
    """The tiny LLaVA (embedded default only)."""
    out: str = field(metadata=_path())
    feature_layer: int
    vocab_size: int = field(metadata=_range(64))
    width: int = field(metadata=_range(16))
    layers: int = field(metadata=_range(1))
    heads: int = field(metadata=_range(1))
    steps: int = field(metadata=_range(1))
    batch_size: int = field(metadata=_range(1))
    lr: float = field(metadata=_range(0.0, None, lo_open=True))


@dataclass
class VLMSetsParams:
    retained_per_kind: int = field(metadata=_range(1))
    search_images: int = field(metadata=_range(1))
    eval_images: int = field(metadata=_range(1))
    out: str = field(metadata=_path())


@dataclass
class VLMSearchParams:
    """How vlm_unlearn judges a step: by the VLM's answers on search images, or as the reference,
    by CLIP zero-shot on the forget-search split (then ``unlearn.target``)."""
    judge: str = field(metadata=_choice("answers", "clip"))
    target_images: int = field(metadata=_range(1))
    target: float = field(metadata=_range(0.0, 1.0))


@dataclass
class VLMParams:
    model: str = field(metadata=_ref("vlm"))  # a LLaVA folder
    template: str
    questions: VLMQuestions
    max_new_tokens: int = field(metadata=_range(1))
    batch_size: int = field(metadata=_range(1))
    sets: VLMSetsParams
    search: VLMSearchParams
    grid_images: int = field(metadata=_range(1))
    patch: str = field(metadata=_path())
    train: VLMTrainParams


@dataclass
class EvaluateParams:
    frequent: int = field(metadata=_range(1))
    mia_seeds: int = field(metadata=_range(1))
    matrix_images_per_class: int = field(metadata=_range(1))
    batch_size: int = field(metadata=_range(1))
    imagenet_images: int | None = field(metadata=_range(1))  # None: every image


@dataclass
class OracleParams:
    concepts: list = field(metadata={"empty_ok": True})
    out: str = field(metadata=_path())


@dataclass
class MultiParams:
    strategy: str = field(metadata=_choice(*MULTI_STRATEGIES))
    rounds: int = field(metadata=_range(1))
    aliases: dict
    kinds: dict
    sets: str = field(metadata=_path())
    grads: str = field(metadata=_path())
    retain: str = field(metadata=_path())
    stack: str = field(metadata=_path())


@dataclass
class Params:
    concept: str
    concept_kind: str = field(metadata=_choice("auto", *CONCEPT_KINDS))
    concepts: list = field(metadata={"empty_ok": True})
    seed: int = field(metadata=_range(0))
    world: str = field(metadata=_choice("tiny", "real"))
    device: str = field(metadata={"pattern": DEVICE_PATTERN,
                                  "expect": "auto, cpu, cuda, cuda:N or mps"})
    data: DataParams
    refs: dict
    tinyworld: TinyWorldParams
    model: ModelParams
    pretrain: PretrainParams
    eval: EvalParams
    filter: FilterParams
    sets: SetsParams
    gradients: GradientsParams
    pool: PoolParams
    rank: RankParams
    unlearn: UnlearnParams
    evaluate: EvaluateParams
    baselines: BaselinesParams
    oracle: OracleParams
    sd: SDParams
    vlm: VLMParams
    multi: MultiParams
    canvas: CanvasParams


def _fail(key: str, msg: str, value: Any) -> typing.NoReturn:
    raise ParamsError(f"params.yaml: {key} {msg}, got {value!r}")


def _convert(key: str, tp, value: Any, meta: dict):
    if typing.get_origin(tp) in (typing.Union, types.UnionType):  # ``X | None``: null allowed
        if value is None:
            return None
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            _fail(key, "must be a mapping", value)
        return _build(tp, value, key + ".")
    if tp is bool:
        if not isinstance(value, bool):
            _fail(key, "must be true or false", value)
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(key, "must be an integer", value)
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(key, "must be a number", value)
        value = float(value)
    elif tp is str:
        if not isinstance(value, str) or not (value.strip() or meta.get("empty_ok")):
            _fail(key, "must be a non-empty string", value)
    elif tp is list:
        if not isinstance(value, list) or (not value and not meta.get("empty_ok")):
            _fail(key, "must be a non-empty list", value)
        if not all(isinstance(v, str) and v.strip() for v in value):
            _fail(key, "must hold non-empty strings", value)
    elif tp is dict:
        if not isinstance(value, dict):
            _fail(key, "must be a mapping", value)
    if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
        _fail(key, f"must be {meta['expect']}", value)
    if "choices" in meta and value not in meta["choices"]:
        _fail(key, f"must be one of {', '.join(map(str, meta['choices']))}", value)
    for v in value if "each" in meta else ():
        if v not in meta["each"]:
            _fail(key, f"must hold names from {', '.join(meta['each'])}", v)
    if "range" in meta:
        lo, hi, lo_open = meta["range"]
        if lo is not None and (value < lo or (lo_open and value == lo)):
            _fail(key, f"must be {'>' if lo_open else '>='} {lo}", value)
        if hi is not None and value > hi:
            _fail(key, f"must be <= {hi}", value)
    return value


def _build(cls, raw: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ParamsError(f"params.yaml: unknown key {prefix}{unknown[0]}; allowed under "
                          f"{prefix.rstrip('.') or 'the top level'}: {', '.join(sorted(known))}")
    missing = [k for k in known if k not in raw]
    if missing:
        raise ParamsError(f"params.yaml: missing key {prefix}{missing[0]} (every value lives in "
                          f"params.yaml; copy it from the repository's params.yaml)")
    return cls(**{f.name: _convert(prefix + f.name, hints[f.name], raw[f.name], dict(f.metadata))
                  for f in dataclasses.fields(cls)})


def _validate_mix(p: Params) -> None:
    mix = p.tinyworld.mix
    if set(mix) != set(MIX_KINDS):
        _fail("tinyworld.mix", f"must have exactly the keys {', '.join(MIX_KINDS)}", mix)
    if any(not isinstance(v, (int, float)) or v < 0 for v in mix.values()) or not sum(mix.values()):
        _fail("tinyworld.mix", "must hold non-negative weights with a positive sum", mix)


def _fields(template: str) -> list[str]:
    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError:
        return []


def _validate_concepts(p: Params) -> None:
    """``concepts``, ``multi.aliases`` and ``multi.kinds``: each concept named once (the name
    rule); each alias list and kind under a concept of the list; each kind a known one."""
    from .names import key

    keys = [key(c) for c in p.concepts]  # non-empty strings: checked by type
    if len(set(keys)) != len(keys):
        _fail("concepts", "must name each concept once", p.concepts)
    for group in ("aliases", "kinds"):
        for name in getattr(p.multi, group):
            if key(name) not in keys:
                _fail(f"multi.{group}.{name}", f"names no concept of `concepts` "
                      f"({', '.join(p.concepts) or 'none'})", name)
    for name, more in p.multi.aliases.items():
        if not isinstance(more, list) or not all(isinstance(a, str) and a.strip() for a in more):
            _fail(f"multi.aliases.{name}", "must be a list of non-empty strings", more)
    for name, kind in p.multi.kinds.items():
        if kind not in ("auto", *CONCEPT_KINDS):
            _fail(f"multi.kinds.{name}", f"must be one of auto, {', '.join(CONCEPT_KINDS)}", kind)


def from_dict(raw: dict) -> Params:
    if not isinstance(raw, dict):
        raise ParamsError("params.yaml must be a mapping of stage groups")
    p = _build(Params, raw)
    _validate_mix(p)
    _validate_concepts(p)
    refs = ref_keys()
    for name, value in p.refs.items():
        if name not in refs.values():
            _fail(f"refs.{name}", f"is not a model reference; known: {', '.join(refs.values())}",
                  value)
        if not isinstance(value, str) or not value.strip():
            _fail(f"refs.{name}", "must be a local file or folder", value)
    for key in ("vae_width", "unet_width"):
        if getattr(p.sd.train, key) % 8:
            _fail(f"sd.train.{key}", "must be a multiple of 8 (group norm)", getattr(p.sd.train, key))
    for kind in CONCEPT_KINDS:
        t = getattr(p.sd.evaluate.templates, kind)
        if t.count("{}") != 1:
            _fail(f"sd.evaluate.templates.{kind}", "must hold exactly one '{}'", t)
    for kind in ("identities", "characters", "objects", "styles"):
        for t in getattr(p.eval.templates, kind):
            if not isinstance(t, str) or t.count("{}") != 1:
                _fail(f"eval.templates.{kind}", "must hold strings with exactly one '{}'", t)
    if _fields(p.vlm.template) != ["question"] or p.vlm.template.count("<image>") != 1:
        _fail("vlm.template", "must hold exactly one '<image>' and one '{question}'",
              p.vlm.template)
    if sorted(_fields(p.canvas.prompt)) != ["object", "style"]:
        _fail("canvas.prompt", "must hold exactly one '{object}' and one '{style}'",
              p.canvas.prompt)
    return p


def load(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path} not found; run from the repository root")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return from_dict(raw)


def to_dict(p) -> dict:
    return dataclasses.asdict(p)


def path_keys(cls=None, prefix: str = "") -> list[str]:
    """Every key whose value names a file or folder (``path`` in its metadata)."""
    cls = cls or Params
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += path_keys(hints[f.name], f"{prefix}{f.name}.")
        elif f.metadata.get("path"):
            out.append(prefix + f.name)
    return out


def ref_keys(cls=None, prefix: str = "") -> dict[str, str]:
    """Every key whose value is a model reference, with the reference's name in ``refs``:
    ``{"model.pretrained": "clip", ...}``."""
    cls = cls or Params
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(ref_keys(hints[f.name], f"{prefix}{f.name}."))
        elif f.metadata.get("ref"):
            out[prefix + f.name] = f.metadata["ref"]
    return out
