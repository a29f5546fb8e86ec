"""Small file helpers shared by the writers, the dataset runner and the evaluator.

Single files are written atomically: to a temporary sibling first, then ``os.replace``d onto the target, so a
reader (or a rerun after a crash) sees either the old file or the complete new one, never a torn write.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vidseg.errors import OutputError


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary sibling and an atomic rename; creates the parent folder."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}; choose a writable output folder") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, doc: Any) -> Path:
    """Write ``doc`` as indented JSON; NaN and infinities become ``null`` (JSON has no NaN)."""
    text = json.dumps(json_safe(doc), indent=2, allow_nan=False)
    return write_bytes_atomic(path, (text + "\n").encode())


def json_safe(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers and NaN / infinities as ``None``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return value


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
