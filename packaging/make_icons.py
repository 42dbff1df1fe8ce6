"""Draws ldstudio's app icon: resources/icons/ldstudio.svg and PNGs at every size the bundle needs.

The picture is the app in one glance: a soft sun forming out of noise on a dusk gradient —
the left of the disc is still grains, the right is already clean. Run from the repository root:

    python packaging/make_icons.py

PNG rendering uses Pillow at 4× and downsamples, so no SVG renderer is needed.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

SIZES = (16, 32, 48, 64, 128, 256, 512)
ICON_DIR = Path(__file__).resolve().parent.parent / "resources" / "icons"
TOP, BOTTOM = (46, 27, 92), (16, 110, 140)  # dusk purple → teal
SUN = (255, 196, 84)
RADIUS = 0.22  # corner radius, fraction of the side
SEED = 7


def _grains(count: int) -> list[tuple[float, float, float]]:
    """Noise grains (x, y, radius) in unit coordinates, on the left part of the disc."""
    rng = random.Random(SEED)
    grains = []
    while len(grains) < count:
        x, y = rng.uniform(0.2, 0.52), rng.uniform(0.2, 0.8)
        if (x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.3**2:
            grains.append((x, y, rng.uniform(0.012, 0.03)))
    return grains


def render(size: int) -> Image.Image:
    big = size * 4
    gradient = Image.new("RGB", (1, big))
    for y in range(big):
        t = y / (big - 1)
        gradient.putpixel(
            (0, y), tuple(round(a + (b - a) * t) for a, b in zip(TOP, BOTTOM, strict=True))
        )
    image = gradient.resize((big, big)).convert("RGBA")
    mask = Image.new("L", (big, big), 0)
    ImageDraw.Draw(mask).rounded_rectangle(
        (0, 0, big - 1, big - 1), radius=int(big * RADIUS), fill=255
    )
    image.putalpha(mask)

    glow = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    ImageDraw.Draw(glow).ellipse((big * 0.16, big * 0.16, big * 0.84, big * 0.84), fill=(*SUN, 110))
    glow = glow.filter(ImageFilter.GaussianBlur(big * 0.06))
    image = Image.alpha_composite(image, glow)
    draw = ImageDraw.Draw(image)
    # The clean half of the sun: a disc clipped to the right of x = 0.5.
    disc = Image.new("L", (big, big), 0)
    ImageDraw.Draw(disc).ellipse((big * 0.2, big * 0.2, big * 0.8, big * 0.8), fill=255)
    ImageDraw.Draw(disc).rectangle((0, 0, big * 0.5, big), fill=0)
    image.paste(Image.new("RGBA", (big, big), (*SUN, 255)), (0, 0), disc)
    if size >= 32:  # grains vanish into mush at 16 px; a half disc reads better there
        for x, y, r in _grains(34 if size >= 64 else 14):
            draw.ellipse(((x - r) * big, (y - r) * big, (x + r) * big, (y + r) * big), fill=SUN)
    else:
        draw.ellipse((big * 0.2, big * 0.2, big * 0.8, big * 0.8), outline=SUN, width=big // 14)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def _hex(colour: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{c:02x}" for c in colour)


def svg() -> str:
    grains = "\n".join(
        f'    <circle cx="{x * 512:.1f}" cy="{y * 512:.1f}" r="{r * 512:.1f}"/>'
        for x, y, r in _grains(34)
    )
    top, bottom, sun = (_hex(colour) for colour in (TOP, BOTTOM, SUN))
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="512" height="512"
     viewBox="0 0 512 512">
  <title>ldstudio</title>
  <defs>
    <linearGradient id="dusk" x1="0" y1="0" x2="0" y2="1">
      <stop offset="0" stop-color="{top}"/>
      <stop offset="1" stop-color="{bottom}"/>
    </linearGradient>
    <radialGradient id="glow">
      <stop offset="0.6" stop-color="{sun}" stop-opacity="0.45"/>
      <stop offset="1" stop-color="{sun}" stop-opacity="0"/>
    </radialGradient>
    <clipPath id="right"><rect x="256" y="0" width="256" height="512"/></clipPath>
  </defs>
  <rect width="512" height="512" rx="{512 * RADIUS:.0f}" fill="url(#dusk)"/>
  <circle cx="256" cy="256" r="200" fill="url(#glow)"/>
  <circle cx="256" cy="256" r="153.6" fill="{sun}" clip-path="url(#right)"/>
  <g fill="{sun}">
{grains}
  </g>
</svg>
"""


def main() -> None:
    ICON_DIR.mkdir(parents=True, exist_ok=True)
    (ICON_DIR / "ldstudio.svg").write_text(svg(), encoding="utf-8")
    images = {size: render(size) for size in SIZES}
    for size, image in images.items():
        image.save(ICON_DIR / f"ldstudio-{size}.png")
    # Windows wants .ico; PyInstaller turns the 512 px PNG into .icns on macOS itself.
    images[256].save(ICON_DIR / "ldstudio.ico", sizes=[(s, s) for s in SIZES if s <= 256])
    print(f"wrote {len(SIZES)} PNGs, ldstudio.svg and ldstudio.ico to {ICON_DIR}")


if __name__ == "__main__":
    main()
