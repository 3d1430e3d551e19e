"""Evaluation images as *sources* that are decoded, preprocessed and encoded one batch at a time.

A real evaluation set does not fit in memory as one preprocessed tensor (CelebA: 202,599 images,
about 120 GB at 224 px in fp32). A source holds only what names its images (file paths, a tar)
and the preprocess; ``encode_images`` / ``encode_pairs`` read one batch, encode it and keep the
embeddings only, so peak memory is one batch plus ``N x dim`` floats, whatever ``N``.

* ``FileImages``: image files (the labelled sets: CelebA, ImageNet, characters, canvas);
* ``TarPairs``: the image-caption pairs of a webdataset tar (the held-out forget split, the
  retain split, the non-members), read as ``load_pairs`` reads them (a corrupt image is skipped
  and counted in ``report``);
* ``TensorImages`` / ``TensorPairs``: already-decoded tensors (tests, small in-memory sets).

The batches are the slices ``[i, i + batch_size)`` of the stacked tensor the sources replace, and
the model sees the same batches as ``zeroshot.encode_images`` on that tensor, so the embeddings
are the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

from ..datasets.pairs import PairData
from ..datasets.shards import ReadReport, Shard, iter_samples
from ..errors import DataError
from .zeroshot import load_images

BATCH_SIZE = 512  # the default of ``evaluate.batch_size`` (and of ``zeroshot.encode_images``)


class Images:
    """A sized source of preprocessed image batches."""

    def __len__(self) -> int:
        raise NotImplementedError

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        raise NotImplementedError

    def subset(self, idx: Sequence[int]) -> "Images":
        raise NotImplementedError


@dataclass
class FileImages(Images):
    """Image files, decoded and preprocessed per batch (a corrupt file is a ``DataError``)."""

    paths: list[Path]
    preprocess: Callable

    def __len__(self) -> int:
        return len(self.paths)

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        for i in range(0, len(self.paths), batch_size):
            yield load_images(self.paths[i:i + batch_size], self.preprocess)

    def subset(self, idx: Sequence[int]) -> "FileImages":
        return FileImages([self.paths[int(i)] for i in idx], self.preprocess)


@dataclass
class TensorImages(Images):
    images: torch.Tensor  # [N, 3, H, W], preprocessed

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        for i in range(0, len(self.images), batch_size):
            yield self.images[i:i + batch_size]

    def subset(self, idx: Sequence[int]) -> "TensorImages":
        return TensorImages(self.images[torch.as_tensor(list(map(int, idx)), dtype=torch.long)])


def as_images(x: Images | torch.Tensor) -> Images:
    """A source from a source or a stacked tensor."""
    return TensorImages(x) if isinstance(x, torch.Tensor) else x


def file_images(paths: Sequence[Path], preprocess: Callable, name: str) -> FileImages:
    """A file source; no image at all, or a listed file that does not exist, is an error now
    (before any model work), naming the set and the first missing file."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise DataError(f"no evaluation images in the {name} set")
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"evaluation image {missing[0]} of the {name} set is missing "
                        f"({len(missing)} of {len(paths)} listed files missing)")
    return FileImages(paths, preprocess)


class Pairs:
    """A source of ``(preprocessed images, captions)`` batches."""

    name: str = "pairs"

    def batches(self, batch_size: int, limit: int | None = None
                ) -> Iterator[tuple[torch.Tensor, list[str]]]:
        """Batches of the first ``limit`` pairs (``None``: all)."""
        raise NotImplementedError


@dataclass
class TarPairs(Pairs):
    """The pairs of one webdataset tar, read as ``datasets.pairs.load_pairs`` reads them; the
    last pass's ``ReadReport`` is kept in ``report``."""

    tar: Path
    preprocess: Callable
    report: ReadReport = field(default_factory=ReadReport)

    @property
    def name(self) -> str:  # type: ignore[override]
        return str(self.tar)

    def batches(self, batch_size: int, limit: int | None = None
                ) -> Iterator[tuple[torch.Tensor, list[str]]]:
        self.report = ReadReport()
        images, captions, n = [], [], 0
        for _, img, caption in iter_samples([Shard(Path(self.tar))], self.report):
            if limit is not None and n == limit:
                break
            images.append(self.preprocess(img))
            captions.append(caption)
            n += 1
            if len(images) == batch_size:
                yield torch.stack(images), captions
                images, captions = [], []
        if images:
            yield torch.stack(images), captions


@dataclass
class TensorPairs(Pairs):
    data: PairData

    def batches(self, batch_size: int, limit: int | None = None
                ) -> Iterator[tuple[torch.Tensor, list[str]]]:
        n = len(self.data.images) if limit is None else min(limit, len(self.data.images))
        for i in range(0, n, batch_size):
            j = min(i + batch_size, n)
            yield self.data.images[i:j], self.data.captions[i:j]


def as_pairs(x: Pairs | PairData) -> Pairs:
    return TensorPairs(x) if isinstance(x, PairData) else x


def _libc_trim() -> Callable[[], object]:
    """glibc's ``malloc_trim(0)``, or a no-op elsewhere (macOS, musl, Windows)."""
    import ctypes
    import ctypes.util

    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    return lambda: trim(0)


_TRIM: Callable[[], object] | None = None


def _release() -> None:
    """Hand the batch's freed memory back to the system. Without it glibc's allocator keeps it:
    a batch's decoded images and activations are freed, but its dynamic mmap threshold then puts
    the next batch's large tensors on a fragmented heap, and the resident size grew by about
    10 MB per batch of 512 (measured: bench/eval_memory.py); with it, it stays flat."""
    global _TRIM
    if _TRIM is None:
        _TRIM = _libc_trim()
    _TRIM()


def _encode(model, batch: torch.Tensor) -> torch.Tensor:
    device = next(model.parameters()).device
    out = model.encode_image(batch.to(device), normalize=True).float()
    _release()  # the activations are freed by now
    return out


@torch.no_grad()
def encode_images(model, images: Images | torch.Tensor, batch_size: int = BATCH_SIZE
                  ) -> torch.Tensor:
    """[N, dim] normalised image embeddings, one batch in memory at a time."""
    feats = [_encode(model, b) for b in as_images(images).batches(batch_size)]
    if not feats:
        raise DataError("no evaluation images")
    return torch.cat(feats)


@torch.no_grad()
def encode_pairs(model, pairs: Pairs | PairData, batch_size: int = BATCH_SIZE,
                 limit: int | None = None) -> tuple[torch.Tensor, list[str]]:
    """The [N, dim] normalised image embeddings of the (first ``limit``) pairs and their N
    captions (the caption side is encoded by the caller, e.g. ``zeroshot.encode_texts``)."""
    pairs = as_pairs(pairs)
    feats, captions = [], []
    for imgs, caps in pairs.batches(batch_size, limit):
        feats.append(_encode(model, imgs))
        captions += caps
    if not feats:
        raise DataError(f"no usable samples in {pairs.name}")
    return torch.cat(feats), captions
