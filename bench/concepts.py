"""Other concepts with the committed params: ``dvc exp run -S concept=X compare`` for each, the
held-out numbers of SLUG and the baselines collected into bench/concepts.json (the README's
"other concepts" table). Run in a repository after ``dvc repro``; each concept is a named
experiment (``dvc exp show`` lists them), and the workspace is restored to the committed run.

    python -m bench.concepts ["Iron Man" "Mickey Mouse" ...]
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "concepts.json"
DEFAULT = ("Iron Man", "Mickey Mouse")
KEEP = ("label", "forget_top1", "forget_top5", "forget_split_top1", "celeba_top1",
        "imagenet_top1", "mia_efficacy", "reached", "time_to_forget_s")


def _sh(*cmd: str) -> str:
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def main(argv: list[str]) -> None:
    concepts = argv or list(DEFAULT)
    if _sh("git", "status", "--porcelain", "params.yaml", "dvc.lock").strip():
        sys.exit("error: params.yaml or dvc.lock has uncommitted changes; commit the run first")
    out = {"concepts": {}}
    try:
        for concept in concepts:
            name = re.sub(r"[^a-z0-9]+", "-", concept.lower()).strip("-")
            start = time.time()
            _sh("dvc", "exp", "run", "-f", "-n", name, "-S", f"concept={concept}", "compare")
            cmp = json.loads((ROOT / "metrics" / "compare.json").read_text())
            unl = json.loads((ROOT / "metrics" / "unlearn.json").read_text())
            out["concepts"][concept] = {
                "experiment": name, "kind": cmp["kind"], "layer": unl["layer"],
                "rel_step": unl["rel_step"], "topk": cmp["topk"], "target": cmp["target"],
                "methods": {m: {k: r.get(k) for k in KEEP} for m, r in cmp["methods"].items()},
                "wall_s": round(time.time() - start, 1)}
            print(f"{concept}: {unl['layer']}, {time.time() - start:.0f} s", file=sys.stderr)
    finally:  # back to the committed run
        _sh("git", "checkout", "--", "params.yaml", "dvc.lock", "metrics", "plots")
        _sh("dvc", "checkout", "-f")
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
