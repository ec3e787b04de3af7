"""Draw the small image dataset in data/shapes: grayscale PNGs of circles, squares, triangles and crosses.

Usage: ``python -m scripts.make_shape_images [OUT_DIR]`` (default ``data/shapes``). Every image is drawn from a
random generator seeded by (split, class, index), so running it again gives the same files byte for byte. Each
image is ``SIZE`` x ``SIZE`` pixels: one shape of random size, position, rotation and brightness, filled or
outlined, on a dark background with a little noise. The files are ``OUT_DIR/<split>/<class>/<index>.png``, the
layout ``regimen.data.image_folder.ImageFolder`` reads; an existing ``OUT_DIR/<split>`` is replaced.
"""

from __future__ import annotations

import math
import random
import shutil
import sys
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 16
CLASSES = ("circle", "cross", "square", "triangle")
SPLITS = {"train": 60, "validation": 20, "test": 20}  # images per class
SEED = 2024
SUPERSAMPLE = 4  # shapes are drawn at 4x the size and scaled down, for smooth edges


def draw(shape: str, rng: random.Random) -> Image.Image:
    """One image of ``shape``, with every random choice taken from ``rng``."""
    scale = SIZE * SUPERSAMPLE
    background = rng.randint(0, 50)
    image = Image.new("L", (scale, scale), background)
    canvas = ImageDraw.Draw(image)
    radius = rng.uniform(0.22, 0.38) * scale
    margin = radius + 0.06 * scale
    cx, cy = rng.uniform(margin, scale - margin), rng.uniform(margin, scale - margin)
    angle = rng.uniform(0, 2 * math.pi)
    ink = rng.randint(150, 255)
    filled = rng.random() < 0.5
    width = max(1, round(rng.uniform(0.07, 0.12) * scale))

    def corners(count: int, turn: float = 0.0) -> list[tuple[float, float]]:
        return [
            (cx + radius * math.cos(angle + turn + 2 * math.pi * k / count),
             cy + radius * math.sin(angle + turn + 2 * math.pi * k / count))
            for k in range(count)
        ]  # fmt: skip

    if shape == "circle":
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        canvas.ellipse(box, fill=ink if filled else None, outline=ink, width=width)
    elif shape in ("square", "triangle"):
        points = corners(4 if shape == "square" else 3)
        if filled:
            canvas.polygon(points, fill=ink)
        else:
            canvas.line([*points, points[0]], fill=ink, width=width, joint="curve")
    else:  # a cross: two bars through the centre at right angles
        for k in range(2):
            end = corners(4)[k]
            start = (2 * cx - end[0], 2 * cy - end[1])
            canvas.line([start, end], fill=ink, width=width * 2 if filled else width)
    image = image.resize((SIZE, SIZE), Image.Resampling.LANCZOS)
    pixels = bytes(min(255, max(0, round(value + rng.gauss(0, 12)))) for value in image.tobytes())
    return Image.frombytes("L", (SIZE, SIZE), pixels)


def make(out_dir: Path) -> dict[str, int]:
    """Write every split's images under ``out_dir``; returns the number of images in each split."""
    counts = {}
    for split, per_class in SPLITS.items():
        split_dir = out_dir / split
        if split_dir.exists():
            shutil.rmtree(split_dir)
        for shape in CLASSES:
            (split_dir / shape).mkdir(parents=True)
            for index in range(per_class):
                rng = random.Random(f"{SEED}/{split}/{shape}/{index}")
                draw(shape, rng).save(split_dir / shape / f"{index:03d}.png", optimize=True)
        counts[split] = per_class * len(CLASSES)
    return counts


if __name__ == "__main__":
    if len(sys.argv) > 2:
        sys.exit(__doc__)
    counts = make(Path(sys.argv[1] if len(sys.argv) == 2 else "data/shapes"))
    print(", ".join(f"{split}: {count} images" for split, count in counts.items()))
