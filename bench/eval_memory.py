"""Benchmark: peak memory of the held-out zero-shot evaluation as the image count grows x10.

Writes two CelebA-format folders (``img_align_celeba/NNNNNN.jpg``, the identity list, the
frequent-names file; ``pipeline.datasets.celeba``) of tiny-world-sized JPEGs (64 px), with N and
10 x N images, and runs the identity evaluation on each in a fresh subprocess with the tiny CLIP
architecture (random init): the streamed path (``pipeline.evaluate.stream``: decode, preprocess
and encode one batch at a time) and, for contrast, the old stacked path (``zeroshot.load_images``:
every image decoded into one tensor, then encoded). Each child records its peak RSS
(``resource.getrusage().ru_maxrss``) and wall time; ``bench/eval_memory.json`` gets the numbers.
Acceptance: the streamed path's peak RSS grows by at most 10 % from N to 10 x N.

    python -m bench.eval_memory            # N = 2000 (about 3 min on 2 CPU cores)
    python -m bench.eval_memory --n 500
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path("bench/eval_memory.json")
IDENTITIES = 100
SIZE = 64  # the tiny world's image size
TEMPLATES = ["a photo of {}.", "a close-up photo of {}."]
BATCH_SIZE = 512  # params.yaml evaluate.batch_size


def write_celeba(root: Path, n: int, seed: int = 0) -> None:
    """A CelebA folder of ``n`` images of ``IDENTITIES`` people (64 distinct random JPEGs, so
    writing is quick; every file is still decoded on its own)."""
    from PIL import Image

    from pipeline.datasets import celeba

    rng = np.random.default_rng(seed)
    blobs = []
    for _ in range(64):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(
            buf, format="JPEG", quality=90)
        blobs.append(buf.getvalue())
    (root / celeba.IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    names = [f"Person {i:03d}" for i in range(IDENTITIES)]
    assignments = []
    for k in range(n):
        image_id = f"{k + 1:06d}.jpg"
        (root / celeba.IMAGES_DIR / image_id).write_bytes(blobs[k % len(blobs)])
        assignments.append((image_id, names[int(rng.integers(IDENTITIES))]))
    celeba.write_lists(root, assignments, names)


def child(root: Path, mode: str) -> dict:
    """One identity evaluation in this process; returns its numbers and peak RSS."""
    import torch

    from pipeline.evaluate import stream, zeroshot
    from pipeline.evaluate.sets import celeba_identities
    from pipeline.models.factory import build

    start = time.time()
    torch.manual_seed(0)
    b = build("tiny-clip", None, False, "fp32", "cpu")
    s = celeba_identities(root, TEMPLATES)
    if mode == "stream":
        feats = stream.encode_images(b.model, stream.file_images(s.paths, b.preprocess, s.name),
                                     BATCH_SIZE)
    else:  # the old path: one stacked tensor of every preprocessed image
        feats = zeroshot.encode_images(b.model, zeroshot.load_images(s.paths, b.preprocess),
                                       BATCH_SIZE)
    clf = zeroshot.text_classifier(b.model, b.tokenizer, s.classnames, s.templates)
    acc = zeroshot.accuracy(feats, clf, s.targets)
    return {"mode": mode, "images": len(s.paths), "top1": acc["top1"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "wall_s": round(time.time() - start, 2), "torch": torch.__version__,
            "threads": torch.get_num_threads()}


def run_child(root: Path, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.eval_memory", "--child", mode,
                          "--root", str(root)], check=True, capture_output=True, text=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"eval_memory: {mode:>7} {res['images']:>6} images: peak RSS "
          f"{res['peak_rss_mb']:.0f} MB, {res['wall_s']:.1f} s", file=sys.stderr)
    return res


def main(n: int, stacked: bool) -> dict:
    counts = [n, 10 * n]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for c in counts:
            root = Path(tmp) / f"celeba_{c}"
            write_celeba(root, c)
            runs.append(run_child(root, "stream"))
            if stacked:
                runs.append(run_child(root, "stacked"))

    def peak(mode, c):
        return next(r["peak_rss_mb"] for r in runs if r["mode"] == mode and r["images"] == c)

    ratio = peak("stream", counts[1]) / peak("stream", counts[0])
    res = {"counts": counts, "image_px": SIZE, "identities": IDENTITIES,
           "batch_size": BATCH_SIZE, "torch": runs[0]["torch"], "threads": runs[0]["threads"],
           "runs": runs, "stream_peak_ratio_10x": round(ratio, 4),
           "stacked_peak_ratio_10x": round(peak("stacked", counts[1]) / peak("stacked", counts[0]),
                                           4) if stacked else None,
           "accepted": ratio <= 1.10}
    OUT.write_text(json.dumps(res, indent=2) + "\n")
    print(f"eval_memory: streamed peak RSS x{ratio:.3f} for x10 images -> {OUT}", file=sys.stderr)
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="the smaller image count (the other: 10x)")
    ap.add_argument("--no-stacked", action="store_true", help="skip the old stacked path")
    ap.add_argument("--child", choices=("stream", "stacked"), help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.root, a.child)))
    else:
        main(a.n, not a.no_stacked)
