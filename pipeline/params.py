"""Typed, validated params: one dataclass per stage group of params.yaml.

``load(path)`` checks every key before any heavy work starts. A bad value fails at once with a
message that names the key and what is allowed, e.g.::

    params.yaml: pretrain.lr must be a number > 0, got 'fast'
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ParamsError

PRECISIONS = ("fp32", "fp16", "bf16", "amp", "amp_bf16")


def _choice(*values):
    return {"choices": values}


def _range(lo=None, hi=None, lo_open=False):
    return {"range": (lo, hi, lo_open)}


@dataclass
class TinyWorldParams:
    n_shards: int = field(default=4, metadata=_range(1))
    samples_per_shard: int = field(default=10000, metadata=_range(10))
    fail_rate: float = field(default=0.03, metadata=_range(0.0, 0.5))
    mix: dict = field(default_factory=lambda: {"identity": 0.34, "character": 0.1, "object": 0.32,
                                               "style": 0.22, "distractor": 0.02})
    anonymous_rate: float = field(default=0.08, metadata=_range(0.0, 1.0))
    celeba_per_identity: int = field(default=40, metadata=_range(1))
    imagenet_per_class: int = field(default=50, metadata=_range(1))
    characters_per_class: int = field(default=40, metadata=_range(1))
    canvas_per_pair: int = field(default=10, metadata=_range(1))
    holdout_samples: int = field(default=1000, metadata=_range(10))
    jpeg_quality: int = field(default=90, metadata=_range(50, 100))
    workers: int = field(default=2, metadata=_range(1))
    out: str = "data/tiny"


@dataclass
class DataParams:
    shards: str = "data/tiny/laion"
    celeba: str = "data/tiny/celeba"
    imagenet: str = "data/tiny/imagenet"
    characters: str = "data/tiny/characters"
    unlearncanvas: str = "data/tiny/unlearncanvas"
    nonmembers: str = "data/tiny/holdout"


@dataclass
class ModelParams:
    name: str = "tiny-clip"
    pretrained: str = "models/tiny-clip.safetensors"
    quick_gelu: bool = False
    precision: str = field(default="fp32", metadata=_choice(*PRECISIONS))


@dataclass
class PretrainParams:
    arch: str = "tiny-clip"
    steps: int = field(default=1400, metadata=_range(1))
    batch_size: int = field(default=128, metadata=_range(2))
    lr: float = field(default=2e-3, metadata=_range(0.0, None, lo_open=True))
    weight_decay: float = field(default=0.1, metadata=_range(0.0))
    warmup: int = field(default=50, metadata=_range(0))
    eval_every: int = field(default=200, metadata=_range(1))
    augment_shift: int = field(default=2, metadata=_range(0))
    out: str = "models/tiny-clip.safetensors"


@dataclass
class EvalTemplates:
    identities: list = field(default_factory=lambda: ["a photo of {}.", "{}."])
    characters: list = field(default_factory=lambda: ["a photo of {}.", "{} figure"])
    objects: list = field(default_factory=lambda: [
        "itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
        "a {} in a video game.", "art of the {}.", "a photo of the small {}."])
    styles: list = field(default_factory=lambda: ["an image in {} style.", "{} art"])


@dataclass
class EvalParams:
    templates: EvalTemplates = field(default_factory=EvalTemplates)


@dataclass
class FilterParams:
    aliases: list = field(default_factory=list, metadata={"empty_ok": True})
    max_matches: int = field(default=1000, metadata=_range(2))
    out: str = "data/filter/forget_index.csv"


@dataclass
class SetsParams:
    out: str = "data/sets"
    test_fraction: float = field(default=0.5, metadata=_range(0.05, 0.95))
    n_retain: int = field(default=1024, metadata=_range(2))
    n_retain_val: int = field(default=512, metadata=_range(2))
    n_nonmembers: int = field(default=512, metadata=_range(0))


@dataclass
class GradientsParams:
    batch_size: int = field(default=128, metadata=_range(2))
    exclude: list = field(default_factory=lambda: ["bias", "logit_scale", "position",
                                                   "embedding", "ln_"])
    out: str = "data/grads"


@dataclass
class RankParams:
    rule: str = field(default="front", metadata=_choice("front", "deepest", "best_ratio"))
    alignment: str = field(default="abs", metadata=_choice("abs", "signed"))
    fronts: int = field(default=2, metadata=_range(1, 3))  # gradients stores fronts 1-3


@dataclass
class UnlearnParams:
    topk: int = field(default=1, metadata=_range(1))
    target: float = field(default=0.01, metadata=_range(0.0, 1.0))
    max_evals: int = field(default=10, metadata=_range(1, 50))
    scale0: float = field(default=0.1, metadata=_range(0.0, None, lo_open=True))
    out: str = "models/patch"


@dataclass
class BaselineLR:
    """One learning rate per iterative method (the reference used 1e-7/1e-6 for every method on
    pretrained ViT-B/32; see params.yaml for what moves the tiny CLIP)."""
    ft: float = field(default=3e-5, metadata=_range(0.0, None, lo_open=True))
    ga: float = field(default=3e-5, metadata=_range(0.0, None, lo_open=True))
    gaft: float = field(default=3e-5, metadata=_range(0.0, None, lo_open=True))
    salun_ref: float = field(default=3e-5, metadata=_range(0.0, None, lo_open=True))


@dataclass
class SSDParams:
    alpha: float = field(default=10.0, metadata=_range(0.0, None, lo_open=True))
    lam: float = field(default=1.0, metadata=_range(0.0, None, lo_open=True))
    batch_size: int = field(default=1, metadata=_range(1))
    max_evals: int = field(default=10, metadata=_range(1, 50))


BASELINE_METHODS = ("ft", "ga", "gaft", "salun_ref", "ssd")


@dataclass
class BaselinesParams:
    methods: list = field(default_factory=lambda: list(BASELINE_METHODS))
    epochs: int = field(default=10, metadata=_range(1))
    batch_size: int = field(default=32, metadata=_range(2))
    weight_decay: float = field(default=0.1, metadata=_range(0.0))
    checks_per_epoch: int = field(default=4, metadata=_range(1))
    lr: BaselineLR = field(default_factory=BaselineLR)
    salun_mask_fraction: float = field(default=0.5, metadata=_range(0.0, 1.0, lo_open=True))
    ssd: SSDParams = field(default_factory=SSDParams)
    out: str = "models/baselines"


@dataclass
class SDTrainParams:
    """The tiny text-to-image model (embedded default only)."""
    out: str = "models/tiny-sd"
    image_size: int = field(default=32, metadata=_range(8))
    vae_width: int = field(default=16, metadata=_range(8))
    unet_width: int = field(default=32, metadata=_range(16))
    vae_steps: int = field(default=800, metadata=_range(1))
    unet_steps: int = field(default=2500, metadata=_range(1))
    batch_size: int = field(default=32, metadata=_range(2))
    vae_lr: float = field(default=2e-3, metadata=_range(0.0, None, lo_open=True))
    unet_lr: float = field(default=1e-3, metadata=_range(0.0, None, lo_open=True))
    cond_drop: float = field(default=0.1, metadata=_range(0.0, 1.0))


@dataclass
class SDPromptTemplates:
    identity: str = "a photo of {}."
    character: str = "a photo of {}."
    object: str = "a photo of a {}."
    style: str = "an image in {} style."


@dataclass
class SDEvaluateParams:
    images_per_prompt: int = field(default=8, metadata=_range(1))
    steps: int = field(default=20, metadata=_range(1))
    guidance: float = field(default=4.0, metadata=_range(0.0))
    retained_per_kind: int = field(default=4, metadata=_range(1))
    judge_over: str = field(default="all", metadata=_choice("all", "kind"))
    templates: SDPromptTemplates = field(default_factory=SDPromptTemplates)
    grid_images: int = field(default=4, metadata=_range(1))


@dataclass
class SDSearchParams:
    """How sd_unlearn judges a step: by generations (search seeds, never the evaluation seeds) or,
    as the reference, by CLIP zero-shot on the forget-search split (then ``unlearn.target``)."""
    judge: str = field(default="generations", metadata=_choice("generations", "clip"))
    target_images: int = field(default=16, metadata=_range(1))
    images_per_prompt: int = field(default=4, metadata=_range(1))
    retained_per_kind: int = field(default=2, metadata=_range(1))
    target: float = field(default=0.0, metadata=_range(0.0, 1.0))


@dataclass
class SDParams:
    pipeline: str = "models/tiny-sd"  # a diffusers pipeline folder (or a model id in the HF cache)
    train: SDTrainParams = field(default_factory=SDTrainParams)
    patch: str = "models/sd-patch"
    search: SDSearchParams = field(default_factory=SDSearchParams)
    evaluate: SDEvaluateParams = field(default_factory=SDEvaluateParams)


TINY_STYLES = ["Cubism", "Mosaic", "Neon_Lines", "Pop_Art", "Sketch", "Ukiyoe", "Van_Gogh",
               "Watercolor"]
TINY_OBJECTS = ["Arrow", "Bar", "Bolt", "Circle", "Crescent", "Cross", "Diamond", "Heart",
                "Hourglass", "Ring", "Star", "Triangle"]


@dataclass
class CanvasClassifierParams:
    """The style and object judges. ``tiny-cnn``: trained by canvas_classifiers on the canvas;
    any other name: a timm architecture (UnlearnCanvas: vit_large_patch16_224) whose local
    checkpoint is loaded with ``weights_only=True``."""
    arch: str = "tiny-cnn"
    style: str = "models/canvas-classifiers/style.safetensors"
    object: str = "models/canvas-classifiers/object.safetensors"
    key: str = "model_state_dict"  # where a .pth checkpoint keeps its state dict ("-": top level)
    image_size: int = field(default=32, metadata=_range(8))
    mean: float = 0.5
    std: float = field(default=0.5, metadata=_range(0.0, None, lo_open=True))


@dataclass
class CanvasTrainParams:
    """The tiny classifiers (embedded default only)."""
    width: int = field(default=32, metadata=_range(8))
    epochs: int = field(default=25, metadata=_range(1))
    batch_size: int = field(default=64, metadata=_range(2))
    lr: float = field(default=2e-3, metadata=_range(0.0, None, lo_open=True))
    val_fraction: float = field(default=0.2, metadata=_range(0.0, 0.9, lo_open=True))
    blur: float = field(default=1.0, metadata=_range(0.0))


@dataclass
class CanvasFinetuneParams:
    """The tiny generator fine-tuned on the canvas grid (embedded default only), as UnlearnCanvas
    fine-tuned SD 1.5 on it."""
    out: str = "models/tiny-sd-canvas"
    steps: int = field(default=2000, metadata=_range(1))
    batch_size: int = field(default=32, metadata=_range(2))
    lr: float = field(default=1e-3, metadata=_range(0.0, None, lo_open=True))


@dataclass
class CanvasSearchParams:
    """The step search judges generations from *search* seeds, never the evaluation seeds."""
    images_per_prompt: int = field(default=2, metadata=_range(1))
    retained_prompts: int = field(default=24, metadata=_range(1))
    target: float = field(default=0.1, metadata=_range(0.0, 1.0))
    rule: str = field(default="front", metadata=_choice("front", "deepest", "best_ratio"))
    fronts: int = field(default=1, metadata=_range(1))
    max_evals: int = field(default=7, metadata=_range(1))


@dataclass
class CanvasEvaluateParams:
    images_per_prompt: int = field(default=8, metadata=_range(1))
    steps: int = field(default=10, metadata=_range(1))
    guidance: float = field(default=4.0, metadata=_range(0.0))


@dataclass
class CanvasParams:
    pipeline: str = "models/tiny-sd-canvas"
    styles: list = field(default_factory=lambda: list(TINY_STYLES))
    objects: list = field(default_factory=lambda: list(TINY_OBJECTS))
    prompt: str = "A {object} image in {style} style."
    forget_captions: str = field(default="name", metadata=_choice("name", "prompt"))
    n_retain: int = field(default=512, metadata=_range(2))
    sets: str = "data/canvas/tars"
    classifiers: CanvasClassifierParams = field(default_factory=CanvasClassifierParams)
    train: CanvasTrainParams = field(default_factory=CanvasTrainParams)
    finetune: CanvasFinetuneParams = field(default_factory=CanvasFinetuneParams)
    search: CanvasSearchParams = field(default_factory=CanvasSearchParams)
    evaluate: CanvasEvaluateParams = field(default_factory=CanvasEvaluateParams)
    base: str = "data/canvas/base"
    patch: str = "models/canvas-patch"
    out: str = "results/unlearncanvas"


@dataclass
class EvaluateParams:
    frequent: int = field(default=100, metadata=_range(1))
    mia_seeds: int = field(default=10, metadata=_range(1))
    matrix_images_per_class: int = field(default=4, metadata=_range(1))


@dataclass
class Params:
    concept: str = "Elon Musk"
    concept_kind: str = field(default="auto", metadata=_choice("auto", "identity", "character",
                                                                "object", "style"))
    seed: int = field(default=0, metadata=_range(0))
    device: str = "auto"
    data: DataParams = field(default_factory=DataParams)
    tinyworld: TinyWorldParams = field(default_factory=TinyWorldParams)
    model: ModelParams = field(default_factory=ModelParams)
    pretrain: PretrainParams = field(default_factory=PretrainParams)
    eval: EvalParams = field(default_factory=EvalParams)
    filter: FilterParams = field(default_factory=FilterParams)
    sets: SetsParams = field(default_factory=SetsParams)
    gradients: GradientsParams = field(default_factory=GradientsParams)
    rank: RankParams = field(default_factory=RankParams)
    unlearn: UnlearnParams = field(default_factory=UnlearnParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    baselines: BaselinesParams = field(default_factory=BaselinesParams)
    sd: SDParams = field(default_factory=SDParams)
    canvas: CanvasParams = field(default_factory=CanvasParams)


def _fail(key: str, msg: str, value: Any) -> typing.NoReturn:
    raise ParamsError(f"params.yaml: {key} {msg}, got {value!r}")


def _convert(key: str, tp, value: Any, meta: dict):
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
        if not isinstance(value, str) or not value.strip():
            _fail(key, "must be a non-empty string", value)
    elif tp is list:
        if not isinstance(value, list) or (not value and not meta.get("empty_ok")):
            _fail(key, "must be a non-empty list", value)
        if not all(isinstance(v, str) and v.strip() for v in value):
            _fail(key, "must hold non-empty strings", value)
    elif tp is dict:
        if not isinstance(value, dict):
            _fail(key, "must be a mapping", value)
    if "choices" in meta and value not in meta["choices"]:
        _fail(key, f"must be one of {', '.join(map(str, meta['choices']))}", value)
    if "range" in meta:
        lo, hi, lo_open = meta["range"]
        if lo is not None and (value < lo or (lo_open and value == lo)):
            _fail(key, f"must be {'>' if lo_open else '>='} {lo}", value)
        if hi is not None and value > hi:
            _fail(key, f"must be <= {hi}", value)
    return value


def _build(cls, raw: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ParamsError(f"params.yaml: unknown key {prefix}{unknown[0]}; allowed under "
                          f"{prefix.rstrip('.') or 'the top level'}: {', '.join(sorted(known))}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in raw:
            kwargs[f.name] = _convert(prefix + f.name, hints[f.name], raw[f.name], dict(f.metadata))
    return cls(**kwargs)


def _validate_mix(p: Params) -> None:
    kinds = ("identity", "character", "object", "style", "distractor")
    mix = p.tinyworld.mix
    if set(mix) != set(kinds):
        _fail("tinyworld.mix", f"must have exactly the keys {', '.join(kinds)}", mix)
    if any(not isinstance(v, (int, float)) or v < 0 for v in mix.values()) or not sum(mix.values()):
        _fail("tinyworld.mix", "must hold non-negative weights with a positive sum", mix)


def from_dict(raw: dict) -> Params:
    if not isinstance(raw, dict):
        raise ParamsError("params.yaml must be a mapping of stage groups")
    p = _build(Params, raw)
    _validate_mix(p)
    for m in p.baselines.methods:
        if m not in BASELINE_METHODS:
            _fail("baselines.methods", f"must hold names from {', '.join(BASELINE_METHODS)}", m)
    for key in ("vae_width", "unet_width"):
        if getattr(p.sd.train, key) % 8:
            _fail(f"sd.train.{key}", "must be a multiple of 8 (group norm)", getattr(p.sd.train, key))
    for kind in ("identity", "character", "object", "style"):
        t = getattr(p.sd.evaluate.templates, kind)
        if t.count("{}") != 1:
            _fail(f"sd.evaluate.templates.{kind}", "must hold exactly one '{}'", t)
    for kind in ("identities", "characters", "objects", "styles"):
        for t in getattr(p.eval.templates, kind):
            if not isinstance(t, str) or t.count("{}") != 1:
                _fail(f"eval.templates.{kind}", "must hold strings with exactly one '{}'", t)
    if sorted(_fields(p.canvas.prompt)) != ["object", "style"]:
        _fail("canvas.prompt", "must hold exactly one '{object}' and one '{style}'",
              p.canvas.prompt)
    return p


def _fields(template: str) -> list[str]:
    import string

    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError:
        return []


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
