"""Training the tiny world's style and object classifiers on the canvas images (a real run loads
UnlearnCanvas's checkpoints instead)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..datasets.shards import decode_image
from ..errors import DataError
from .classifiers import TinyConvNet
from .data import Canvas


def load_images01(canvas: Canvas, size: int, progress=lambda x, **k: x):
    """Every canvas image at ``size`` x ``size`` in [0, 1], with its style and object index; an
    unreadable image is a counted skip."""
    images, styles, objects, skipped = [], [], [], 0
    for path, si, oi in progress(canvas.items, desc="canvas images"):
        try:
            img = decode_image(path.read_bytes()).resize((size, size), Image.BICUBIC)
        except Exception:  # PIL raises many types on bad data: a counted skip
            skipped += 1
            continue
        t = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
        images.append(t.view(size, size, 3).permute(2, 0, 1).float() / 255.0)
        styles.append(si)
        objects.append(oi)
    if not images:
        raise DataError("no readable canvas image to train the classifiers on")
    return torch.stack(images), styles, objects, skipped


def split(labels_a: list[int], labels_b: list[int], val_fraction: float, seed: int
          ) -> tuple[list[int], list[int]]:
    """Train/validation indices, stratified by (style, object) cell so that every cell with two
    or more images is in both; single-image cells are split as one pool."""
    rng = np.random.default_rng(seed)
    cells: dict[tuple[int, int], list[int]] = {}
    for i, key in enumerate(zip(labels_a, labels_b)):
        cells.setdefault(key, []).append(i)
    train, val, single = [], [], []
    for idx in cells.values():
        if len(idx) == 1:
            single += idx
            continue
        idx = [int(i) for i in rng.permutation(idx)]
        k = int(round(val_fraction * len(idx)))
        val += idx[:k]
        train += idx[k:]
    single = [int(i) for i in rng.permutation(single)]
    k = int(round(val_fraction * len(single)))
    return sorted(train + single[k:]), sorted(val + single[:k])


def _augment(x: torch.Tensor, gen: torch.Generator, blur: float) -> torch.Tensor:
    """Shift by up to 2 px and blur by a random sigma: generated images are soft and off-centre."""
    n, _, h, w = x.shape
    pad = F.pad(x, (2, 2, 2, 2), mode="replicate")
    dy, dx = (int(v) for v in torch.randint(0, 5, (2,), generator=gen))
    x = pad[:, :, dy:dy + h, dx:dx + w]
    if blur > 0:
        sigma = float(torch.rand(1, generator=gen)) * blur
        if sigma > 0.05:
            r = max(1, int(3 * sigma))
            k = torch.exp(-torch.arange(-r, r + 1).float() ** 2 / (2 * sigma ** 2))
            k = (k / k.sum()).to(x.dtype)
            x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(3, 1, 1, 1),
                         groups=3)
            x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).repeat(3, 1, 1, 1),
                         groups=3)
    return x


def train_tiny(images01: torch.Tensor, labels: torch.Tensor, n_classes: int, *, width: int,
               epochs: int, batch_size: int, lr: float, blur: float, seed: int, image_size: int,
               mean: float = 0.5, std: float = 0.5, progress=lambda x, **k: x) -> TinyConvNet:
    """AdamW with a cosine schedule on ``images01`` (already at ``image_size``)."""
    if len(images01) < 2:
        raise DataError("too few canvas images to train a classifier")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = TinyConvNet(n_classes, width)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = epochs * max(1, (len(images01) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    for _ in progress(range(epochs), desc="classifier epochs"):
        order = torch.randperm(len(images01), generator=gen)
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            x = _augment(images01[idx], gen, blur * image_size / 64)
            loss = F.cross_entropy(model((x - mean) / std), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()
