"""Label-map helpers shared by the mask writers: checking and resizing ``[H, W]`` label maps."""

from __future__ import annotations

import cv2
import numpy as np


def resize_labels(labels: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Nearest-neighbour resize of a label map ``[H, W]`` uint8 to ``size`` = (height, width); ``None`` keeps it."""
    if size is None or labels.shape == tuple(size):
        return labels
    height, width = size
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)


def check_labels(labels: np.ndarray) -> np.ndarray:
    """Accept a label map ``[H, W]`` of non-negative integers below 256 and return it as contiguous uint8."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a [H, W] map, got shape {tuple(labels.shape)}")
    if labels.dtype != np.uint8:
        if labels.size and (labels.min() < 0 or labels.max() > 255):
            raise ValueError(f"labels must lie in 0..255, got {labels.min()}..{labels.max()}")
        labels = labels.astype(np.uint8)
    return np.ascontiguousarray(labels)
