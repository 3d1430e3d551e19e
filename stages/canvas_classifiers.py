"""Stage canvas_classifiers (embedded default only): a style and an object classifier trained on
the tiny canvas, with their accuracy on held-out canvas images. A real run uses UnlearnCanvas's
checkpoints instead (canvas.classifiers.arch / style / object)."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from PIL import Image

from pipeline.canvas import classifiers as C
from pipeline.canvas import data as canvas_data
from pipeline.datasets.shards import decode_image
from pipeline.errors import DataError, ParamsError
from pipeline.io import write_json
from pipeline.params import Params
from pipeline.progress import progress

from ._common import run

METRICS = Path("metrics/canvas_classifiers.json")


def _image01(path: Path, size: int) -> torch.Tensor:
    img = decode_image(path.read_bytes()).resize((size, size), Image.BICUBIC)
    t = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    return t.view(size, size, 3).permute(2, 0, 1).float() / 255.0


def main(p: Params) -> None:
    c, t = p.canvas, p.canvas.train
    if c.classifiers.arch != C.TINY:
        raise ParamsError(f"params.yaml: canvas.classifiers.arch is {c.classifiers.arch!r}; this "
                          f"stage trains only {C.TINY!r} classifiers (a real run loads its "
                          f"checkpoints and skips it)")
    canvas = canvas_data.load(p.data.unlearncanvas, c.styles, c.objects)
    images, styles, objects, skipped = [], [], [], 0
    for path, si, oi in progress(canvas.items, desc="canvas images"):
        try:
            images.append(_image01(path, c.classifiers.image_size))
        except Exception:  # PIL raises many types on bad data: a counted skip
            skipped += 1
            continue
        styles.append(si)
        objects.append(oi)
    if not images:
        raise DataError("no readable canvas image to train the classifiers on")
    x = torch.stack(images)
    train, val = C.split(styles, objects, t.val_fraction, p.seed)
    if not val:
        raise DataError("no canvas image held out for validation; raise canvas.train.val_fraction "
                        "or add images")
    out = {"images": len(x), "skipped_corrupt_images": skipped, "train": len(train),
           "val": len(val), "seed": p.seed}
    for kind, labels, classes, path in (("style", styles, c.styles, c.classifiers.style),
                                        ("object", objects, c.objects, c.classifiers.object)):
        y = torch.tensor(labels)
        start = time.time()
        model = C.train_tiny(x[train], y[train], len(classes), width=t.width, epochs=t.epochs,
                             batch_size=t.batch_size, lr=t.lr, blur=t.blur, seed=p.seed,
                             image_size=c.classifiers.image_size, mean=c.classifiers.mean,
                             std=c.classifiers.std, progress=progress)
        judge = C.Judge(model, list(classes), c.classifiers.image_size, c.classifiers.mean,
                        c.classifiers.std)
        acc = float((judge.predict(x[val]) == y[val]).float().mean())
        train_acc = float((judge.predict(x[train]) == y[train]).float().mean())
        C.save_tiny(model, list(classes), path, {"kind": kind, "val_accuracy": round(acc, 4)})
        out[kind] = {"val_accuracy": acc, "train_accuracy": train_acc, "classes": len(classes),
                     "time_s": round(time.time() - start, 1)}
        print(f"canvas_classifiers: {kind} classifier, held-out canvas accuracy {acc:.3f}")
    write_json(METRICS, out)


if __name__ == "__main__":
    run(main)
