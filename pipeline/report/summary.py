"""One row per experiment: the numbers a reviewer compares first, from the metrics the CLIP and
the Stable Diffusion stages wrote, refused when they are not about the same concept (an
experiment that reran only some stages would otherwise mix two concepts in one row).

The keys are short and appear in no other metrics file, so ``dvc exp show`` names its columns
with them alone (a key that another file also has is shown as ``path:key``) and a row fits a
screen: held-out percentages (``forget@1`` = forget top-1), the layer in short form, the step as
a fraction of the layer's norm, whether the search reached its criterion, the search's seconds."""

from __future__ import annotations

from typing import Mapping

from ..errors import DataError


def summary(unlearn: Mapping, evaluate: Mapping, sd: Mapping) -> dict:
    """``unlearn`` / ``evaluate`` / ``sd``: the unlearn, evaluate and sd_evaluate metrics."""
    found = {name: (m.get("concept"), m.get("kind"))
             for name, m in (("unlearn", unlearn), ("evaluate", evaluate), ("sd_evaluate", sd))}
    if len(set(found.values())) != 1:
        raise DataError("the metrics are about different concepts: " + ", ".join(
            f"{k}: {c!r} ({kind})" for k, (c, kind) in found.items()) + "; rerun the pipeline "
            "for one concept (dvc repro)")
    after = evaluate["after"]
    return {
        "forgot": evaluate["concept"], "forgot_kind": evaluate["kind"],
        "slug_layer": short_layer(unlearn["layer"]), "slug_step": round(unlearn["rel_step"], 4),
        "slug_reached": unlearn["reached_target"],  # false: the search's strongest trial
        "forget@1": _pct(after["forget"]["top1"]), "forget@5": _pct(after["forget"]["top5"]),
        "celeba@1": _pct(after["celeba"]["top1"]), "imagenet@1": _pct(after["imagenet"]["top1"]),
        "sd_forget": _pct(sd["after"]["forget"]), "sd_kept": _pct(sd["after"]["retained"]),
        "unlearn_s": unlearn["time_s"],
    }


def short_layer(name: str) -> str:
    """``visual.transformer.resblocks.0.attn.out_proj.weight`` -> ``v.b0.attn.out_proj``."""
    for long, short in (("visual.transformer.resblocks.", "v.b"), ("transformer.resblocks.", "t.b"),
                        ("visual.", "v.")):
        if name.startswith(long):
            name = short + name[len(long):]
            break
    return name.removesuffix(".weight")


def _pct(x: float) -> float:
    return round(100 * float(x), 1)
