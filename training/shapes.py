"""The procedural "shapes" data set: captioned 64x64 scenes with ground-truth labels.

Owns the palette, the shape renderer and the caption grammar that the bundled model, its
evaluator and its tests share. Pure numpy + Pillow; runs on whatever thread calls it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
# Shapes are drawn at 4x and box-filtered down, which gives clean anti-aliased edges.
SUPERSAMPLE = 4

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "heart", "ring")

# Ten colours spread over hue and lightness so that a small classifier (and a small VAE) can
# tell every pair apart; the same palette serves foreground and background.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 30),
    "orange": (250, 135, 0),
    "yellow": (250, 225, 35),
    "green": (30, 155, 50),
    "cyan": (40, 215, 225),
    "blue": (30, 65, 215),
    "purple": (135, 45, 195),
    "pink": (255, 125, 195),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)

SIZES: tuple[str, ...] = ("small", "medium", "large")
# Half-extent of the shape in pixels at 64x64.
SIZE_RADIUS: dict[str, float] = {"small": 7.0, "medium": 12.0, "large": 17.0}

POSITIONS: tuple[str, ...] = (
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)

# Caption words for each attribute value; the first entry is the canonical one.
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "tiny", "little"),
    "medium": ("medium", "medium sized", "mid sized"),
    "large": ("large", "big", "huge"),
}
POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "top left": ("in the top left", "at the top left", "in the upper left corner", "top left"),
    "top": ("at the top", "in the top center", "at the top middle", "top"),
    "top right": ("in the top right", "at the top right", "in the upper right corner", "top right"),
    "left": ("on the left", "at the left", "in the middle left", "left"),
    "center": ("in the center", "in the middle", "at the center", "center"),
    "right": ("on the right", "at the right", "in the middle right", "right"),
    "bottom left": (
        "in the bottom left",
        "at the bottom left",
        "in the lower left corner",
        "bottom left",
    ),
    "bottom": ("at the bottom", "in the bottom center", "at the bottom middle", "bottom"),
    "bottom right": (
        "in the bottom right",
        "at the bottom right",
        "in the lower right corner",
        "bottom right",
    ),
}
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "star": ("star",),
    "heart": ("heart",),
    "ring": ("ring", "donut"),
}
ATTRIBUTES: tuple[str, ...] = ("shape", "color", "background", "size", "position")
NUM_CLASSES: dict[str, int] = {
    "shape": len(SHAPES),
    "color": len(COLOR_NAMES),
    "background": len(COLOR_NAMES),
    "size": len(SIZES),
    "position": len(POSITIONS),
}

# Scene templates; {obj} is "[a] [size] [color] shape", {pos} a position phrase, {bg} the
# background colour. Clauses whose attribute is omitted are dropped.
TEMPLATES: tuple[str, ...] = (
    "{obj} {pos} on a {bg} background",
    "{bg} background, {obj} {pos}",
    "{obj} {pos}, {bg} background",
    "a picture of {obj} {pos} on {bg}",
    "{obj} on a {bg} background {pos}",
    "{bg} background with {obj} {pos}",
    "an image of {obj} {pos}, {bg} background",
)


@dataclass(frozen=True)
class Scene:
    """Ground truth of one image: an index into each attribute's class list."""

    shape: int
    color: int
    background: int
    size: int
    position: int

    def labels(self) -> dict[str, int]:
        return {a: getattr(self, a) for a in ATTRIBUTES}


def random_scene(rng: np.random.Generator) -> Scene:
    color = int(rng.integers(len(COLOR_NAMES)))
    # The background is drawn from the other nine colours so it never equals the foreground.
    background = int(rng.integers(len(COLOR_NAMES) - 1))
    background += background >= color
    return Scene(
        shape=int(rng.integers(len(SHAPES))),
        color=color,
        background=background,
        size=int(rng.integers(len(SIZES))),
        position=int(rng.integers(len(POSITIONS))),
    )


def _shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        s = r * 0.88  # a square of half-extent r looks bigger than the circle of radius r
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":
        # Upward triangle whose bounding box is centred on (cx, cy).
        return [(cx, cy - r), (cx + r, cy + r * 0.85), (cx - r, cy + r * 0.85)]
    if shape == "star":
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.45
            ang = -math.pi / 2 + k * math.pi / 5
            pts.append((cx + rad * math.cos(ang), cy + 0.08 * r + rad * math.sin(ang)))
        return pts
    if shape == "heart":
        pts = []
        for k in range(64):
            t = 2 * math.pi * k / 64
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            # The curve spans x in [-16, 16], y in [-17, 12]; centre it and scale to r.
            pts.append((cx + x * r / 16.5, cy - (y + 2.5) * r / 15.0))
        return pts
    raise ValueError(f"no polygon for shape {shape!r}")


def render(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Draw a scene as an (64, 64, 3) uint8 array; rng adds a little size/position jitter."""
    size, ss = IMAGE_SIZE, SUPERSAMPLE
    fg = COLORS[COLOR_NAMES[scene.color]]
    bg = COLORS[COLOR_NAMES[scene.background]]
    r = SIZE_RADIUS[SIZES[scene.size]] + float(rng.uniform(-0.75, 0.75))
    row, col = divmod(scene.position, 3)
    margin = r + 2.0
    centres = (margin, size / 2, size - margin)
    cx = centres[col] + float(rng.uniform(-1.5, 1.5))
    cy = centres[row] + float(rng.uniform(-1.5, 1.5))

    img = Image.new("RGB", (size * ss, size * ss), bg)
    draw = ImageDraw.Draw(img)
    shape = SHAPES[scene.shape]
    X, Y, R = cx * ss, cy * ss, r * ss
    if shape == "circle":
        draw.ellipse((X - R, Y - R, X + R, Y + R), fill=fg)
    elif shape == "ring":
        draw.ellipse((X - R, Y - R, X + R, Y + R), fill=fg)
        ri = R * 0.55
        draw.ellipse((X - ri, Y - ri, X + ri, Y + ri), fill=bg)
    else:
        draw.polygon(_shape_polygon(shape, X, Y, R), fill=fg)
    img = img.resize((size, size), Image.Resampling.BOX)
    return np.asarray(img, dtype=np.uint8)


def caption(
    scene: Scene, rng: np.random.Generator, omit_p: float = 0.15
) -> tuple[str, dict[str, bool]]:
    """One random wording of a scene, and which attributes the wording specifies.

    Each of size, colour, position and background is left out with probability omit_p (the
    model then draws it at random); the shape is left out half as often ("a red shape").
    """
    keep = {
        "size": rng.random() >= omit_p,
        "color": rng.random() >= omit_p,
        "position": rng.random() >= omit_p,
        "background": rng.random() >= omit_p,
        "shape": rng.random() >= omit_p / 2,
    }
    words: list[str] = []
    if keep["size"]:
        words.append(str(rng.choice(SIZE_WORDS[SIZES[scene.size]])))
    if keep["color"]:
        words.append(COLOR_NAMES[scene.color])
    shape_words = SHAPE_WORDS[SHAPES[scene.shape]]
    words.append(str(rng.choice(shape_words)) if keep["shape"] else "shape")
    article = "an" if words[0][0] in "aeiou" else "a"
    obj = " ".join(words) if rng.random() < 0.2 else f"{article} {' '.join(words)}"
    pos = str(rng.choice(POSITION_PHRASES[POSITIONS[scene.position]]))
    bg = COLOR_NAMES[scene.background]

    template = str(rng.choice(TEMPLATES))
    if not keep["background"]:
        # Drop the clause that carries {bg} along with its glue words.
        for clause in (
            " on a {bg} background",
            "{bg} background, ",
            ", {bg} background",
            " on {bg}",
            "{bg} background with ",
        ):
            template = template.replace(clause, "")
    if not keep["position"]:
        template = template.replace(" {pos}", "").replace("{pos}, ", "")
    text = template.format(obj=obj, pos=pos, bg=bg)
    return " ".join(text.split()), keep


def vocabulary() -> list[str]:
    """Every word the caption grammar can produce (the tokenizer keeps each as one token)."""
    words: set[str] = set()
    for phrases in (*SIZE_WORDS.values(), *POSITION_PHRASES.values(), *SHAPE_WORDS.values()):
        for phrase in phrases:
            words.update(phrase.split())
    words.update(COLOR_NAMES)
    for template in TEMPLATES:
        for part in template.replace(",", " ").split():
            if not part.startswith("{"):
                words.add(part)
    words.update({"a", "an", "shape", ","})
    return sorted(words)


def make_dataset(n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """n rendered scenes, (n, 64, 64, 3) uint8, and their labels as int64 arrays."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    labels = {a: np.empty(n, dtype=np.int64) for a in ATTRIBUTES}
    for i in range(n):
        scene = random_scene(rng)
        images[i] = render(scene, rng)
        for a, v in scene.labels().items():
            labels[a][i] = v
    return images, labels


def scene_from_labels(labels: dict[str, np.ndarray], i: int) -> Scene:
    return Scene(**{a: int(labels[a][i]) for a in ATTRIBUTES})
