"""What to look at: ``saliency.mp4`` (each class's probability map over the frames, a panel per class with its name
and a colour bar) and ``preview.png`` (a contact sheet: a few frames x the masks and each class's heatmap)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from vidseg.export.overlay import Mp4Encoder, draw_legend, legend_box, overlay_image
from vidseg.export.writer import ExportLayout, Writer

HEATMAP_FILE = "saliency.mp4"
PREVIEW_FILE = "preview.png"
COLORMAP = cv2.COLORMAP_INFERNO
PREVIEW_FRAMES = 4


def colour_bar(height: int, width: int = 14) -> np.ndarray:
    """``[height, width + labels, 3]`` uint8: the colour map from 1 (top) to 0 (bottom), with its ends labelled."""
    ramp = np.linspace(255, 0, height, dtype=np.float32).round().astype(np.uint8)[:, None].repeat(width, axis=1)
    bar = cv2.cvtColor(cv2.applyColorMap(ramp, COLORMAP), cv2.COLOR_BGR2RGB)
    scale = float(np.clip(height / 600, 0.3, 0.6))
    label_w = cv2.getTextSize("1.0", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] + 6
    panel = np.zeros((height, width + label_w, 3), dtype=np.uint8)
    panel[:, :width] = bar
    text_h = cv2.getTextSize("0", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][1]
    for text, y in (("1.0", text_h + 2), ("0.5", height // 2 + text_h // 2), ("0.0", height - 3)):
        cv2.putText(panel, text, (width + 3, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return panel


def heatmap_panel(frame: np.ndarray, prob: np.ndarray, name: str, bar: np.ndarray | None = None,
                  alpha: float = 0.55) -> np.ndarray:
    """``frame`` ``[H, W, 3]`` uint8 with ``prob`` ``[h, w]`` in [0, 1] (any size: bilinear to the frame) colour-mapped
    over it, the class name in the corner and ``bar`` (``colour_bar``) on the right."""
    height, width = frame.shape[:2]
    prob = cv2.resize(np.clip(prob, 0, 1).astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    heat = cv2.cvtColor(cv2.applyColorMap((prob * 255).round().astype(np.uint8), COLORMAP), cv2.COLOR_BGR2RGB)
    image = cv2.addWeighted(frame, 1 - alpha, heat, alpha, 0.0)
    scale = float(np.clip(height / 600, 0.35, 0.9))
    (text_w, text_h), baseline = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(image, (0, 0), (text_w + 10, text_h + baseline + 8), (0, 0, 0), thickness=-1)
    cv2.putText(image, name, (5, text_h + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    if bar is not None:
        image = np.concatenate([image, bar], axis=1)
    return image


def grid(panels: Sequence[np.ndarray], columns: int) -> np.ndarray:
    """Panels of one size tiled row by row (the last row padded with black)."""
    rows = math.ceil(len(panels) / columns)
    blank = np.zeros_like(panels[0])
    cells = list(panels) + [blank] * (rows * columns - len(panels))
    return np.concatenate([np.concatenate(cells[r * columns:(r + 1) * columns], axis=1) for r in range(rows)])


class HeatmapVideoWriter(Writer):
    """``saliency.mp4``: a panel per class (frame + its probability map + name + colour bar), tiled in a grid whose
    width is about the frame's, frame by frame.

    ``add(frame_idx, name, frame=, probs=)`` takes ``probs`` ``[C + 1, h, w]`` (index 0 background, as
    ``saliency_to_probs`` returns; with no background row, ``[C, h, w]``) at the token grid or any size.
    """

    consumes = frozenset({"frame", "probs"})

    def __init__(self, path: str | Path, class_names: Sequence[str], fps: float):
        self._encoder = Mp4Encoder(path, fps)
        self.path = self._encoder.path
        self.class_names = list(class_names)
        self.columns = math.ceil(math.sqrt(len(self.class_names)))
        self._bar: np.ndarray | None = None

    def panels(self, frame: np.ndarray, probs: np.ndarray) -> list[np.ndarray]:
        """One panel per class at ``1 / columns`` of the frame's size."""
        class_probs = probs[-len(self.class_names):]
        height, width = frame.shape[:2]
        size = (max(16, width // self.columns), max(16, height // self.columns))
        small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        if self._bar is None:
            self._bar = colour_bar(size[1])
        return [heatmap_panel(small, p, n, self._bar) for p, n in zip(class_probs, self.class_names)]

    def add(self, frame_idx: int, name: str, *, frame: np.ndarray, probs: np.ndarray) -> None:
        self._encoder.write(grid(self.panels(frame, probs), self.columns), name)

    def close(self) -> None:
        self._encoder.close()


class PreviewSheet(Writer):
    """``preview.png``: for ``PREVIEW_FRAMES`` frames spread over the video, a row of the frame, its masks over it
    and each class's heatmap, so one image shows what the run found."""

    consumes = frozenset({"frame", "probs", "labels"})

    def __init__(self, path: str | Path, class_names: Sequence[str], frame_indices: Sequence[int],
                 max_width: int = 1600):
        self.path = Path(path)
        self.class_names = list(class_names)
        picks = np.linspace(0, len(frame_indices) - 1, min(PREVIEW_FRAMES, len(frame_indices))).round()
        self.wanted = {int(frame_indices[int(i)]) for i in picks}
        self.max_width = max_width
        self.rows: dict[int, np.ndarray] = {}
        self._legend = None
        self._bar: np.ndarray | None = None

    def add(self, frame_idx: int, name: str, *, frame: np.ndarray, probs: np.ndarray, labels: np.ndarray) -> None:
        if frame_idx not in self.wanted:
            return
        panels = 2 + len(self.class_names)
        height, width = frame.shape[:2]
        scale = min(1.0, self.max_width / (panels * width))
        size = (max(16, round(width * scale)), max(16, round(height * scale)))
        small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        small_labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
        if self._legend is None:
            self._legend = legend_box(draw_legend(size[1], size[0], self.class_names))
            self._bar = colour_bar(size[1], width=8)
        class_probs = probs[-len(self.class_names):]
        heat = [heatmap_panel(small, p, n) for p, n in zip(class_probs, self.class_names)]
        self.rows[frame_idx] = np.concatenate([small, overlay_image(small, small_labels, self._legend), *heat,
                                               self._bar], axis=1)

    def close(self) -> None:
        from PIL import Image

        if self.rows:
            sheet = np.concatenate([self.rows[i] for i in sorted(self.rows)], axis=0)
            Image.fromarray(sheet).save(self.path)


def heatmap_writers(layout: ExportLayout) -> list[Writer]:
    """The heatmaps view: ``saliency.mp4`` and ``preview.png`` (which needs ``layout.frame_indices``)."""
    if layout.frame_indices is None:
        raise ValueError("the heatmaps view needs the frame indices to be fed (preview.png picks its rows among them)")
    return [HeatmapVideoWriter(layout.out_dir / HEATMAP_FILE, layout.class_names, layout.fps),
            PreviewSheet(layout.out_dir / PREVIEW_FILE, layout.class_names, layout.frame_indices)]
