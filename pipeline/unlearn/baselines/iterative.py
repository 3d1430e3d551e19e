"""The iterative baselines: FT, GA, GAFT and the reference's SalUn variant.

Training follows the reference (spec section 7): AdamW with betas (0.9, 0.98), eps 1e-6, weight
decay on >= 2-D tensors whose names contain none of bn/ln/bias/logit_scale; a cosine schedule with
no warm-up over *all* the steps the run will take (the reference sized GA's and GAFT's schedule by
the retain loader, bug B11); batch 32; logit_scale clamped to [0, ln 100] after every step.

* FT: descent on the CLIP contrastive loss over the retain set.
* GA: ascent on the forget loss ``mean(1 - cos)`` over the forget set.
* GAFT: per epoch, one GA pass over the forget set, *then* one FT pass over the retain set.
* SalUn (reference variant, ``salun_ref``): GAFT where only the salient entries move: the top
  ``mask_fraction`` of entries by |forget gradient|, ranked globally over all parameters (among
  entries whose gradient is not zero; see ``saliency_mask``). This is not the original SalUn
  (random labels); the reference repository calls it SalUn.

The stop rule is checked ``checks_per_epoch`` times per epoch (1 = the reference's per-epoch
evaluation), unless ``check_every`` is set: then it is checked after every ``check_every``
optimizer steps, counted over the whole run (after steps ``k, 2k, 3k, ...`` whatever the epoch), so
a method is charged only for the checks its steps call for. The end of an epoch (and of the run)
is checked only when that is where the schedule falls; ``checks_per_epoch`` is then unused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...datasets.pairs import PairData
from ...errors import NumericalError
from ..losses import forget_loss, retain_loss
from .common import StopRule

NO_DECAY = ("bn", "ln", "bias", "logit_scale")


@dataclass
class IterativeConfig:
    """From the ``baselines`` params group (``compare.baseline_settings``)."""
    lr: float
    epochs: int
    batch_size: int
    weight_decay: float
    checks_per_epoch: int
    seed: int
    mask_fraction: float  # salun_ref only
    check_every: int | None = None  # check after every N optimizer steps (None: checks_per_epoch)


def optimizer(model, lr: float, weight_decay: float) -> torch.optim.AdamW:
    decay, rest = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and not any(k in name for k in NO_DECAY) else rest).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": rest, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.98), eps=1e-6)


def _batches(n: int, batch_size: int, gen: torch.Generator, min_size: int = 1):
    order = torch.randperm(n, generator=gen)
    cuts = list(range(0, n, batch_size))
    if len(cuts) > 1 and n - cuts[-1] < min_size:
        cuts.pop()  # fold a too-small last batch into the previous one
    return [order[s:(cuts[i + 1] if i + 1 < len(cuts) else n)] for i, s in enumerate(cuts)]


def saliency_mask(grads: dict[str, torch.Tensor], fraction: float) -> dict[str, torch.Tensor]:
    """1 for the top ``fraction`` of the entries with a non-zero gradient, by |g|, ranked across
    all tensors together (global rank).

    Why non-zero: most rows of a CLIP's token-embedding table get no gradient at all (87 % of the
    tiny CLIP's entries, about 17 % of ViT-B/32's). Ranked over *all* entries, the reference's 50 %
    cut falls among those zeros in the tiny model and the mask selects every entry that can move,
    which makes SalUn identical to GAFT (measured). Over non-zero entries, the mask halves them.
    """
    flat = torch.cat([g.abs().flatten().float() for g in grads.values()])
    flat = flat[flat > 0]
    if not len(flat):
        return {n: torch.zeros_like(g, dtype=torch.bool) for n, g in grads.items()}
    k = max(1, round(fraction * flat.numel()))
    threshold = torch.topk(flat, k, sorted=True).values[-1]
    return {n: (g.abs().float() >= threshold) & (g != 0) for n, g in grads.items()}


Phase = tuple[str, PairData]  # ("ga" | "ft", data)


def train(model, phases: list[Phase], cfg: IterativeConfig, rule: StopRule,
          mask: dict[str, torch.Tensor] | None = None, progress=lambda x, **k: x) -> None:
    """Run ``phases`` once per epoch until the stop rule passes or the epochs run out."""
    if cfg.check_every is not None and cfg.check_every < 1:
        raise ValueError(f"check_every must be a positive number of steps, not {cfg.check_every}")
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed)
    params = dict(model.named_parameters())
    opt = optimizer(model, cfg.lr, cfg.weight_decay)
    per_epoch = sum(len(_batches(len(d.images), cfg.batch_size, gen, 2 if kind == "ft" else 1))
                    for kind, d in phases)
    total = per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    frozen = {n: params[n].detach().clone() for n in mask} if mask else {}
    check_at = {round(per_epoch * (i + 1) / cfg.checks_per_epoch) for i in range(cfg.checks_per_epoch)}
    model.eval()  # CLIP has no dropout; keeps any norm statistics fixed
    step = 0
    for epoch in progress(range(cfg.epochs), desc="epochs"):
        in_epoch = 0
        for kind, data in phases:
            for idx in _batches(len(data.images), cfg.batch_size, gen, 2 if kind == "ft" else 1):
                out = model(data.images[idx].to(device), data.tokens[idx].to(device))
                if kind == "ga":  # ascent on mean(1 - cos): minimise its negative
                    loss = -forget_loss(out["image_features"], out["text_features"])
                else:
                    loss = retain_loss(out["image_features"], out["text_features"],
                                       out["logit_scale"])
                if not torch.isfinite(loss):
                    raise NumericalError(f"the {kind} loss became non-finite at step {step}; "
                                         f"lower the learning rate (now {cfg.lr})")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if mask:
                    for n, m in mask.items():
                        if params[n].grad is not None:
                            params[n].grad.mul_(m)
                opt.step()
                sched.step()
                with torch.no_grad():
                    if "logit_scale" in params:
                        params["logit_scale"].clamp_(0, math.log(100))
                    for n, m in mask.items() if mask else ():
                        params[n].copy_(torch.where(m, params[n], frozen[n]))  # no decay either
                step += 1
                in_epoch += 1
                due = (in_epoch in check_at if cfg.check_every is None
                       else step % cfg.check_every == 0)
                if due and rule(step, epoch + in_epoch / per_epoch,
                                **{"train/loss": float(loss.detach())}):
                    return
