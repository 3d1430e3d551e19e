"""ImageNet validation layout: ``val/<wnid>/*.JPEG`` plus a class-names file.

The class-names file follows ``LOC_synset_mapping.txt``: ``<wnid> <name>[, synonyms]`` per line;
the first name before a comma is the class name used in prompts. The same reader serves any
``<folder>/<class>/*`` image folder (the tiny world's character set uses it without a mapping).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..io import write_text
from ..names import label

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".webp"}
CLASSNAMES_FILE = "LOC_synset_mapping.txt"


def read_classnames(path: Path) -> dict[str, str]:
    if not path.exists():
        raise DataError(f"class-names file {path} is missing (expected '<wnid> <name>' lines)")
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        wnid, _, names = line.strip().partition(" ")
        if not names:
            raise DataError(f"{path}:{n}: expected '<wnid> <name>', got {line!r}")
        out[wnid] = names.split(",")[0].strip()
    return out


def read_folder(root: Path, classnames: dict[str, str] | None = None
                ) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names (sorted by folder) and ``(image path, class index)`` pairs.

    Without ``classnames`` a folder's name is its class name (underscores become spaces).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist")
    dirs = sorted(p for p in root.iterdir() if p.is_dir())
    if not dirs:
        raise DataError(f"image folder {root} has no class sub-folders")
    names, items = [], []
    for idx, d in enumerate(dirs):
        if classnames is not None:
            if d.name not in classnames:
                raise DataError(f"{d} is not in the class-names file")
            names.append(classnames[d.name])
        else:
            names.append(label(d.name))
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        items += [(p, idx) for p in files]
    if not items:
        raise DataError(f"image folder {root} holds no images")
    return names, items


def write_classnames(path: Path, mapping: dict[str, str]) -> None:
    write_text(path, "".join(f"{w} {n}\n" for w, n in mapping.items()))
