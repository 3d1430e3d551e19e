"""Atomic writes and hashing.

Every artifact is written to a temporary file (or folder) beside its destination and then renamed
over it, so an interrupted stage never leaves a half-written output behind. What a killed writer
left (``.<name>.<pid>.*`` of a process that no longer runs) is removed by the next write.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _sweep(path: Path) -> str:
    """Remove what killed writers of ``path`` left beside it (``.<name>.<pid>.*`` of a process
    that no longer runs); return the temporary-name prefix of this process."""
    import shutil

    base = f".{path.name}."
    for old in path.parent.glob(f"{glob_escape(base)}*"):
        pid = old.name[len(base):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    return f"{base}{os.getpid()}."


def glob_escape(text: str) -> str:
    """``text`` as a literal in a ``Path.glob`` pattern."""
    import glob

    return glob.escape(text)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_sweep(path), suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; artifacts get the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it replaces ``path`` (a folder
    such as a diffusers pipeline), on failure it is removed and ``path`` is left as it was."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_sweep(path), dir=path.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700; artifacts get the usual permissions
    try:
        yield tmp
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_csv(path: str | os.PathLike, rows: list[dict], fields: list[str] | None = None) -> None:
    """A table for ``dvc plots``: ``fields`` (default: every key, in first-seen order) as columns;
    keys of a row that are not fields are left out."""
    import csv
    import io

    fields = fields or list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())


META_KEY = "slug"


def save_tensors(path: str | os.PathLike, tensors: dict, meta: dict | None = None) -> Path:
    """Tensors as safetensors, atomically, with ``meta`` under one key as sorted JSON: the file's
    bytes depend only on its content (safetensors writes several metadata keys in a random order,
    measured: two identical runs gave two file hashes)."""
    from safetensors.torch import save_file

    path = Path(path)
    with atomic_path(path, ".safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={META_KEY: json.dumps(meta, sort_keys=True)} if meta else None)
    return path


def tensors_meta(path: str | os.PathLike) -> dict:
    """What ``save_tensors`` recorded (a file written another way: its metadata as it is)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    return json.loads(meta[META_KEY]) if META_KEY in meta else dict(meta)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_tree(root: str | os.PathLike) -> str:
    """One hash for a folder: the sorted relative paths and the content hashes of its files."""
    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


SKIPPED = "skipped.json"


def save_skipped(folder: str | os.PathLike, reason: str) -> None:
    """An output folder that holds only why its stage had nothing to do (a concept of a kind
    the consumer is not asked about, no concepts requested); later stages report the skip."""
    with atomic_dir(folder) as tmp:
        write_json(tmp / SKIPPED, {"skipped": reason})


def skipped(folder: str | os.PathLike) -> str | None:
    """Why ``folder`` holds no output (``save_skipped``), or ``None``."""
    path = Path(folder) / SKIPPED
    return json.loads(path.read_text())["skipped"] if path.exists() else None
