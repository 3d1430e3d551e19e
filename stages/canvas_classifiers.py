"""Stage canvas_classifiers (embedded default only): a style and an object classifier trained on
the tiny canvas, with their accuracy on held-out canvas images. A real run uses UnlearnCanvas's
checkpoints instead (canvas.classifiers.arch / style / object); with the embedded default those
name the files written here, into canvas.train.out."""

from __future__ import annotations

import time

import torch

from pipeline.canvas import classifiers as C
from pipeline.canvas import data as canvas_data
from pipeline.canvas import training as T
from pipeline.entry import metrics_path, run
from pipeline.errors import DataError, ParamsError
from pipeline.io import write_json
from pipeline.params import Params
from pipeline.progress import progress


def main(p: Params) -> None:
    c, t, k = p.canvas, p.canvas.train, p.canvas.classifiers
    if k.arch != C.TINY:
        raise ParamsError(f"params.yaml: canvas.classifiers.arch is {k.arch!r}; only {C.TINY!r} "
                          f"classifiers are trained here (a real run loads its checkpoints)")
    canvas = canvas_data.load(p.data.unlearncanvas, c.styles, c.objects)
    x, styles, objects, skipped = T.load_images01(canvas, k.image_size, progress)
    train, val = T.split(styles, objects, t.val_fraction, p.seed)
    if not val:
        raise DataError("no canvas image held out for validation; raise canvas.train.val_fraction "
                        "or add images")
    out = {"images": len(x), "skipped_corrupt_images": skipped, "train": len(train),
           "val": len(val), "seed": p.seed}
    for kind, labels, classes in (("style", styles, c.styles), ("object", objects, c.objects)):
        y, start = torch.tensor(labels), time.time()
        model = T.train_tiny(x[train], y[train], len(classes), width=t.width, epochs=t.epochs,
                             batch_size=t.batch_size, lr=t.lr, blur=t.blur, seed=p.seed,
                             image_size=k.image_size, mean=k.mean, std=k.std, progress=progress)
        judge = C.Judge(model, list(classes), k.image_size, k.mean, k.std)
        acc = float((judge.predict(x[val]) == y[val]).float().mean())
        train_acc = float((judge.predict(x[train]) == y[train]).float().mean())
        C.save_tiny(model, list(classes), C.tiny_path(t.out, kind),
                    {"kind": kind, "val_accuracy": round(acc, 4)})
        out[kind] = {"val_accuracy": acc, "train_accuracy": train_acc, "classes": len(classes),
                     "time_s": round(time.time() - start, 1)}
        print(f"canvas_classifiers: {kind} classifier, held-out canvas accuracy {acc:.3f}")
    write_json(metrics_path("canvas_classifiers"), out)


if __name__ == "__main__":
    run(main, embedded=True)
