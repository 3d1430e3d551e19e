"""Baselines for the side-by-side comparison with SLUG, behind one interface:
``run_method(name, model, data, settings, rule)`` edits ``model`` in place."""

from __future__ import annotations

from dataclasses import dataclass

from ...datasets.pairs import PairData
from ...params import BASELINE_METHODS, ITERATIVE_METHODS
from ..gradients import mean_gradient
from . import iterative, ssd
from .common import CurveLog, NullLog, Outcome, StopRule

LABELS = {"slug": "SLUG", "slug_pool": "SLUG (pooled retain)",
          "slug_nullspace": "SLUG (nullspace)", "ft": "FT", "ga": "GA", "gaft": "GAFT", "salun_ref": "SalUn (ref.)",
          "ssd": "SSD", "original": "original", "oracle": "oracle (retrain)"}


@dataclass
class BaselineData:
    forget: PairData  # the forget *search* split (what SLUG's gradient sees)
    retain: PairData  # the retain training set


def run_method(name: str, model, data: BaselineData, settings, rule: StopRule,
               progress=lambda x, **k: x) -> Outcome:
    """``settings``: an ``IterativeConfig`` (plus ``mask_fraction`` for salun_ref) or ``SSDConfig``."""
    rule.start()
    if name == "ssd":
        ssd.run(model, data.forget, data.retain, settings, rule, progress)
    elif name in ITERATIVE_METHODS:
        phases = {"ft": [("ft", data.retain)], "ga": [("ga", data.forget)]}.get(
            name, [("ga", data.forget), ("ft", data.retain)])
        mask = None
        if name == "salun_ref":  # the saliency mask needs the forget gradient: part of its time
            grads, _ = mean_gradient(model, data.forget, "forget", settings.batch_size)
            mask = iterative.saliency_mask(grads, settings.mask_fraction)
        iterative.train(model, phases, settings, rule, mask, progress)
    else:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINE_METHODS)}")
    return rule.finish()


__all__ = ["LABELS", "BaselineData", "run_method", "StopRule", "Outcome", "CurveLog",
           "NullLog"]
