"""The per-class summary of a video that ``labels.json`` holds (and ``vidseg predict`` prints)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np


class ClassSummary:
    """Per class of a video: the frames where it is present, its mean area there (% of the frame) and its peak
    saliency (the largest value of its raw map, in the map's own z-score units)."""

    def __init__(self, class_names: Sequence[str], sampled_maps: np.ndarray):
        self.class_names = list(class_names)
        self.frames = np.zeros(len(self.class_names), dtype=np.int64)
        self.area = np.zeros(len(self.class_names), dtype=np.float64)
        self.num_frames = 0
        # sampled_maps [C, S, h, w]: the blended maps at the sampled frames (SaliencyResult.sampled)
        self.peak = sampled_maps.reshape(len(self.class_names), -1).max(axis=1)

    def add(self, labels: np.ndarray) -> None:
        counts = np.bincount(labels.ravel(), minlength=len(self.class_names) + 1)[1:len(self.class_names) + 1]
        present = counts > 0
        self.frames += present
        self.area += np.where(present, counts / labels.size * 100.0, 0.0)
        self.num_frames += 1

    @staticmethod
    def rows(labels_json: str | Path) -> list[tuple[str, int, float, float]]:
        """``(class, frames present, mean area %, peak saliency)`` per class, from a written ``labels.json``."""
        classes = json.loads(Path(labels_json).read_text())["classes"]
        return [(name, s["frames_present"], s["mean_area_percent"], s["peak_saliency"]) for name, s in classes.items()]

    def as_dict(self) -> dict[str, dict[str, float | int]]:
        """``{class: {"frames_present", "mean_area_percent" (over those frames), "peak_saliency"}}``."""
        return {name: {"frames_present": int(self.frames[c]),
                       "mean_area_percent": round(float(self.area[c] / self.frames[c]), 3) if self.frames[c] else 0.0,
                       "peak_saliency": round(float(self.peak[c]), 4)}
                for c, name in enumerate(self.class_names)}
