"""Scores of a localisation against known truth (the motion toy world, or any per-frame masks): temporal IoU of
the active frames, spatio-temporal IoU of the masks over the whole clip, and pointing accuracy of each truly active
frame's peak."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from vidseg.config import VidsegConfig
    from vidseg.localize import Localization


def temporal_iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """IoU of two sets of frames, bool ``[N]`` each; 1.0 when both are empty."""
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    union = (predicted | truth).sum()
    return float((predicted & truth).sum() / union) if union else 1.0


def spatiotemporal_iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """IoU of two masks over a whole clip, bool ``[N, H, W]`` each (pixels of all frames pooled); 1.0 when both
    are empty."""
    if predicted.shape != truth.shape:
        raise ValueError(f"masks {predicted.shape} and truth {truth.shape} differ in shape")
    return temporal_iou(predicted.ravel(), truth.ravel())


def peak_hit(probs: np.ndarray, truth: np.ndarray) -> bool:
    """Whether the peak of a map ``[h, w]`` (any size, bilinear to the truth's size) lies inside ``truth``
    ``[H, W]``."""
    height, width = truth.shape
    up = cv2.resize(np.asarray(probs, np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return bool(truth.flat[int(np.argmax(up))])


@dataclass
class ConceptScore:
    """One concept on one clip: ``pointing`` is None when the concept is never truly active."""

    temporal_iou: float
    spatiotemporal_iou: float
    pointing: float | None


class ConceptScorer:
    """Accumulates one concept's scores frame by frame (masks need not be held for the whole clip).

    Args:
        truth: bool ``[N, H, W]``, the concept's true pixels per frame (the toy world's verb or shape masks).
    """

    def __init__(self, truth: np.ndarray):
        self.truth = np.asarray(truth, bool)
        self.inter = self.union = 0
        self.hits: list[bool] = []

    def add(self, frame_idx: int, mask: np.ndarray, probs: np.ndarray) -> None:
        """A frame's predicted mask ``[H, W]`` and the concept's map ``[h, w]``."""
        true = self.truth[frame_idx]
        self.inter += int((mask & true).sum())
        self.union += int((mask | true).sum())
        if true.any():
            self.hits.append(peak_hit(probs, true))

    def score(self, active: np.ndarray) -> ConceptScore:
        """The scores, given the predicted active frames ``[N]``."""
        true_active = self.truth.reshape(len(self.truth), -1).any(axis=1)
        return ConceptScore(temporal_iou(active, true_active),
                            self.inter / self.union if self.union else 1.0,
                            float(np.mean(self.hits)) if self.hits else None)


def score_localization(localization: "Localization", truth: dict[str, np.ndarray], config: "VidsegConfig", *,
                       workers: int | None = None) -> dict[str, ConceptScore]:
    """Each concept of ``localization`` that ``truth`` holds (concept -> bool ``[N, H, W]``), scored through the
    library's masks (``vidseg.localize.iter_concept_frames``), one frame at a time."""
    from vidseg.localize import iter_concept_frames

    concepts = localization.result.classes
    scorers = {i: ConceptScorer(truth[c]) for i, c in enumerate(concepts) if c in truth}
    for out in iter_concept_frames(localization, config, workers=workers):
        for i, scorer in scorers.items():
            scorer.add(out.frame_idx, out.masks[i], out.probs[i])
    return {concepts[i]: scorer.score(localization.tracks[i].active) for i, scorer in scorers.items()}
