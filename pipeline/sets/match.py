"""Does a caption mention the concept?

Case-insensitive, on word boundaries (``Musk`` does not match ``Muskrat``), with spaces,
underscores and hyphens equivalent (``Elon_Musk`` = ``Elon Musk``, ``Spider Man`` = ``Spider-Man``),
plus optional aliases. The reference matched raw substrings and never handled underscores (B7).
"""

from __future__ import annotations

import re
from typing import Iterable

from ..errors import ParamsError

_SEP = r"[\s_\-]+"


def _pattern(term: str) -> str:
    words = [w for w in re.split(r"[\s_\-]+", term.strip()) if w]
    if not words:
        raise ParamsError(f"concept or alias {term!r} has no words to match")
    body = _SEP.join(re.escape(w) for w in words)
    # \w-boundaries that also treat an underscore next to the name as a separator
    return rf"(?<![^\W_]){body}(?![^\W_])"


class ConceptMatcher:
    def __init__(self, concept: str, aliases: Iterable[str] = ()):
        self.terms = [concept, *aliases]
        self.regex = re.compile("|".join(f"(?:{_pattern(t)})" for t in self.terms), re.IGNORECASE)

    def __call__(self, caption: str | None) -> bool:
        return bool(caption) and self.regex.search(caption) is not None

    def __repr__(self) -> str:
        return f"ConceptMatcher({self.terms!r})"
