"""Train a (tiny) CLIP from scratch on image-text shards.

The data are read once through the same shard reader that real LAION shards go through, decoded
and preprocessed into one in-memory tensor (the tiny world fits easily), then sampled with a seeded
generator. A fixed number of steps, not a time budget, keeps the weights reproducible.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import open_clip
import torch

from ..datasets.pairs import PairData, load_pairs
from ..datasets.shards import ReadReport, Shard
from ..errors import DataError
from ..params import PretrainParams
from ..progress import progress


@dataclass(frozen=True)
class TrainConfig:
    """The ``pretrain`` params group (its ``arch`` and ``out`` aside) and the seed."""
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup: int
    seed: int
    eval_every: int
    augment_shift: int  # random translation in pixels (0 = off)

    @classmethod
    def from_params(cls, t: PretrainParams, seed: int) -> "TrainConfig":
        return cls(steps=t.steps, batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay,
                   warmup=t.warmup, seed=seed, eval_every=t.eval_every,
                   augment_shift=t.augment_shift)


def _param_groups(model: torch.nn.Module, weight_decay: float):
    """No decay on gains, biases, embeddings' scale: as open_clip's training does."""
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def _shift(x: torch.Tensor, max_shift: int, g: torch.Generator) -> torch.Tensor:
    if max_shift <= 0:
        return x
    dx, dy = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=g))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def train(model: torch.nn.Module, data: PairData, cfg: TrainConfig,
          evaluate: Callable[[torch.nn.Module], dict] | None = None,
          log: Callable[[dict], None] | None = None) -> list[dict]:
    """AdamW + warmup/cosine on the symmetric CLIP loss; returns the logged history."""
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    device = next(model.parameters()).device
    opt = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98),
                            eps=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / cfg.warmup if s < cfg.warmup
                                              else 0.5 * (1 + math.cos(math.pi * (s - cfg.warmup)
                                                                        / max(1, cfg.steps - cfg.warmup))))
    loss_fn = open_clip.ClipLoss()
    history: list[dict] = []
    n = len(data.images)
    model.train()
    t0 = time.time()
    bar = progress(range(1, cfg.steps + 1), desc="pretrain")
    running = 0.0
    for step in bar:
        idx = torch.randint(0, n, (cfg.batch_size,), generator=g)
        images = _shift(data.images[idx], cfg.augment_shift, g).to(device)
        out = model(images, data.tokens[idx].to(device))
        loss = loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {step}; lower train.lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        running += float(loss.detach())
        if step % 25 == 0 or step == cfg.steps:
            k = 25 if step % 25 == 0 else step % 25
            row = {"step": step, "loss": running / k, "lr": sched.get_last_lr()[0],
                   "time_s": round(time.time() - t0, 2)}
            running = 0.0
            if evaluate is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
                model.eval()
                row.update(evaluate(model))
                model.train()
            history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
            if log:
                log(row)
    model.eval()
    return history


@dataclass
class Pretraining:
    history: list[dict]
    zeroshot: dict[str, dict[str, float]]  # per evaluation set: top-1 / top-5 after training
    report: ReadReport
    load_s: float
    train_s: float
    dropped: int = 0  # pairs removed before training (``drop``)


def without(data: PairData, drop: Callable[[str], bool]) -> tuple[PairData, int]:
    """The pairs whose caption ``drop`` rejects removed (order kept), and how many were."""
    keep = [i for i, c in enumerate(data.captions) if not drop(c)]
    if not keep:
        raise DataError("every training pair was dropped; nothing left to train on")
    idx = torch.tensor(keep, dtype=torch.long)
    kept = PairData(data.images[idx], data.tokens[idx], [data.captions[i] for i in keep],
                    data.report, [data.keys[i] for i in keep] if data.keys else [])
    return kept, len(data.captions) - len(keep)


def pretrain(bundle, shards: Sequence[Shard], eval_sets: Sequence, cfg: TrainConfig,
             drop: Callable[[str], bool] | None = None) -> Pretraining:
    """Read the shards once, train ``bundle.model`` on them, score it on ``eval_sets`` (zero-shot
    over their class names) every ``cfg.eval_every`` steps and at the end. ``drop`` removes the
    pairs whose caption it accepts before training (the retrain oracle: the concept's pairs)."""
    from ..evaluate.sets import load as load_eval_images

    start = time.time()
    data = load_pairs(shards, bundle.preprocess, bundle.tokenizer)
    dropped = 0
    if drop is not None:
        data, dropped = without(data, drop)
    images = load_eval_images(eval_sets, bundle.preprocess)
    load_s = time.time() - start

    def evaluate(model):
        return {s.name: s.score(model, bundle.tokenizer, images[s.name])["top1"] for s in eval_sets}

    history = train(bundle.model, data, cfg, evaluate)
    train_s = time.time() - start - load_s
    final = {s.name: s.score(bundle.model, bundle.tokenizer, images[s.name]) for s in eval_sets}
    return Pretraining(history, final, data.report, load_s, train_s, dropped)
