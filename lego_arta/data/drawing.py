"""Drawing LEGO-like parts from above with PIL: the colours, shapes and geometry the synthetic scenes use.

A part is seen from above: its top face (studs, holes, or smooth), and a darker front strip whose height tells
bricks from plates. Sizes are in studs; ``unit`` pixels per stud (9 at 112 px). Boxes are pixel boxes with exclusive
ends; ``to_grid`` puts them on the answers' 0-100 grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import ImageDraw

RGB = tuple[int, int, int]
COLORS: dict[str, RGB] = {
    "red": (201, 26, 9),
    "blue": (0, 85, 191),
    "yellow": (245, 205, 47),
    "green": (35, 145, 60),
    "white": (244, 244, 244),
    "black": (33, 33, 33),
    "orange": (254, 138, 24),
    "purple": (129, 0, 123),
}
BACKGROUND: RGB = (214, 224, 236)
PANEL: RGB = (236, 240, 246)
PANEL_LINE: RGB = (120, 130, 145)
BASE: RGB = (222, 198, 156)


@dataclass(frozen=True)
class Shape:
    """How a kind of part is drawn: its sizes (studs) and front-strip depth (in stud units)."""

    sizes: tuple[tuple[int, int], ...]
    depth: float
    studs: bool = True
    holes: bool = False


SHAPES: dict[str, Shape] = {
    "brick": Shape(((1, 1), (1, 2), (1, 4), (2, 2), (2, 4)), depth=0.6),
    "plate": Shape(((1, 2), (1, 4), (2, 2), (2, 4)), depth=0.22),
    "beam": Shape(((1, 2), (1, 3), (1, 5)), depth=0.4, studs=False, holes=True),
    "tile": Shape(((1, 2), (2, 2)), depth=0.22, studs=False),
}


@dataclass(frozen=True)
class Part:
    """A part type: shape, size (w <= l, in studs) and colour; its label is what queries and answers call it."""

    shape: str
    width: int
    length: int
    color: str

    @property
    def label(self) -> str:
        return f"{self.width}x{self.length} {self.color} {self.shape}"

    def grid(self, vertical: bool) -> tuple[int, int]:
        """(columns, rows) of studs the part covers, lying horizontally or vertically."""
        return (self.width, self.length) if vertical else (self.length, self.width)


def unit(image_size: int) -> int:
    """Pixels per stud for an image size (9 at 112 px)."""
    return max(5, image_size // 12)


def part_size(part: Part, vertical: bool, u: int) -> tuple[int, int]:
    """(width, height) in pixels of a part drawn at ``u`` pixels per stud."""
    cols, rows = part.grid(vertical)
    return cols * u, rows * u + _depth(part, u)


def _depth(part: Part, u: int) -> int:
    return max(2, round(SHAPES[part.shape].depth * u))


def _shade(color: RGB, factor: float) -> RGB:
    """A darker shade of ``color`` (lines, front strip, holes); dark colours get lighter shades instead."""
    if sum(color) < 150:
        return (
            int(255 - (255 - color[0]) * factor),
            int(255 - (255 - color[1]) * factor),
            int(255 - (255 - color[2]) * factor),
        )
    return (int(color[0] * factor), int(color[1] * factor), int(color[2] * factor))


def _tint(color: RGB) -> RGB:
    """A lighter tint of ``color`` (the lit rim of a stud)."""
    return (color[0] + (255 - color[0]) // 2, color[1] + (255 - color[1]) // 2, color[2] + (255 - color[2]) // 2)


def draw_part(
    draw: ImageDraw.ImageDraw, part: Part, x: int, y: int, vertical: bool, u: int, color: RGB | None = None
) -> tuple[int, int, int, int]:
    """Draw ``part`` with its top-left corner at (x, y); return its pixel box (x1, y1, x2, y2), x2/y2 exclusive."""
    fill = color or COLORS[part.color]
    shape = SHAPES[part.shape]
    cols, rows = part.grid(vertical)
    tw, th, d = cols * u, rows * u, _depth(part, u)
    line = _shade(fill, 0.55)
    if shape.holes:  # a beam: rounded ends, holes instead of studs
        radius = min(tw, th) // 2
        draw.rounded_rectangle((x, y + d, x + tw - 1, y + th + d - 1), radius, fill=_shade(fill, 0.7), outline=line)
        draw.rounded_rectangle((x, y, x + tw - 1, y + th - 1), radius, fill=fill, outline=line)
    else:
        draw.rectangle((x, y + th, x + tw - 1, y + th + d - 1), fill=_shade(fill, 0.7), outline=line)
        draw.rectangle((x, y, x + tw - 1, y + th - 1), fill=fill, outline=line)
    for i in range(cols):
        for j in range(rows):
            cx, cy = x + (i + 0.5) * u - 0.5, y + (j + 0.5) * u - 0.5
            if shape.studs:  # a lit upper-left rim and a shaded lower-right rim
                r = 0.3 * u
                draw.arc((cx - r, cy - r, cx + r, cy + r), 135, 315, fill=_tint(fill))
                draw.arc((cx - r, cy - r, cx + r, cy + r), 315, 135, fill=line)
            elif shape.holes:
                r = 0.2 * u
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_shade(fill, 0.45))
    return x, y, x + tw, y + th + d


def to_grid(box: tuple[int, int, int, int], size: int) -> tuple[int, int, int, int]:
    """A pixel box (exclusive ends) on the 0-100 grid with integer coordinates that enclose it."""
    x1, y1, x2, y2 = box
    return (
        math.floor(100 * x1 / size),
        math.floor(100 * y1 / size),
        min(100, math.ceil(100 * x2 / size)),
        min(100, math.ceil(100 * y2 / size)),
    )


def apart(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int) -> bool:
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]
