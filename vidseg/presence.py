"""Which of the asked-for classes are in the video, per window and per video, from the maps themselves.

Every text slot of the read-out that holds no word reads the same *null concept* (method.md section 7.2), and its
map comes out of the model pass beside the classes' (``SaliencyResult.window_null_maps``). A class the video holds
beats the null concept clearly somewhere; a class it does not hold reads about what the null concept reads, or less.
So a class's presence score in a window is

    mean over the window's top ``peak_share`` of tokens of  (z_class - z_null) / rms(z of every class)

(the RMS over the window's class maps puts windows, videos and class counts on one scale: the z-scores shrink
roughly as 1 / sqrt(C) with C classes). The class is present in the window when its score exceeds
``presence.threshold``, and in the video when it is present in some window; its video score is the largest of its
window scores. An absent class gets no pixel: post-processing gives it no probability in the frames where it is
absent (``frame_allowed``).

The threshold depends on the model: the library default 0 means "its strongest tokens beat the null concept";
``vidseg calibrate`` fits one from a few labeled videos (the toy model's preset holds the value it fitted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from vidseg.video.sample import SamplingPlan

_EPS = 1e-6


@dataclass(frozen=True)
class Presence:
    """The presence decision of each class of one video.

    Attributes:
        classes: the class names, in label order.
        window_scores: ``[W, C]`` each class's presence score in each model window (None: the result has no null
            concept map, and every class is taken as present).
        threshold: the score a class must exceed (None: no decision, every class present).
    """

    classes: list[str]
    window_scores: np.ndarray | None
    threshold: float | None

    @property
    def scores(self) -> np.ndarray | None:
        """``[C]`` each class's video score: its largest window score."""
        return None if self.window_scores is None else self.window_scores.max(axis=0)

    @property
    def window_present(self) -> np.ndarray:
        """``[W, C]`` bool: the class is present in the window."""
        if self.window_scores is None or self.threshold is None:
            shape = (1, len(self.classes)) if self.window_scores is None else self.window_scores.shape
            return np.ones(shape, dtype=bool)
        return self.window_scores > self.threshold

    @property
    def present(self) -> np.ndarray:
        """``[C]`` bool: the class is present in some window."""
        return self.window_present.any(axis=0)

    def frame_allowed(self, plan: SamplingPlan, frame_indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """``[T, C]`` bool for video frames ``frame_indices``: whether the class may have pixels there, i.e. whether
        a window covering the frame (or, between sampled frames, one covering a neighbour) holds it."""
        frame_indices = np.asarray(frame_indices, dtype=np.int64)
        present = self.window_present
        if present.shape[0] == 1:
            return np.repeat(present, len(frame_indices), axis=0)
        sampled = plan.sampled_frames
        allowed_at_sampled = np.zeros((len(sampled), len(self.classes)), dtype=bool)
        for w, window in enumerate(plan.windows):
            allowed_at_sampled[window] |= present[w]
        # A frame between two sampled frames takes both neighbours' classes (its maps interpolate between them).
        right = np.clip(np.searchsorted(sampled, frame_indices, side="left"), 0, len(sampled) - 1)
        left = np.clip(np.searchsorted(sampled, frame_indices, side="right") - 1, 0, len(sampled) - 1)
        return allowed_at_sampled[left] | allowed_at_sampled[right]

    def as_dict(self) -> dict[str, dict[str, float | bool | None]]:
        """``{class: {"presence_score", "present"}}`` for ``labels.json``."""
        scores, present = self.scores, self.present
        return {name: {"presence_score": None if scores is None else round(float(scores[c]), 4),
                       "present": bool(present[c])} for c, name in enumerate(self.classes)}


def window_presence_scores(window_maps: Sequence[torch.Tensor], window_null_maps: Sequence[torch.Tensor],
                           peak_share: float) -> np.ndarray:
    """``[W, C]`` presence scores (module docstring) from each window's class maps ``[C, F, h, w]`` and null
    concept map ``[F, h, w]``."""
    scores = []
    for maps, null in zip(window_maps, window_null_maps, strict=True):
        maps = maps.double()
        contrast = (maps - null.double()[None]).flatten(1)  # [C, F * h * w]
        scale = maps.square().mean().sqrt().clamp_min(_EPS)
        k = max(1, int(round(peak_share * contrast.shape[1])))
        scores.append((contrast.topk(k, dim=1).values.mean(1) / scale).numpy())
    return np.stack(scores).astype(np.float32)


def decide_presence(result, threshold: float | None, peak_share: float) -> Presence:
    """The presence of each class of ``result`` (a ``SaliencyResult``) at ``threshold`` (None: all present)."""
    scores = (window_presence_scores(result.window_maps, result.window_null_maps, peak_share)
              if result.window_null_maps else None)
    return Presence(list(result.classes), scores, threshold)
