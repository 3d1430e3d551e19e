"""The before/after image grid of a text-to-image unlearning (the seed README's figure)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..io import atomic_path
from .figures import _plt


def plot_grid(before: torch.Tensor, after: torch.Tensor, prompts, rows: list[int],
              per_prompt: int, n: int, path: str | Path, concept: str) -> None:
    """One row per chosen prompt: ``n`` images before | ``n`` images after (same seeds)."""
    plt = _plt()
    n = min(n, per_prompt)
    fig, axes = plt.subplots(len(rows), 2 * n, figsize=(1.25 * 2 * n + 1.5, 1.3 * len(rows) + 0.6),
                             squeeze=False)
    for r, i in enumerate(rows):
        for j in range(n):
            for half, imgs in ((0, before), (1, after)):
                ax = axes[r][half * n + j]
                ax.imshow(imgs[i * per_prompt + j].permute(1, 2, 0).clamp(0, 1).numpy())
                ax.set_xticks([])
                ax.set_yticks([])
                for s in ax.spines.values():
                    s.set_visible(False)
        label = prompts[i].text + (" (forgotten)" if prompts[i].target else "")
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    axes[0][0].set_title("before", loc="left", fontsize=10)
    axes[0][n].set_title(f"after SLUG on {concept}", loc="left", fontsize=10)
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
