"""One call to build an open_clip model with its preprocessing and tokenizer.

``build(name, pretrained)`` accepts the same names whether the weights are real or tiny:

* ``name``: any open_clip architecture (``ViT-B-32``) or one of the tiny configs shipped in
  ``configs/`` (registered with open_clip on import);
* ``pretrained``: ``None`` (random init), an open_clip tag (``laion400m_e32``; downloaded by
  open_clip where the network allows), a local ``.safetensors``/``.pt`` file, or a local open_clip
  folder (``open_clip_config.json`` + weights, what ``slug export`` writes).

Checkpoints are loaded with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import pickle
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import open_clip
import torch

from ..errors import ModelError, not_weights_only
from ..params import PRECISIONS

CONFIG_DIR = Path(__file__).parent / "configs"
LOCAL_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")

open_clip.add_model_config(CONFIG_DIR)


@dataclass
class ModelBundle:
    """What every stage needs from a model, plus where it came from (for manifests)."""

    model: torch.nn.Module
    preprocess: Callable  # eval preprocessing (resize, centre crop, normalise)
    preprocess_train: Callable
    tokenizer: Callable
    name: str
    pretrained: str | None
    quick_gelu: bool
    precision: str
    device: torch.device

    @property
    def image_size(self) -> int:
        size = self.model.visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "pretrained": self.pretrained, "quick_gelu": self.quick_gelu,
                "precision": self.precision, "open_clip": open_clip.__version__,
                "parameters": sum(p.numel() for p in self.model.parameters())}


def available_architectures() -> list[str]:
    return open_clip.list_models()


def resolve_device(device: str) -> torch.device:
    """``auto`` takes CUDA when present; nothing else assumes CUDA."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    return torch.device(device)


def _is_path(pretrained: str) -> bool:
    return ("/" in pretrained or "\\" in pretrained or pretrained.endswith(LOCAL_SUFFIXES)
            or pretrained.startswith("local-dir:"))


def check(name: str, pretrained: str | None, precision: str, quick_gelu: bool = False) -> None:
    if name not in open_clip.list_models():
        tiny = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
        raise ModelError(f"unknown architecture {name!r}; tiny configs: {', '.join(tiny)}; "
                         f"or any of open_clip.list_models() (e.g. ViT-B-32)")
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    if pretrained is None:
        return
    path = Path(pretrained.removeprefix("local-dir:"))
    if path.is_dir():
        if not (path / "open_clip_config.json").exists():
            raise ModelError(f"{path} is a folder without open_clip_config.json; an open_clip "
                             f"model folder (what `slug export` writes) is expected")
        return
    if _is_path(pretrained):
        if not path.exists():
            raise ModelError(f"pretrained checkpoint {path} does not exist; fix model.pretrained "
                             f"in params.yaml")
        return
    tags = open_clip.list_pretrained_tags_by_model(name)
    if pretrained not in tags:
        raise ModelError(f"{pretrained!r} is neither a file or folder here nor a pretrained tag "
                         f"of {name}; known tags: {', '.join(tags) or 'none (use a local file)'}")
    trained = bool(open_clip.get_pretrained_cfg(name, pretrained).get("quick_gelu", False))
    built = quick_gelu or bool((open_clip.get_model_config(name) or {}).get("quick_gelu", False))
    if trained != built:  # open_clip only warns; the activations would be silently wrong
        raise ModelError(f"the {name} {pretrained!r} weights were trained with "
                         f"{'QuickGELU' if trained else 'GELU'}; set model.quick_gelu: "
                         f"{'true' if trained else 'false'}")


def build(name: str, pretrained: str | None = None, quick_gelu: bool = False,
          precision: str = "fp32", device: str = "cpu") -> ModelBundle:
    """Build model, preprocessing and tokenizer; clear ModelError for every expected mistake."""
    check(name, pretrained, precision, quick_gelu)
    dev = resolve_device(device)
    # open_clip logs a warning for random init; here random init is what was asked for.
    quiet = _quiet_root_logger() if pretrained is None else contextlib.nullcontext()
    arch, weights = name, pretrained
    if pretrained is not None and Path(pretrained.removeprefix("local-dir:")).is_dir():
        arch, weights = "local-dir:" + pretrained.removeprefix("local-dir:"), None
    try:
        with quiet:
            model, preprocess_train, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=weights, precision=precision, device=dev,
                force_quick_gelu=quick_gelu, output_dict=True, weights_only=True)
    except pickle.UnpicklingError:  # torch's weights_only refusal
        raise not_weights_only(pretrained) from None
    except (RuntimeError, KeyError) as exc:  # a checkpoint that does not fit the architecture
        raise ModelError(f"cannot load {pretrained!r} into {name}: {str(exc).splitlines()[0]}") \
            from None
    model.eval()
    return ModelBundle(model=model, preprocess=preprocess, preprocess_train=preprocess_train,
                       tokenizer=open_clip.get_tokenizer(arch), name=name, pretrained=pretrained,
                       quick_gelu=quick_gelu, precision=precision, device=dev)


def model_config(name: str, pretrained: str | None) -> dict:
    """The architecture's open_clip config (``model_cfg``), from the folder when ``pretrained``
    is an open_clip folder."""
    import json

    folder = Path((pretrained or "").removeprefix("local-dir:"))
    if pretrained and folder.is_dir():
        return json.loads((folder / "open_clip_config.json").read_text())["model_cfg"]
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise ModelError(f"no open_clip config for {name!r}")
    return cfg


def from_params(m, device: str, precision: str | None = None) -> ModelBundle:
    """The model a ``model`` params group names (``precision`` overrides ``model.precision``)."""
    return build(m.name, m.pretrained, m.quick_gelu, precision or m.precision, device)


@contextlib.contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
