"""UnlearnCanvas layout: ``<Style>/<Object>/<n>.jpg``.

Style and object folder names use underscores (``Van_Gogh``); prompts use spaces.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError


def read_canvas(root: Path, styles: list[str] | None = None, objects: list[str] | None = None
                ) -> tuple[list[str], list[str], list[tuple[Path, int, int]]]:
    """Styles, objects and ``(path, style index, object index)`` triples.

    With explicit ``styles``/``objects`` every named folder must exist (a clear error otherwise);
    without them the folders found define the lists.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"UnlearnCanvas folder {root} does not exist")
    if styles is None:
        styles = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not styles:
        raise DataError(f"UnlearnCanvas folder {root} has no style folders")
    if objects is None:
        objects = sorted(p.name for p in (root / styles[0]).iterdir() if p.is_dir())
    items = []
    for si, style in enumerate(styles):
        for oi, obj in enumerate(objects):
            folder = root / style / obj
            if not folder.is_dir():
                raise DataError(f"UnlearnCanvas folder {folder} is missing "
                                f"(style {style!r}, object {obj!r})")
            files = sorted(folder.glob("*.jpg"), key=lambda p: (len(p.stem), p.stem))
            items += [(p, si, oi) for p in files]
    if not items:
        raise DataError(f"UnlearnCanvas folder {root} holds no images")
    return styles, objects, items
