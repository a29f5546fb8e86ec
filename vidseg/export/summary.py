"""The per-class summary of a video that ``labels.json`` holds (and ``vidseg predict`` prints)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from vidseg.presence import Presence


class ClassRow(NamedTuple):
    """One class's line of the summary table, from ``labels.json``."""

    name: str
    frames: int | None  # frames with labels of the class; None where no labels were made
    area: float | None  # its mean area there, % of the frame
    peak: float  # peak saliency
    presence_score: float | None  # None: no presence decision was possible (an older saliency.npz)
    present: bool


class ClassSummary:
    """Per class of a video: its presence score and decision (``vidseg.presence``), its peak saliency (the largest
    value of its raw map, in the map's own z-score units) and, when labels are made, the frames where it has pixels
    and its mean area there (% of the frame).

    ``with_labels=False`` is a maps-only export's summary: no labels exist, so it holds no ``frames_present`` or
    ``mean_area_percent`` (never a made-up 0).
    """

    def __init__(self, class_names: Sequence[str], sampled_maps: np.ndarray, presence: Presence, *,
                 with_labels: bool = True):
        self.class_names = list(class_names)
        self.presence = presence.as_dict()
        self.with_labels = with_labels
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
    def rows(labels_json: str | Path) -> list[ClassRow]:
        """Each class's ``ClassRow`` from a written ``labels.json``."""
        classes = json.loads(Path(labels_json).read_text())["classes"]
        return [ClassRow(name, s.get("frames_present"), s.get("mean_area_percent"), s["peak_saliency"],
                         s.get("presence_score"), s.get("present", True)) for name, s in classes.items()]

    def as_dict(self) -> dict[str, dict[str, float | int | bool | None]]:
        """``{class: {"present", "presence_score", "frames_present", "mean_area_percent" (over those frames),
        "peak_saliency"}}``, the frames and area only ``with_labels``."""
        summary: dict[str, dict[str, float | int | bool | None]] = {}
        for c, name in enumerate(self.class_names):
            stats: dict[str, float | int | bool | None] = dict(self.presence[name])
            if self.with_labels:
                stats["frames_present"] = int(self.frames[c])
                stats["mean_area_percent"] = round(float(self.area[c] / self.frames[c]), 3) if self.frames[c] else 0.0
            stats["peak_saliency"] = round(float(self.peak[c]), 4)
            summary[name] = stats
        return summary
