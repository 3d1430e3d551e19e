"""The checks every stage runs before its work (``entry.run``): the model references agree with
``refs``, and the device exists. Cheap, and importing nothing heavy; ``pipeline.check`` holds the
rest of ``slug check``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from . import refs
from .errors import ParamsError
from .params import Params, ref_keys


def produced(p: Params) -> dict[str, str]:
    """Paths the embedded default's stages write (``tiny/dvc.yaml``): they may not exist yet."""
    c = p.canvas
    return {p.tinyworld.out: "tinyworld", p.pretrain.out: "pretrain", p.sd.train.out: "sd_train",
            c.finetune.out: "canvas_generator", c.train.out: "canvas_classifiers"}


def pending(p: Params, value: str) -> str | None:
    """The stage that will write ``value`` (or a folder above it), when it does not exist yet."""
    if Path(value).exists():
        return None
    for out, stage in produced(p).items():
        if Path(value) == Path(out) or Path(out) in Path(value).parents:
            return stage
    return None


def reference_values(p: Params) -> dict[str, str]:
    """``{"model.pretrained": ..., "sd.pipeline": ..., "canvas.pipeline": ...}``."""
    out = {}
    for key in ref_keys():
        group, leaf = key.rsplit(".", 1)
        node = p
        for part in group.split("."):
            node = getattr(node, part)
        out[key] = getattr(node, leaf)
    return out


def references(p: Params) -> str:
    """``refs`` lists exactly the references that are local paths (``pipeline.refs``)."""
    values = reference_values(p)
    refs.check(values, p.refs, frozenset(produced(p)))
    names_ = ref_keys()
    return ", ".join(f"{k}: {'refs.' + names_[k] if names_[k] in p.refs else 'a name (param)'}"
                     for k in values)


def world(p: Params, embedded: bool = False) -> str:
    """``world: real`` promises that the data and the CLIP model, which every real stage reads,
    are not the embedded default's: refuse one that is. (A stage that reads another reference,
    the SD or canvas pipeline, has the embedded default upstream when that reference is the
    tiny world's: ``slug check --target STAGE`` refuses that plan.)"""
    if p.world != "real":
        return "tiny: the embedded default"
    if embedded:
        raise ParamsError("world is real, and this stage builds the embedded default's tiny "
                          "world (tiny/dvc.yaml): a reference still names its output (slug check "
                          "--target STAGE says which), or run only the real targets "
                          "(dvc exp run evaluate)")
    if p.oracle.concepts:
        raise ParamsError("params.yaml: world is real, but oracle.concepts lists "
                          f"{', '.join(p.oracle.concepts)}: the retrain oracle pretrains the tiny "
                          "CLIP (the embedded default's); set oracle.concepts: []")
    inputs = {f"data.{f.name}": getattr(p.data, f.name) for f in dataclasses.fields(p.data)
              if f.metadata.get("path")}  # the folders; not the policies or URL patterns
    inputs["model.pretrained"] = p.model.pretrained
    for key, value in inputs.items():
        for out, stage in produced(p).items():
            if Path(value) == Path(out) or Path(out) in Path(value).parents:
                raise ParamsError(f"params.yaml: world is real, but {key} is {value}, which the "
                                  f"embedded default's {stage} stage writes; point it at yours")
    return "real: no input is the embedded default's"


def device(value: str) -> str:
    """The device exists here (the syntax was checked with the params)."""
    import torch

    if value.startswith("cuda") and not torch.cuda.is_available():
        raise ParamsError(f"params.yaml: device {value!r}, but CUDA is not available on this "
                          f"machine; use auto or cpu")
    if value.startswith("cuda:") and int(value[5:]) >= torch.cuda.device_count():
        raise ParamsError(f"params.yaml: device {value!r}, but this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s)")
    if value == "mps" and not torch.backends.mps.is_available():
        raise ParamsError("params.yaml: device 'mps', but MPS is not available; use auto or cpu")
    if value == "auto":
        return "auto: " + ("cuda" if torch.cuda.is_available() else "cpu")
    return value
