"""One pass over the forget and retain sets: the mean per-sample gradients of both losses.

Gradients are summed batch by batch, each batch weighted by its size, so the result is the
per-sample mean whatever the batch size (the reference gave a partial last batch full weight).
Gradients are zeroed every batch (the reference's HF path did not, bug B3). Under a process group
(``gradients.nproc``, ``pipeline.distributed``) each process takes whole batches of the same
layout and the weighted sums are added across processes: the same mean, summed in another order.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch

from .. import distributed as D
from ..datasets.pairs import PairData
from ..errors import DataError, NumericalError
from ..progress import progress
from .losses import forget_loss, retain_loss


@dataclass
class GradientResult:
    forget: dict[str, torch.Tensor]
    retain: dict[str, torch.Tensor]
    forget_loss: float
    retain_loss: float
    n_forget: int
    n_retain: int


def batch_bounds(n: int, batch_size: int, loss_kind: str) -> list[tuple[int, int]]:
    """The batch layout of a pass over ``n`` pairs: consecutive ``(start, end)`` of
    ``batch_size`` pairs; for the retain loss a 1-pair last batch (no negatives for a
    contrastive loss) is folded into the previous one."""
    starts = list(range(0, n, batch_size))
    if loss_kind == "retain" and len(starts) > 1 and n - starts[-1] < 2:
        starts.pop()
    return [(s, starts[i + 1] if i + 1 < len(starts) else n) for i, s in enumerate(starts)]


def batch_gradient(model, images: torch.Tensor, tokens: torch.Tensor, loss_kind: str
                   ) -> tuple[dict[str, torch.Tensor], float]:
    """One batch's loss (mean over the batch) and its gradient (fp32, the tensors that got
    one); the model's ``.grad`` fields are left empty."""
    device = next(model.parameters()).device
    out = model(images.to(device), tokens.to(device))
    if loss_kind == "forget":
        loss = forget_loss(out["image_features"], out["text_features"])
    else:
        loss = retain_loss(out["image_features"], out["text_features"], out["logit_scale"])
    if not torch.isfinite(loss):
        raise NumericalError(f"the {loss_kind} loss is not finite on a batch of {len(images)}")
    model.zero_grad(set_to_none=True)
    loss.backward()
    grads = {k: p.grad.float() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads, float(loss.detach())


def check_finite(grads: dict[str, torch.Tensor], what: str) -> None:
    bad = [k for k, g in grads.items() if not torch.isfinite(g).all()]
    if bad:
        raise NumericalError(f"non-finite {what} gradient in {len(bad)} tensor(s), "
                             f"e.g. {bad[0]}; check the data and the model precision")


def mean_gradient(model, data: PairData, loss_kind: str, batch_size: int
                   ) -> tuple[dict[str, torch.Tensor], float]:
    n = len(data.images)
    if n == 0:
        raise DataError(f"the {loss_kind} set is empty; nothing to compute a gradient from")
    if loss_kind == "retain" and n < 2:
        raise DataError("the retain set needs at least 2 pairs for a contrastive loss")
    sums = {k: torch.zeros_like(p, dtype=torch.float32) for k, p in model.named_parameters()}
    total = 0.0
    mine = D.share(batch_bounds(n, batch_size, loss_kind))  # every batch, for one process
    for s, e in progress(mine, desc=f"{loss_kind} gradient", disable=not D.is_main() or None):
        grads, loss = batch_gradient(model, data.images[s:e], data.tokens[s:e], loss_kind)
        w = (e - s) / n
        for k, g in grads.items():
            sums[k] += w * g
        total += w * loss
    (total,) = D.all_sum(sums, total)
    check_finite(sums, loss_kind)
    return sums, total


@contextlib.contextmanager
def only_trainable(model, trainable: Callable[[str], bool] | None):
    """Freeze every tensor ``trainable`` rejects for the duration (no gradient memory for it;
    its gradient sums stay zero)."""
    saved = {n: p.requires_grad for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        if trainable is not None and not trainable(n):
            p.requires_grad_(False)
    try:
        yield
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(saved[n])


def head(data: PairData, n: int | None) -> PairData:
    """The first ``n`` pairs (all of them for ``None``): the forget cap, ``gradients.max_forget``."""
    if n is None or n >= len(data.images):
        return data
    return PairData(data.images[:n], data.tokens[:n], data.captions[:n], data.report,
                    data.keys[:n])


def gradient_pass(model, forget: PairData, retain, batch_size: int,
                  trainable: Callable[[str], bool] | None = None,
                  max_forget: int | None = None) -> GradientResult:
    """Both gradients at the base weights (the model is left unchanged, in eval mode), the
    forget one over the first ``max_forget`` forget pairs (all for ``None``). ``retain`` is a
    ``PairData`` (a fresh pass) or a ``retain_pool.PoolRequest`` (the amortised gradient)."""
    forget = head(forget, max_forget)
    model.eval()  # CLIP ViTs have no dropout; eval keeps any norm statistics fixed
    with only_trainable(model, trainable):
        g_f, l_f = mean_gradient(model, forget, "forget", batch_size)
        if isinstance(retain, PairData):
            g_r, l_r = mean_gradient(model, retain, "retain", batch_size)
            n_r = len(retain.images)
        else:
            r = retain.compute(model)
            g_r, l_r, n_r = r.full, r.loss, r.n
    return GradientResult(g_f, g_r, l_f, l_r, len(forget.images), n_r)
