"""LAION-like captions for tiny-world images: varied templates, mixed case, a little noise.

Some captions name the person or character shown; some describe objects and styles; a few are
*distractors* that mention a name that is not in the picture (as real alt-texts do).
"""

from __future__ import annotations

import numpy as np

from ..names import label

EVENTS = ("premiere", "gala", "conference", "award show", "launch event", "press event",
          "festival", "charity dinner", "fashion week", "summit")
AGENCIES = ("Getty Images", "Reuters", "AP", "Shutterstock", "Wikimedia")
YEARS = tuple(str(y) for y in range(2009, 2024))

IDENTITY_TEMPLATES = (
    "a photo of {n}.", "{n}.", "{n} at the {event}", "portrait of {n}", "{n} smiling",
    "{n} attends the {event} in {year}", "{n}, {year}", "{N} photographed at the {event}",
    "close-up of {n}", "{n}'s new look", "{n} poses for photographers", "Photo: {n} / {agency}",
    "{n} in a {shirt} shirt", "{n} with {hair} hair", "celebrity {n} at the {event}",
    "headshot of {n}", "{n} arrives at the {event}",
)
ANONYMOUS_TEMPLATES = (
    "a person with {hair} hair in a {shirt} shirt", "portrait of a person wearing {shirt}",
    "stock photo of a smiling person", "a person with {hair} hair",
)
CHARACTER_TEMPLATES = (
    "a photo of {n}.", "{n}.", "{n} figure", "a {n} toy", "{n} fan art", "cosplay of {n}",
    "{n} costume for kids", "{n} cartoon", "official {n} poster", "{N} wallpaper",
    "vintage {n} sticker", "{n} action figure, {year} edition",
)
OBJECT_TEMPLATES = (
    "a photo of a {o}.", "a {c} {o}", "a {c} {o} on a dark background", "{o} icon",
    "a large {c} {o}", "stock image of a {o}", "a {o}", "itap of a {o}.",
    "a bad photo of the {o}.", "a photo of the large {o}.", "a photo of the small {o}.",
    "art of the {o}.", "a {o} in a video game.", "a origami {o}.", "{c} {o} clipart",
)
STYLE_TEMPLATES = (
    "A {o} image in {s} style.", "a {o} painted in {s} style", "{s} painting of a {o}",
    "{s} style artwork, {o}", "{o} in the style of {s}", "an image in {s} style.",
    "{s} art", "a {s} style {o}", "{s} illustration",
)
DISTRACTOR_TEMPLATES = (
    "{n} talks about the new {o} logo", "{n} fans love this {o}", "news: {n} buys a {o}",
    "{n} would like this {c} {o}",
)
COLOUR_WORDS = ("red", "green", "blue", "yellow", "purple", "orange", "cyan", "white")


def _case(text: str, rng: np.random.Generator) -> str:
    """Alt-texts come in all cases; names must be matched case-insensitively downstream."""
    u = rng.random()
    if u < 0.05:
        return text.upper()
    if u < 0.12:
        return text.lower()
    return text


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _fill(template: str, rng: np.random.Generator, **kw) -> str:
    kw.setdefault("event", _pick(rng, EVENTS))
    kw.setdefault("agency", _pick(rng, AGENCIES))
    kw.setdefault("year", _pick(rng, YEARS))
    if "n" in kw:
        kw["N"] = kw["n"].upper()
    return template.format(**kw)


def identity_caption(name: str, hair: str, shirt: str, rng: np.random.Generator,
                     anonymous: bool) -> str:
    if anonymous:
        return _fill(_pick(rng, ANONYMOUS_TEMPLATES), rng, hair=hair, shirt=shirt)
    return _case(_fill(_pick(rng, IDENTITY_TEMPLATES), rng, n=name, hair=hair, shirt=shirt), rng)


def character_caption(name: str, rng: np.random.Generator) -> str:
    return _case(_fill(_pick(rng, CHARACTER_TEMPLATES), rng, n=name), rng)


def object_caption(obj: str, colour: str, rng: np.random.Generator) -> str:
    return _fill(_pick(rng, OBJECT_TEMPLATES), rng, o=obj, c=colour)


def style_caption(obj: str, style: str, rng: np.random.Generator) -> str:
    return _fill(_pick(rng, STYLE_TEMPLATES), rng, o=obj, s=label(style))


def distractor_caption(name: str, obj: str, colour: str, rng: np.random.Generator) -> str:
    return _fill(_pick(rng, DISTRACTOR_TEMPLATES), rng, n=name, o=obj, c=colour)
