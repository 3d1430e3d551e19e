"""The one rule for concept names.

Data sets spell a name in several ways: CelebA and UnlearnCanvas folders use underscores
(``Elon_Musk``, ``Van_Gogh``), prompts use spaces, captions mix case and hyphens
(``Spider-Man``, ``spider man``). Two spellings name the same concept when their ``key`` is equal:
case-insensitive, with runs of spaces, underscores and hyphens treated as one separator. The
caption filter (``sets.match``), the concept lookup in the evaluation sets, the canvas targets and
the generation judge all compare names through this module.
"""

from __future__ import annotations

import re

SEPARATORS = r"[\s_\-]+"
_SEP = re.compile(SEPARATORS)


def words(name: str) -> list[str]:
    """The words of a name, split on spaces, underscores and hyphens."""
    return [w for w in _SEP.split(name.strip()) if w]


def key(name: str) -> str:
    """What two spellings of one name have in common: ``Elon_Musk`` -> ``elon musk``."""
    return " ".join(words(name)).lower()


def same(a: str, b: str) -> bool:
    return key(a) == key(b)


def label(name: str) -> str:
    """The prompt form of a file or folder name: ``Van_Gogh`` -> ``Van Gogh``."""
    return name.replace("_", " ")


def file_name(label_: str) -> str:
    """The file form of a prompt-form name: ``Elon Musk`` -> ``Elon_Musk``."""
    return label_.replace(" ", "_")
