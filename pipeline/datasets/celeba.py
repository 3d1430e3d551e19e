"""CelebA as the SLUG reference reads it.

* ``img_align_celeba/NNNNNN.jpg``: the aligned face images;
* an identity list with 2 header lines, then ``image_id Name_With_Underscores`` per line;
* ``frequent_celebs.txt``: one name per line (underscores for spaces), the names the CelebA
  retain score averages over. The reference's file has no newline after its last line; both
  forms are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..io import write_text
from ..names import file_name, label

IMAGES_DIR = "img_align_celeba"
IDENTITY_FILE = "list_identity_celeba.txt"
FREQUENT_FILE = "frequent_celebs.txt"


@dataclass(frozen=True)
class CelebA:
    root: Path
    identity_file: str = IDENTITY_FILE
    frequent_file: str = FREQUENT_FILE

    @property
    def images(self) -> Path:
        return self.root / IMAGES_DIR

    def identities(self) -> dict[str, list[Path]]:
        """Name (with spaces) -> its image paths, in file order."""
        path = self.root / self.identity_file
        if not path.exists():
            raise DataError(f"CelebA identity list {path} is missing")
        lines = path.read_text().splitlines()
        if len(lines) < 3:
            raise DataError(f"{path} has no identity lines (2 header lines, then "
                            f"'image_id Name_With_Underscores')")
        out: dict[str, list[Path]] = {}
        for n, line in enumerate(lines[2:], start=3):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise DataError(f"{path}:{n}: expected 'image_id Name_With_Underscores', "
                                f"got {line!r}")
            out.setdefault(label(parts[1]), []).append(self.images / parts[0])
        return out

    def frequent(self) -> list[str]:
        path = self.root / self.frequent_file
        if not path.exists():
            raise DataError(f"CelebA frequent-names file {path} is missing")
        return [label(s.strip()) for s in path.read_text().splitlines() if s.strip()]


def write_lists(root: Path, assignments: list[tuple[str, str]], frequent: list[str]) -> None:
    """Write the identity list (``(image_id, name)`` pairs) and the frequent-names file."""
    rows = [f"{img} {file_name(name)}" for img, name in assignments]
    write_text(root / IDENTITY_FILE, f"{len(rows)}\nimage_id identity_name\n" + "\n".join(rows)
               + "\n")
    write_text(root / FREQUENT_FILE, "\n".join(file_name(n) for n in frequent))
