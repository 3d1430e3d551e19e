"""The style and object judges of UnlearnCanvas: the models and their checkpoints.

A real run loads UnlearnCanvas's checkpoints (timm ``vit_large_patch16_224`` with a linear head,
``weights_only=True``). The tiny world trains a small CNN per label space on the canvas images
instead (``training``); both are wrapped as a ``Judge`` that maps generated images in [0, 1] to
class indices.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from ..errors import ModelError, not_weights_only
from ..io import save_tensors, tensors_meta

TINY = "tiny-cnn"


class TinyConvNet(nn.Module):
    """Three conv stages and a linear ``head`` (named as timm's, so one head check serves both)."""

    def __init__(self, n_classes: int, width: int = 32):
        super().__init__()
        w = width

        def stage(a, b):
            return nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.GroupNorm(8, b), nn.GELU(),
                                 nn.Conv2d(b, b, 3, padding=1), nn.GroupNorm(8, b), nn.GELU(),
                                 nn.MaxPool2d(2))

        self.features = nn.Sequential(stage(3, w), stage(w, 2 * w), stage(2 * w, 4 * w))
        self.head = nn.Linear(4 * w, n_classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


@dataclass
class Judge:
    """A classifier with its input convention: resize to ``image_size``, normalise."""
    model: nn.Module
    classes: list[str]
    image_size: int
    mean: float = 0.5
    std: float = 0.5

    @torch.no_grad()
    def predict(self, images01: torch.Tensor, batch: int = 256) -> torch.Tensor:
        self.model.eval()
        device = next(self.model.parameters()).device
        out = []
        for s in range(0, len(images01), batch):
            x = images01[s:s + batch].to(device).float()
            if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
                x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                                  antialias=True, align_corners=False)
            out.append(self.model((x - self.mean) / self.std).argmax(1).cpu())
        return torch.cat(out)


def _head_rows(state: dict[str, torch.Tensor]) -> tuple[str, int]:
    for key in ("head.weight", "head.fc.weight", "fc.weight", "classifier.weight"):
        if key in state:
            return key, int(state[key].shape[0])
    raise ModelError("the classifier checkpoint has no linear head (head.weight, head.fc.weight, "
                     "fc.weight or classifier.weight)")


def check_head(state: dict[str, torch.Tensor], classes: list[str], path, what: str) -> None:
    key, rows = _head_rows(state)
    if rows != len(classes):
        raise ModelError(f"classifier {path}: its head {key} has {rows} outputs, but {what} lists "
                         f"{len(classes)} classes; use the checkpoint trained on these classes "
                         f"or list exactly its classes, in its order")


def tiny_path(folder: str | Path, kind: str) -> Path:
    """Where the embedded default's ``kind`` (style, object) classifier lives in its folder."""
    return Path(folder) / f"{kind}.safetensors"


def save_tiny(model: TinyConvNet, classes: list[str], path: str | Path, extra: dict) -> None:
    """The weights with their class list, width and ``extra`` (e.g. the held-out accuracy)."""
    save_tensors(path, model.state_dict(), {"arch": TINY, "classes": list(classes),
                                            "width": model.head.in_features // 4, **extra})


def load(arch: str, path: str | Path, classes: list[str], what: str, key: str = "-",
         image_size: int = 32, mean: float = 0.5, std: float = 0.5, device="cpu") -> Judge:
    """A ``Judge`` for ``classes`` (named by the params key ``what`` in errors)."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"classifier checkpoint {path} not found (params: "
                         f"{what.split('.')[0]}.classifiers); the tiny world trains it first")
    if arch == TINY:
        meta = tensors_meta(path)
        state = load_file(str(path))
        check_head(state, classes, path, what)
        saved = meta.get("classes", [])
        if saved and saved != list(classes):
            raise ModelError(f"classifier {path} was trained on classes {saved}, but {what} "
                             f"lists {list(classes)}")
        model = TinyConvNet(len(classes), int(meta.get("width", 32)))
    else:
        try:
            import timm
        except ImportError as exc:
            raise ModelError(f"classifier arch {arch!r} needs timm") from exc
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise not_weights_only(path) from None
        except Exception as exc:  # pickle / zip errors come in many types
            raise ModelError(f"cannot read classifier checkpoint {path} with weights_only=True: "
                             f"{exc}") from exc
        if key != "-":
            if not isinstance(state, dict) or key not in state:
                raise ModelError(f"classifier checkpoint {path} has no key {key!r} (classifiers.key;"
                                 f" '-' reads the file as the state dict)")
            state = state[key]
        state = {k.removeprefix("module."): v for k, v in state.items()}
        check_head(state, classes, path, what)
        try:
            model = timm.create_model(arch, pretrained=False, num_classes=len(classes))
        except Exception as exc:
            raise ModelError(f"timm has no architecture {arch!r}: {exc}") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"classifier {path} does not fit arch {arch!r}: "
                         f"{str(exc).splitlines()[0]}") from exc
    return Judge(model.to(device).eval(), list(classes), image_size, mean, std)


def val_accuracy(path: str | Path) -> float | None:
    """The held-out accuracy a tiny classifier recorded when it was trained (None for others)."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.exists():
        return None
    return tensors_meta(path).get("val_accuracy")


def load_judges(k, styles: list[str], objects: list[str], device) -> tuple[Judge, Judge]:
    """The style and object judges of a ``canvas.classifiers`` params group."""
    common = dict(key=k.key, image_size=k.image_size, mean=k.mean, std=k.std, device=device)
    return (load(k.arch, k.style, styles, "canvas.styles", **common),
            load(k.arch, k.object, objects, "canvas.objects", **common))
