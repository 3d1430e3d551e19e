"""What the tiny world contains: named identities, characters, object classes and art styles.

Everything is synthetic. The names are labels only: a "Taylor Swift" here is a cartoon bust with
a given hair colour and shirt colour, chosen so that a 7 M-parameter CLIP can tell 24 of them apart
at 32 px. Each concept gets a *visual signature* made of large regions (tiny models do not learn
shapes smaller than about a fifth of the image side) plus random nuisance.
"""

from __future__ import annotations

from dataclasses import dataclass

# RGB palettes. Hair and shirt colours are far apart in hue or lightness so that one 4x4 patch of
# a 32 px image is enough to tell them apart.
HAIR_COLOURS = {
    "black": (22, 22, 22),
    "brown": (120, 66, 24),
    "blonde": (245, 214, 90),
    "red": (205, 45, 20),
    "white": (238, 238, 238),
    "blue": (40, 95, 235),
}
SHIRT_COLOURS = {
    "red": (225, 30, 35),
    "green": (30, 175, 60),
    "blue": (35, 60, 215),
    "yellow": (245, 225, 35),
    "white": (245, 245, 245),
    "purple": (150, 40, 190),
}

IDENTITY_NAMES = (
    "Elon Musk", "Taylor Swift", "Jeff Bezos", "Mark Zuckerberg", "Kim Kardashian", "Kanye West",
    "Barack Obama", "Lady Gaga", "Tom Cruise", "Bruce Lee", "Chris Evans", "Fan Bingbing",
    "Oprah Winfrey", "Bill Gates", "Beyonce Knowles", "Lionel Messi", "Serena Williams",
    "Emma Watson", "Brad Pitt", "Justin Bieber", "Katy Perry", "Cristiano Ronaldo",
    "Angelina Jolie", "Leonardo DiCaprio",
)

CHARACTER_NAMES = ("Iron Man", "Mickey Mouse", "Spider-Man", "Pikachu", "Batman", "Hello Kitty")

OBJECT_NAMES = (
    "circle", "bar", "triangle", "star", "cross", "ring",
    "heart", "diamond", "crescent", "arrow", "hourglass", "bolt",
)

STYLE_NAMES = (
    "Van_Gogh", "Pop_Art", "Sketch", "Watercolor", "Mosaic", "Neon_Lines", "Ukiyoe", "Cubism",
)


@dataclass(frozen=True)
class Identity:
    name: str
    hair: str
    shirt: str


def identities() -> list[Identity]:
    """24 identities, each a distinct (hair, shirt) pair; every colour is used four times.

    Row r pairs hair h with shirt (h + r) mod 6, so two identities never share both colours.
    """
    hairs, shirts = list(HAIR_COLOURS), list(SHIRT_COLOURS)
    out = []
    for k, name in enumerate(IDENTITY_NAMES):
        r, h = divmod(k, len(hairs))
        out.append(Identity(name, hairs[h], shirts[(h + r) % len(shirts)]))
    return out


def object_wnids() -> dict[str, str]:
    """ImageNet-style synset ids for the object classes (fake, but in the real format)."""
    return {name: f"n{90000001 + i:08d}" for i, name in enumerate(OBJECT_NAMES)}
