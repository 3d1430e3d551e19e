"""``slug review REV_A REV_B``: a markdown report of what changed between two revisions or
experiments, ready to paste into a pull request.

It is built on DVC's own diffs: ``dvc params diff`` (what was changed), ``dvc metrics
diff`` (the summary row, and every metric that moved), and ``dvc plots diff`` (the figures of both
revisions; the data plots overlaid in one chart each, rendered to PNG with vl-convert, so the
report needs no browser and no network). A revision is anything git knows (a commit, a branch,
``HEAD``), an experiment name from ``dvc exp show``, or ``workspace``.

    slug review main exp-1a2b3 --out review/     # writes review/review.md and review/*.png
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from pipeline.errors import SlugError
from pipeline.io import write_text

SUMMARY = "metrics/summary.json"
# The figures worth a look in a review, in this order: image plots side by side, data plots
# overlaid. Any other plot dvc knows is listed by name only.
KEY_PLOTS = ("plots/rank/pareto.png", "plots/unlearn/search.png", "plots/compare/pareto.png",
             "plots/evaluate/cosine.png", "plots/sd/grid.png", "plots/unlearncanvas/table.png",
             "plots/compare/methods.csv", "plots/unlearn/search.csv")


def _dvc(*args: str, root: Path) -> str:
    proc = subprocess.run(["dvc", *args], cwd=root, capture_output=True, text=True)
    if proc.returncode:
        msg = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        raise SlugError(f"dvc {' '.join(args)}: {msg}")
    return proc.stdout


def resolve(rev: str, root: Path) -> str:
    """A commit sha for ``rev`` (``workspace`` stays as it is)."""
    if rev == "workspace":
        return rev
    proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                          cwd=root, capture_output=True, text=True)
    if proc.returncode == 0:
        return proc.stdout.strip()
    from dvc.repo import Repo
    from dvc.repo.experiments.utils import resolve_name

    with Repo(str(root)) as repo:
        ref = resolve_name(repo.scm, rev).get(rev)
        if ref is None:
            raise SlugError(f"{rev!r} is neither a git revision nor an experiment "
                            f"(dvc exp show lists them)")
        return repo.scm.get_ref(str(ref))


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


def _changed_metrics(diff: dict) -> list[tuple[str, str, object, object]]:
    """``(file, key, old, new)`` of every metric that moved, in ``dvc metrics diff --json --all``
    output; wall clock, memory and hashes last."""
    out = []
    for path, keys in diff.items():
        for key, d in keys.items():
            if d.get("old") != d.get("new"):
                out.append((path, key, d.get("old"), d.get("new")))
    def noise(key: str) -> bool:  # wall clock, memory, hashes: last
        return key.endswith(("_s", "_mb", "sha256")) or "time" in key

    return sorted(out, key=lambda r: noise(r[1]))


def _summary_table(diff: dict, labels: tuple[str, str]) -> str:
    """The summary row of both revisions side by side (every key, moved or not)."""
    rows = next((keys for path, keys in diff.items() if path.endswith(SUMMARY)), {})
    if not any(d.get("old") != d.get("new") for d in rows.values()):
        return "The summary row did not change."
    lines = [f"| metric | {labels[0]} | {labels[1]} |", "|---|---|---|"]
    lines += [f"| {k} | {_fmt(d.get('old'))} | {_fmt(d.get('new'))} |" for k, d in rows.items()]
    return "\n".join(lines)


def _figures(raw: dict, a: str, b: str, labels: tuple[str, str], out: Path) -> list[str]:
    """The markdown of the figures of a ``dvc plots diff --json`` whose files are under
    ``out/.dvc_plots``; PNGs written into ``out``."""
    import vl_convert as vlc

    tmp = out / ".dvc_plots"
    plots = raw.get("data", raw)
    rename = {a: labels[0], b: labels[1]}
    md = []
    for pid in [p for p in KEY_PLOTS if p in plots] + sorted(set(plots) - set(KEY_PLOTS)):
        entries = plots[pid]
        if pid not in KEY_PLOTS and not pid.endswith(".png"):
            continue
        md.append(f"### {pid}\n")
        if entries and entries[0].get("type") == "image":
            cells = []
            for e in entries:
                rev = rename.get(e["revisions"][0], e["revisions"][0])
                dst = out / f"{_slug(rev)}__{_slug(pid)}.png"
                shutil.copy(e["url"], dst)
                cells.append((rev, dst.name))
            md.append("| " + " | ".join(r for r, _ in cells) + " |\n|" + "---|" * len(cells))
            md.append("| " + " | ".join(f"![{r}]({f})" for r, f in cells) + " |\n")
        else:
            for i, e in enumerate(entries):
                spec = json.loads(json.dumps(e["content"]).replace(a, labels[0])
                                  .replace(b, labels[1]))
                dst = out / f"{_slug(pid)}{'' if i == 0 else f'_{i}'}.png"
                dst.write_bytes(vlc.vegalite_to_png(spec, scale=1.5))
                md.append(f"![{pid}]({dst.name})\n")
    shutil.rmtree(tmp, ignore_errors=True)
    return md


def review(rev_a: str, rev_b: str, out: Path, root: Path = Path(".")) -> Path:
    root = root.resolve()
    a, b = resolve(rev_a, root), resolve(rev_b, root)
    labels = (rev_a, rev_b)
    out.mkdir(parents=True, exist_ok=True)
    # one dvc call each (they share a repository lock, so running them at once gains nothing)
    got = {k: _dvc(*args, root=root) for k, args in {
        "params": ("params", "diff", a, b, "--md"),
        "metrics": ("metrics", "diff", a, b, "--json", "--all"),
        "plots": ("plots", "diff", a, b, "--json", "-o", str(out / ".dvc_plots"))}.items()}
    params = got["params"].strip()
    for x, y in ((a, labels[0]), (b, labels[1])):
        params = params.replace(x, y)
    diff = json.loads(got["metrics"] or "{}")
    changed = _changed_metrics(diff)
    files = sorted({p for p, *_ in changed})
    lines = [f"# SLUG review: `{rev_a}` → `{rev_b}`\n",
             f"Revisions: `{rev_a}` = {a[:12]}, `{rev_b}` = {b[:12]}. Written by "
             f"`slug review {rev_a} {rev_b}`.\n",
             "## What changed (params)\n", _table(params, "No params changed."),
             "\n## Summary (held-out, %)\n", _summary_table(diff, labels),
             f"\n## Every metric that moved: {len(changed)} in {len(files)} file(s)\n"]
    if changed:
        lines += ["| file | metric | " + " | ".join(labels) + " |", "|---|---|---|---|"]
        lines += [f"| {os.path.relpath(p, root) if os.path.isabs(p) else p} | {k} | {_fmt(o)} | "
                  f"{_fmt(n)} |"
                  for p, k, o, n in changed[:40]]
        if len(changed) > 40:
            lines.append(f"\n… and {len(changed) - 40} more (`dvc metrics diff {rev_a} "
                         f"{rev_b} --all`).")
    lines += ["\n## Figures\n", *_figures(json.loads(got["plots"]), a, b, labels, out)]
    report = out / "review.md"
    write_text(report, "\n".join(lines) + "\n")
    return report


def _table(md: str, empty: str) -> str:
    """A dvc ``--md`` table, or ``empty`` when it has no rows."""
    return md if len(md.strip().splitlines()) > 2 else empty


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return "–" if x is None else str(x)
