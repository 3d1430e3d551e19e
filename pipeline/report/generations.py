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


def plot_answers(thumbs: dict[str, list], before: dict[str, list[str]],
                 after: dict[str, list[str]], questions: dict[str, str], rows: list[str],
                 path: str | Path, concept: str) -> None:
    """One row per concept: its first images, each captioned with the VLM's answer before and
    after SLUG on ``concept`` (the question asked is the row's label)."""
    plt = _plt()
    n = max(len(thumbs[r]) for r in rows)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.9 * n + 2.6, 1.75 * len(rows) + 0.5),
                             squeeze=False)
    for r, name in enumerate(rows):
        for j in range(n):
            ax = axes[r][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if j >= len(thumbs[name]):
                continue
            ax.imshow(thumbs[name][j])
            ax.set_xlabel(f"before: {before[name][j][:18]}\nafter: {after[name][j][:18]}",
                          fontsize=7)
        tag = " (forgotten)" if name == concept else ""
        axes[r][0].set_ylabel(f"{name}{tag}\n{questions[name]}", rotation=0, ha="right",
                              va="center", fontsize=8)
    fig.suptitle(f"The VLM's answers before and after SLUG on {concept}", fontsize=10)
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def plot_note(text: str, path: str | Path) -> None:
    """A figure that only says why there is nothing to show (a skipped stage's plot)."""
    plt = _plt()
    fig = plt.figure(figsize=(6, 1.2))
    fig.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=9)
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
