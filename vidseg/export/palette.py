"""Palette PNG masks (DAVIS / PASCAL VOC style): 8-bit mode 'P', pixel value = label, colours for display."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from vidseg.export._labels import check_labels, resize_labels
from vidseg.export.writer import ExportLayout, Writer


@lru_cache(maxsize=1)
def voc_palette() -> np.ndarray:
    """The PASCAL VOC / DAVIS colour map ``[256, 3]`` uint8: index 0 black, 1 (128, 0, 0), 2 (0, 128, 0), ...

    Each index's bits are dealt out round-robin to R, G, B from the most significant bit down.
    """
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        value, r, g, b = index, 0, 0, 0
        for bit in range(7, -1, -1):
            r |= (value & 1) << bit
            g |= ((value >> 1) & 1) << bit
            b |= ((value >> 2) & 1) << bit
            value >>= 3
        palette[index] = (r, g, b)
    return palette


def save_palette_png(path: str | Path, labels: np.ndarray) -> None:
    """Write label map ``[H, W]`` uint8 as a mode-'P' PNG with the VOC palette (reads back as the same indices)."""
    image = Image.fromarray(check_labels(labels))
    image.putpalette(voc_palette().tobytes())
    image.save(path, optimize=False)


class PaletteMaskWriter(Writer):
    """Streams ``dir/<name>.png`` palette masks: 0 = background, i = the i-th class.

    ``size`` = (height, width) resizes every map with nearest neighbour before saving (``None`` keeps its size).
    """

    consumes = frozenset({"labels"})

    def __init__(self, out_dir: str | Path, *, size: tuple[int, int] | None = None):
        self.out_dir = Path(out_dir)
        self.size = size
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def add(self, frame_idx: int, name: str, labels: np.ndarray, frame: np.ndarray | None = None) -> None:
        save_palette_png(self.out_dir / f"{name}.png", resize_labels(check_labels(labels), self.size))


def palette_writers(layout: ExportLayout) -> list[Writer]:
    """The ``palette`` format: ``masks/<frame>.png``."""
    return [PaletteMaskWriter(layout.masks_dir, size=layout.size)]
