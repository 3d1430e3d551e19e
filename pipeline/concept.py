"""The concept to unlearn, resolved once.

``resolve`` finds the concept among the class names of the evaluation sets (every kind: identity,
character, object, style) with the one name rule of ``pipeline.names``. The result is recorded in
the sets manifest; every later step reads it from there instead of resolving the name again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

from . import names
from .errors import DataError


@dataclass(frozen=True)
class Concept:
    name: str  # as the user wrote it (params: concept)
    label: str  # its class name in the evaluation set of its kind ("Elon Musk")
    kind: str  # identity | character | object | style
    index: int  # position of ``label`` among the class names of its kind
    aliases: tuple[str, ...] = ()  # other spellings the caption filter also matches

    def to_dict(self) -> dict:
        return {**asdict(self), "aliases": list(self.aliases)}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Concept":
        return cls(d["name"], d["label"], d["kind"], int(d["index"]), tuple(d.get("aliases", ())))

    def check(self, classnames: Sequence[str]) -> None:
        """Refuse evaluation data whose class list no longer has the concept where it was."""
        if self.index >= len(classnames) or not names.same(classnames[self.index], self.label):
            raise DataError(f"the {self.kind} class names no longer hold {self.label!r} at "
                            f"position {self.index}; the evaluation data changed after the sets "
                            f"were built: build them again")


def resolve(name: str, kind: str, aliases: Sequence[str],
            classnames: Mapping[str, Sequence[str]]) -> Concept:
    """``kind``: ``auto`` (the first kind whose class names hold the concept) or a kind of
    ``classnames`` (``params.CONCEPT_KINDS``)."""
    want = names.key(name)
    if not want:
        raise DataError("the concept is empty; set `concept` in params.yaml")
    kinds = list(classnames) if kind == "auto" else [kind]
    for k in kinds:
        if k not in classnames:
            raise DataError(f"concept_kind {kind!r} is not one of auto, {', '.join(classnames)}")
        for i, c in enumerate(classnames[k]):
            if names.key(c) == want:
                return Concept(name, c, k, i, tuple(aliases))
    known = "; ".join(f"{k}: {', '.join(list(v)[:6])}..." for k, v in classnames.items())
    where = "any evaluation set" if kind == "auto" else f"the {kind} evaluation set"
    raise DataError(f"concept {name!r} is not a class name of {where}, so its forgetting cannot "
                    f"be measured ({known})")


def lookup(name: str, kind: str, aliases: Sequence[str], data, templates) -> Concept:
    """``resolve`` against the evaluation sets a ``data`` params group names (their folder
    listings; no image is read): the filter, the sets and ``slug check`` all call this."""
    from .evaluate.sets import classnames, standard_sets

    sets = standard_sets(data.celeba, data.characters, data.imagenet, data.unlearncanvas,
                         templates)
    return resolve(name, kind, aliases, classnames(sets))
