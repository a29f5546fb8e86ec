"""``overlay.mp4``: the frames with each class's mask tinted in its palette colour and a legend of class names.

Encoded with PyAV: H.264 (libx264) when the bundled FFmpeg has it, MPEG-4 Part 2 otherwise; odd frame sizes are
padded by one replicated row / column because 4:2:0 chroma needs even dimensions.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from vidseg.errors import MissingDependencyError, OutputError
from vidseg.export._labels import check_labels, resize_labels
from vidseg.export.palette import voc_palette
from vidseg.export.writer import ExportLayout, Writer

OVERLAY_FILE = "overlay.mp4"


def draw_legend(height: int, width: int, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """A legend panel in the top-left corner: ``(rgb [H, W, 3] uint8, opacity [H, W] float32 in [0, 1])``.

    Class k (label k) gets a swatch in palette colour k; rows that do not fit the height wrap into columns.
    """
    colors = voc_palette()
    scale = float(np.clip(height / 900, 0.35, 1.0))
    (_, text_h), baseline = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    row_h = text_h + baseline + 6
    swatch = text_h + baseline
    rows_per_col = max(1, (height - 8) // row_h)
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    opacity = np.zeros((height, width), dtype=np.float32)
    x0 = 4
    for start in range(0, len(class_names), rows_per_col):
        names = class_names[start:start + rows_per_col]
        col_w = max(cv2.getTextSize(n, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] for n in names) + swatch + 14
        panel_h = len(names) * row_h + 6
        opacity[4:4 + panel_h, x0:x0 + col_w] = 0.6  # dark panel behind the text
        for i, name in enumerate(names):
            y = 7 + i * row_h
            color = tuple(int(c) for c in colors[start + i + 1])
            cv2.rectangle(rgb, (x0 + 4, y), (x0 + 4 + swatch, y + swatch), color, thickness=-1)
            cv2.putText(rgb, name, (x0 + swatch + 10, y + text_h), cv2.FONT_HERSHEY_SIMPLEX, scale,
                        (255, 255, 255), 1, cv2.LINE_AA)
            opacity[y:y + swatch + 1, x0 + 4:x0 + 5 + swatch] = 1.0
        text_area = rgb[4:4 + panel_h, x0:x0 + col_w].any(axis=2)
        opacity[4:4 + panel_h, x0:x0 + col_w][text_area] = 1.0
        x0 += col_w + 4
        if x0 >= width // 2:  # keep most of the frame visible; further names are left out
            break
    return rgb, opacity


def overlay_frame(frame: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Tint ``frame`` ``[H, W, 3]`` uint8 with palette colour k where ``labels`` ``[H, W]`` is k > 0."""
    blended = cv2.addWeighted(frame, 1 - alpha, voc_palette()[labels], alpha, 0.0)
    return np.where((labels > 0)[..., None], blended, frame)


def _paste_legend(image: np.ndarray, legend: tuple[np.ndarray, np.ndarray, tuple[slice, slice]]) -> None:
    """Blend the legend into ``image`` in place, within its bounding box only."""
    rgb, opacity, box = legend
    region = image[box].astype(np.float32)
    weight = opacity[box][..., None]
    image[box] = (region * (1 - weight) + rgb[box] * weight).round().astype(np.uint8)


class Mp4Encoder:
    """Streams RGB frames into an mp4 at ``fps``; the encoder opens on the first frame, whose size fixes the video's
    (odd sizes padded by one replicated row / column)."""

    def __init__(self, path: str | Path, fps: float):
        try:
            import av
        except ImportError:
            raise MissingDependencyError(f"{Path(path).name} needs PyAV; pip install av, or turn that output "
                                         f"off") from None
        self._av = av
        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(8)
        self._container: Any = None
        self._stream: Any = None
        self.size: tuple[int, int] | None = None  # (height, width) of the first frame
        self._num_frames = 0

    def _open(self, height: int, width: int) -> None:
        av = self._av
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(self.path), mode="w")
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc}") from None
        options = {"crf": "20", "preset": "veryfast"} if codec == "libx264" else {}
        self._stream = self._container.add_stream(codec, rate=self.fps, options=options)
        self._stream.width, self._stream.height = width + width % 2, height + height % 2
        self._stream.pix_fmt = "yuv420p"
        if codec == "mpeg4":
            self._stream.bit_rate = 4_000_000
        self.size = (height, width)

    def write(self, image: np.ndarray, name: str = "") -> None:
        """Append ``image`` ``[H, W, 3]`` uint8 RGB; every frame must have the first one's size."""
        height, width = image.shape[:2]
        if self._container is None:
            self._open(height, width)
        elif (height, width) != self.size:
            raise ValueError(f"frame {name} is {width}x{height}; {self.path.name} was started at "
                             f"{self.size[1]}x{self.size[0]}")
        image = np.pad(image, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        video_frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        video_frame.pts = self._num_frames
        video_frame.time_base = 1 / self.fps
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self._num_frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None


def legend_box(legend: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]]:
    """``draw_legend``'s output with the bounding box of its visible part, for ``_paste_legend``."""
    rgb, opacity = legend
    rows, cols = np.nonzero(opacity)
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)) if rows.size else (
        slice(0, 0), slice(0, 0))
    return rgb, opacity, box


def overlay_image(frame: np.ndarray, labels: np.ndarray, legend: tuple[np.ndarray, np.ndarray, tuple[slice, slice]],
                  alpha: float = 0.5) -> np.ndarray:
    """One overlay frame: the masks tinted over ``frame`` and the legend pasted in (``overlay.mp4``, previews)."""
    image = overlay_frame(frame, resize_labels(labels, frame.shape[:2]), alpha)
    _paste_legend(image, legend)
    return image


class OverlayVideoWriter(Writer):
    """``overlay.mp4``: each frame with its masks tinted and the class legend. A ``frame`` of ``None`` draws the
    masks on black."""

    consumes = frozenset({"labels", "frame"})

    def __init__(self, path: str | Path, class_names: Sequence[str], fps: float, *, alpha: float = 0.5):
        self._encoder = Mp4Encoder(path, fps)
        self.path = self._encoder.path
        self.class_names = list(class_names)
        self.alpha = alpha
        self._legend: tuple[np.ndarray, np.ndarray, tuple[slice, slice]] | None = None

    def add(self, frame_idx: int, name: str, labels: np.ndarray, frame: np.ndarray | None = None) -> None:
        labels = check_labels(labels)
        if frame is None:
            frame = np.zeros((*labels.shape, 3), dtype=np.uint8)
        if self._legend is None:
            self._legend = legend_box(draw_legend(*frame.shape[:2], self.class_names))
        self._encoder.write(overlay_image(frame, labels, self._legend, self.alpha), name)

    def close(self) -> None:
        self._encoder.close()


def overlay_writers(layout: ExportLayout) -> list[Writer]:
    """The overlay view: ``overlay.mp4``."""
    return [OverlayVideoWriter(layout.out_dir / OVERLAY_FILE, layout.class_names, layout.fps)]
