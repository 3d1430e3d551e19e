"""Procedural drawing of tiny-world images (PIL only, seeded by a numpy Generator).

Every function draws at ``SIZE`` px and returns an RGB ``PIL.Image``. Nuisance (position, scale,
rotation, background, pixel noise) is random; the concept's signature is not.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .concepts import HAIR_COLOURS, SHIRT_COLOURS

SIZE = 64
C = SIZE / 2
SKIN_TONES = ((241, 200, 170), (224, 172, 130), (180, 120, 80), (120, 80, 50))
BRIGHT = {"red": (230, 40, 40), "green": (40, 200, 70), "blue": (50, 90, 240),
          "yellow": (245, 220, 40), "purple": (180, 60, 220), "orange": (245, 140, 30),
          "cyan": (40, 210, 220), "white": (240, 240, 240)}


def _rgb(rng: np.random.Generator, lo: int, hi: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, size=3))


def _jitter(rgb, rng: np.random.Generator, amount: int = 12):
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)


def _dark_background(rng: np.random.Generator) -> Image.Image:
    """A dark background, either flat or a vertical two-colour gradient."""
    a, b = np.array(_rgb(rng, 0, 90), float), np.array(_rgb(rng, 0, 90), float)
    if rng.random() < 0.5:
        b = a
    t = np.linspace(0, 1, SIZE)[:, None, None]
    arr = a * (1 - t) + b * t
    return Image.fromarray(np.broadcast_to(arr, (SIZE, SIZE, 3)).astype(np.uint8))


def _finish(img: Image.Image, rng: np.random.Generator, noise: float = 10.0) -> Image.Image:
    arr = np.asarray(img, dtype=np.float32)
    arr = arr + rng.normal(0.0, noise, size=arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _place(layer: Image.Image, bg: Image.Image, rng: np.random.Generator, max_rot: float,
           shift: float = 6.0) -> Image.Image:
    """Rotate and shift an RGBA figure layer, then composite it over the background."""
    angle = float(rng.uniform(-max_rot, max_rot))
    layer = layer.rotate(angle, resample=Image.BICUBIC, center=(C, C))
    dx, dy = (int(v) for v in rng.integers(-shift, shift + 1, size=2))
    canvas = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    canvas.paste(layer, (dx, dy), layer)
    out = bg.convert("RGBA")
    out.alpha_composite(canvas)
    return out.convert("RGB")


def _ellipse(d: ImageDraw.ImageDraw, cx, cy, rx, ry, fill, outline=None, width=1):
    d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=fill, outline=outline, width=width)


# ---------------------------------------------------------------------------------------------
# identities: a bust with identity-specific hair and shirt colours


def portrait(hair: str, shirt: str, rng: np.random.Generator) -> Image.Image:
    s = float(rng.uniform(0.9, 1.12))
    layer = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    skin = _jitter(SKIN_TONES[int(rng.integers(len(SKIN_TONES)))], rng, 8)
    hair_rgb = _jitter(HAIR_COLOURS[hair], rng)
    shirt_rgb = _jitter(SHIRT_COLOURS[shirt], rng)
    cy = C - 6 * s
    # shirt: a trapezoid from the shoulders to the bottom edge
    top, w_top, w_bot = cy + 14 * s, 17 * s, 27 * s
    d.polygon([(C - w_top, top), (C + w_top, top), (C + w_bot, SIZE + 8), (C - w_bot, SIZE + 8)],
              fill=shirt_rgb)
    d.rectangle([C - 4 * s, cy + 8 * s, C + 4 * s, top + 2], fill=skin)  # neck
    _ellipse(d, C, cy - 3 * s, 14 * s, 13 * s, hair_rgb)  # hair behind the head
    if rng.random() < 0.5:  # long hair falls to the shoulders
        d.rectangle([C - 14 * s, cy - 3 * s, C + 14 * s, cy + 12 * s], fill=hair_rgb)
    _ellipse(d, C, cy + 2 * s, 10.5 * s, 12 * s, skin)  # face
    for ex in (-4.5, 4.5):
        _ellipse(d, C + ex * s, cy + 1 * s, 1.6 * s, 1.6 * s, (25, 25, 25))
    d.line([(C - 3 * s, cy + 8 * s), (C + 3 * s, cy + 8 * s)], fill=(120, 40, 40), width=1)
    return _finish(_place(layer, _dark_background(rng), rng, max_rot=10), rng)


# ---------------------------------------------------------------------------------------------
# characters: fixed iconic silhouettes and colours


def _iron_man(d, s):
    """A helmet only: a torso would read as a red shirt, the identities' signature."""
    red, gold = (170, 20, 30), (235, 190, 60)
    d.rounded_rectangle([C - 16 * s, C - 22 * s, C + 16 * s, C + 18 * s], radius=10 * s, fill=red)
    d.polygon([(C - 11 * s, C - 13 * s), (C + 11 * s, C - 13 * s), (C + 10 * s, C + 8 * s),
               (C, C + 15 * s), (C - 10 * s, C + 8 * s)], fill=gold)
    for ex in (-1, 1):
        d.rectangle([C + ex * 6 * s - 4 * s, C - 6 * s, C + ex * 6 * s + 4 * s, C - 3 * s],
                    fill=(200, 250, 255))
    d.line([(C - 5 * s, C + 7 * s), (C + 5 * s, C + 7 * s)], fill=(90, 60, 20), width=2)


def _mickey(d, s):
    black, face = (15, 15, 15), (240, 205, 160)
    for ex in (-1, 1):
        _ellipse(d, C + ex * 14 * s, C - 14 * s, 9 * s, 9 * s, black)
    _ellipse(d, C, C, 14 * s, 14 * s, black)
    _ellipse(d, C, C + 5 * s, 10 * s, 8 * s, face)
    _ellipse(d, C, C + 3 * s, 2.5 * s, 2 * s, black)
    d.rectangle([C - 14 * s, C + 16 * s, C + 14 * s, SIZE], fill=(220, 30, 30))  # red shorts


def _spider_man(d, s):
    red, black = (210, 20, 30), (20, 20, 20)
    d.rectangle([C - 15 * s, C + 14 * s, C + 15 * s, SIZE], fill=(30, 60, 200))
    _ellipse(d, C, C, 13 * s, 16 * s, red)
    for k in range(8):  # web: spokes and rings
        a = k * math.pi / 4
        d.line([(C, C), (C + 14 * s * math.cos(a), C + 17 * s * math.sin(a))], fill=black)
    for r in (6, 11):
        _ellipse(d, C, C, r * s, r * 1.2 * s, None, outline=black)
    for ex in (-1, 1):
        d.polygon([(C + ex * 2 * s, C - 2 * s), (C + ex * 11 * s, C - 7 * s),
                   (C + ex * 8 * s, C + 3 * s)], fill=(250, 250, 250), outline=black)


def _pikachu(d, s):
    yellow, black = (250, 215, 30), (20, 20, 20)
    for ex in (-1, 1):
        d.polygon([(C + ex * 5 * s, C - 8 * s), (C + ex * 20 * s, C - 26 * s),
                   (C + ex * 12 * s, C - 5 * s)], fill=yellow)
        d.polygon([(C + ex * 16 * s, C - 21 * s), (C + ex * 20 * s, C - 26 * s),
                   (C + ex * 18 * s, C - 17 * s)], fill=black)
    _ellipse(d, C, C + 2 * s, 15 * s, 13 * s, yellow)
    for ex in (-1, 1):
        _ellipse(d, C + ex * 10 * s, C + 6 * s, 3.5 * s, 3.5 * s, (230, 40, 40))
        _ellipse(d, C + ex * 5 * s, C - 1 * s, 2 * s, 2 * s, black)


def _batman(d, s):
    black, gray = (25, 25, 35), (120, 120, 130)
    d.rectangle([C - 17 * s, C + 12 * s, C + 17 * s, SIZE], fill=gray)
    _ellipse(d, C, C + 20 * s, 7 * s, 4 * s, (240, 210, 40))  # emblem
    for ex in (-1, 1):
        d.polygon([(C + ex * 4 * s, C - 10 * s), (C + ex * 11 * s, C - 24 * s),
                   (C + ex * 12 * s, C - 8 * s)], fill=black)
    d.rounded_rectangle([C - 12 * s, C - 12 * s, C + 12 * s, C + 13 * s], radius=6 * s,
                        fill=black)
    d.rectangle([C - 8 * s, C + 3 * s, C + 8 * s, C + 13 * s], fill=(225, 180, 140))


def _hello_kitty(d, s):
    white, black = (250, 250, 250), (20, 20, 20)
    for ex in (-1, 1):
        d.polygon([(C + ex * 6 * s, C - 9 * s), (C + ex * 16 * s, C - 19 * s),
                   (C + ex * 17 * s, C - 4 * s)], fill=white)
    _ellipse(d, C, C, 18 * s, 13 * s, white)
    _ellipse(d, C + 11 * s, C - 13 * s, 6 * s, 5 * s, (235, 30, 80))  # bow
    _ellipse(d, C + 11 * s, C - 13 * s, 2 * s, 2 * s, (250, 230, 60))
    for ex in (-1, 1):
        _ellipse(d, C + ex * 7 * s, C + 1 * s, 1.6 * s, 2.2 * s, black)
    _ellipse(d, C, C + 4 * s, 2 * s, 1.5 * s, (250, 200, 30))


CHARACTER_DRAWERS = {
    "Iron Man": _iron_man, "Mickey Mouse": _mickey, "Spider-Man": _spider_man,
    "Pikachu": _pikachu, "Batman": _batman, "Hello Kitty": _hello_kitty,
}


def character(name: str, rng: np.random.Generator) -> Image.Image:
    s = float(rng.uniform(0.85, 1.1))
    layer = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    CHARACTER_DRAWERS[name](ImageDraw.Draw(layer), s)
    return _finish(_place(layer, _dark_background(rng), rng, max_rot=12), rng)


# ---------------------------------------------------------------------------------------------
# objects: big flat shapes


def _star_points(n, r_out, r_in, rot=0.0):
    pts = []
    for k in range(2 * n):
        r = r_out if k % 2 == 0 else r_in
        a = rot + k * math.pi / n - math.pi / 2
        pts.append((C + r * math.cos(a), C + r * math.sin(a)))
    return pts


def draw_shape(d: ImageDraw.ImageDraw, name: str, r: float, fill, outline=None,
               width: int = 1) -> None:
    """Draw object ``name`` of radius ``r`` centred on the canvas (upright; callers rotate)."""
    kw = dict(fill=fill, outline=outline, width=width)
    if name == "circle":
        _ellipse(d, C, C, r, r, **kw)
    elif name == "bar":  # a wide slab: a filled square is too close to a disc at 32 px
        d.rectangle([C - r * 1.1, C - r * 0.42, C + r * 1.1, C + r * 0.42], **kw)
    elif name == "triangle":
        d.polygon([(C, C - r), (C + r * 0.95, C + r * 0.75), (C - r * 0.95, C + r * 0.75)],
                  fill=fill, outline=outline, width=width)
    elif name == "star":
        d.polygon(_star_points(5, r * 1.1, r * 0.45), fill=fill, outline=outline, width=width)
    elif name == "cross":
        w = r * 0.36
        d.polygon([(C - w, C - r), (C + w, C - r), (C + w, C - w), (C + r, C - w), (C + r, C + w),
                   (C + w, C + w), (C + w, C + r), (C - w, C + r), (C - w, C + w), (C - r, C + w),
                   (C - r, C - w), (C - w, C - w)], fill=fill, outline=outline, width=width)
    elif name == "ring":
        _ellipse(d, C, C, r, r, None, outline=fill if outline is None else outline,
                 width=max(width, int(r * 0.38)))
    elif name == "heart":
        pts = []
        for k in range(40):
            t = 2 * math.pi * k / 40
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            pts.append((C + x * r / 16, C - y * r / 16 - r * 0.1))
        d.polygon(pts, fill=fill, outline=outline, width=width)
    elif name == "diamond":
        d.polygon([(C, C - r * 1.15), (C + r * 0.6, C), (C, C + r * 1.15), (C - r * 0.6, C)],
                  fill=fill, outline=outline, width=width)
    elif name == "crescent":
        pts = [(C + r * math.cos(a), C + r * math.sin(a))
               for a in np.linspace(math.pi / 2, 3 * math.pi / 2, 20)]
        pts += [(C + r * 0.3 + r * 0.75 * math.cos(a), C + r * math.sin(a))
                for a in np.linspace(3 * math.pi / 2, math.pi / 2, 20)]
        d.polygon(pts, fill=fill, outline=outline, width=width)
    elif name == "arrow":
        w, h = r * 0.3, r * 0.75
        d.polygon([(C - r, C - w), (C + r * 0.1, C - w), (C + r * 0.1, C - h), (C + r, C),
                   (C + r * 0.1, C + h), (C + r * 0.1, C + w), (C - r, C + w)],
                  fill=fill, outline=outline, width=width)
    elif name == "hourglass":
        d.polygon([(C - r * 0.8, C - r), (C + r * 0.8, C - r), (C, C), (C + r * 0.8, C + r),
                   (C - r * 0.8, C + r), (C, C)], fill=fill, outline=outline, width=width)
    elif name == "bolt":
        d.polygon([(C + r * 0.35, C - r * 1.1), (C - r * 0.8, C + r * 0.2), (C - r * 0.1, C + r * 0.2),
                   (C - r * 0.4, C + r * 1.1), (C + r * 0.8, C - r * 0.25), (C + r * 0.1, C - r * 0.25)],
                  fill=fill, outline=outline, width=width)
    else:  # pragma: no cover - the world definition and the drawers are kept in sync by a test
        raise KeyError(name)


def object_photo(name: str, colour: str, rng: np.random.Generator) -> Image.Image:
    r = float(rng.uniform(0.27, 0.36)) * SIZE
    layer = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    colour = _jitter(BRIGHT[colour], rng, 15)
    draw_shape(ImageDraw.Draw(layer), name, r, colour)
    return _finish(_place(layer, _dark_background(rng), rng, max_rot=25, shift=5), rng)


# ---------------------------------------------------------------------------------------------
# styles: an object rendered with a style's palette, texture and post-processing


def _hatch(d, rng, colour, step, slope=1.0, width=1):
    off = int(rng.integers(step))
    for x in range(-SIZE, SIZE * 2, step):
        d.line([(x + off, 0), (x + off + slope * SIZE, SIZE)], fill=colour, width=width)


def stylized(obj: str, style: str, rng: np.random.Generator) -> Image.Image:
    r = float(rng.uniform(0.26, 0.34)) * SIZE
    angle = float(rng.uniform(-25, 25))
    layer = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    ld = ImageDraw.Draw(layer)
    post = None
    if style == "Sketch":
        g = int(rng.integers(228, 252))
        bg = Image.new("RGB", (SIZE, SIZE), (g, g, g))
        _hatch(ImageDraw.Draw(bg), rng, (g - 40,) * 3, 5)
        ink = int(rng.integers(20, 70))
        draw_shape(ld, obj, r, None, outline=(ink,) * 3 + (255,), width=3)
    elif style == "Neon_Lines":
        bg = Image.new("RGB", (SIZE, SIZE), (5, 5, 12))
        neon = ((255, 40, 220), (40, 255, 240), (120, 255, 40))[int(rng.integers(3))]
        bd = ImageDraw.Draw(bg)
        for _ in range(3):
            y0, y1 = rng.integers(0, SIZE, size=2)
            bd.line([(0, int(y0)), (SIZE, int(y1))], fill=neon, width=1)
        draw_shape(ld, obj, r, None, outline=neon + (255,), width=3)
        post = "glow"
    elif style == "Pop_Art":
        base = ((250, 230, 40), (250, 90, 170), (40, 210, 240))[int(rng.integers(3))]
        bg = Image.new("RGB", (SIZE, SIZE), base)
        bd = ImageDraw.Draw(bg)
        dot = tuple(max(0, c - 90) for c in base)
        for y in range(2, SIZE, 6):
            for x in range(2 + (y // 6 % 2) * 3, SIZE, 6):
                bd.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=dot)
        fill = ((235, 20, 30), (20, 40, 230))[int(rng.integers(2))]
        draw_shape(ld, obj, r, fill + (255,), outline=(0, 0, 0, 255), width=3)
    elif style == "Watercolor":
        bg = Image.new("RGB", (SIZE, SIZE), (250, 244, 228))
        bd = ImageDraw.Draw(bg)
        for _ in range(4):
            x, y = rng.integers(0, SIZE, size=2)
            rr = int(rng.integers(8, 20))
            bd.ellipse([x - rr, y - rr, x + rr, y + rr], fill=_rgb(rng, 215, 250))
        pastel = _rgb(rng, 70, 190)
        draw_shape(ld, obj, r, pastel + (255,))
        post = "blur"
    elif style == "Mosaic":
        bg = Image.new("RGB", (SIZE, SIZE), _rgb(rng, 60, 200))
        draw_shape(ld, obj, r, _rgb(rng, 0, 255) + (255,))
        post = "mosaic"
    elif style == "Ukiyoe":
        bg = Image.new("RGB", (SIZE, SIZE), (232, 216, 178))
        bd = ImageDraw.Draw(bg)
        ph = float(rng.uniform(0, 2 * math.pi))
        for y0 in range(4, SIZE, 8):
            pts = [(x, y0 + 2.5 * math.sin(x / 4 + ph)) for x in range(0, SIZE + 1, 2)]
            bd.line(pts, fill=(40, 80, 150), width=2)
        draw_shape(ld, obj, r, (38, 48, 110, 255), outline=(180, 30, 30, 255), width=2)
    elif style == "Van_Gogh":
        bg = Image.new("RGB", (SIZE, SIZE), (20, 40, 120))
        bd = ImageDraw.Draw(bg)
        for _ in range(45):
            x, y = (float(v) for v in rng.uniform(0, SIZE, size=2))
            a = math.atan2(y - C, x - C) + math.pi / 2
            col = ((250, 210, 50), (120, 170, 240), (240, 240, 200))[int(rng.integers(3))]
            bd.line([(x, y), (x + 5 * math.cos(a), y + 5 * math.sin(a))], fill=col, width=2)
        draw_shape(ld, obj, r, (245, 160, 30, 255), outline=(250, 230, 90, 255),
                              width=2)
    elif style == "Cubism":
        bg = Image.new("RGB", (SIZE, SIZE), (150, 120, 80))
        bd = ImageDraw.Draw(bg)
        earth = ((160, 110, 60), (110, 90, 70), (190, 160, 100), (90, 100, 100), (60, 50, 40))
        for _ in range(9):
            pts = [tuple(float(v) for v in rng.uniform(-10, SIZE + 10, size=2)) for _ in range(3)]
            bd.polygon(pts, fill=earth[int(rng.integers(len(earth)))])
        draw_shape(ld, obj, r, (200, 170, 110, 255), outline=(30, 25, 20, 255), width=3)
    else:  # pragma: no cover
        raise KeyError(style)
    layer = layer.rotate(angle, resample=Image.BICUBIC, center=(C, C))
    dx, dy = (int(v) for v in rng.integers(-5, 6, size=2))
    out = bg.convert("RGBA")
    shifted = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    shifted.paste(layer, (dx, dy), layer)
    out.alpha_composite(shifted)
    out = out.convert("RGB")
    if post == "blur":
        out = out.filter(ImageFilter.GaussianBlur(1.6))
    elif post == "glow":
        out = Image.blend(out, out.filter(ImageFilter.GaussianBlur(2.0)), 0.35)
    elif post == "mosaic":
        out = out.resize((10, 10), Image.BILINEAR).resize((SIZE, SIZE), Image.NEAREST)
        od = ImageDraw.Draw(out)
        for k in np.linspace(0, SIZE, 11).round().astype(int).tolist():
            od.line([(k, 0), (k, SIZE)], fill=(30, 30, 30))
            od.line([(0, k), (SIZE, k)], fill=(30, 30, 30))
    return _finish(out, rng, noise=6.0)
