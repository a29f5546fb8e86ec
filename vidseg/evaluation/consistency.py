"""Video consistency VC_n, as the official ``VC_perclip.py`` computes it (``reference.md`` §3.6).

For a video of L mask frames (sorted by name) and each window start i = 0 … L − n − 1 (the last possible window,
start L − n, is skipped, as in the official loop ``range(L - n)``): a pixel is GT-consistent when the GT holds the
same value on all n frames i … i + n − 1, pred-consistent likewise; the window's score is
|pred-consistent ∧ GT-consistent| / |GT-consistent| (NaN without GT-consistent pixels). Videos with L ≤ n give no
window. VC_n is the nanmean over the windows of all videos pooled, not a mean of per-video means.

"All n frames equal frame i" is the same as "every consecutive pair equal", so the frames are streamed once while
a per-pixel count of consecutive equal steps is kept; a window ending at frame k is consistent where that count
reaches n − 1. Memory is O(H·W), whatever the video length.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


class ConsistencyCounter:
    """Streams one video's (GT, prediction) frames and yields its VC window scores for several window lengths."""

    def __init__(self, window_lengths: Sequence[int] = (8, 16)):
        if any(n < 2 for n in window_lengths):
            raise ValueError(f"window lengths must be at least 2, got {list(window_lengths)}")
        self.window_lengths = tuple(window_lengths)
        self._scores: dict[int, list[float]] = {n: [] for n in self.window_lengths}
        self._prev: tuple[np.ndarray, np.ndarray] | None = None
        self._gt_run: np.ndarray | None = None
        self._pred_run: np.ndarray | None = None
        self._num_frames = 0

    def add(self, gt: np.ndarray, pred: np.ndarray) -> None:
        """Next frame: ``gt`` and ``pred`` ``[H, W]`` (any integer dtype; only equality is used)."""
        if self._prev is None:
            cap = max(self.window_lengths)
            dtype = np.uint8 if cap < 256 else np.uint16
            self._gt_run = np.zeros(gt.shape, dtype=dtype)
            self._pred_run = np.zeros(gt.shape, dtype=dtype)
        else:
            prev_gt, prev_pred = self._prev
            if gt.shape != prev_gt.shape:
                raise ValueError(f"frame {self._num_frames} is {gt.shape}, the previous one {prev_gt.shape}")
            _extend_run(self._gt_run, gt == prev_gt, max(self.window_lengths))
            _extend_run(self._pred_run, pred == prev_pred, max(self.window_lengths))
            for n in self.window_lengths:
                if self._num_frames >= n - 1:  # a window i = num_frames − (n − 1) ends at this frame
                    gt_consistent = self._gt_run >= n - 1
                    both = np.count_nonzero(gt_consistent & (self._pred_run >= n - 1))
                    denominator = np.count_nonzero(gt_consistent)
                    self._scores[n].append(both / denominator if denominator else np.nan)
        self._prev = (gt, pred)
        self._num_frames += 1

    def window_scores(self) -> dict[int, list[float]]:
        """Scores of windows i = 0 … L − n − 1 per window length n (the final window dropped, as officially)."""
        return {n: scores[:-1] for n, scores in self._scores.items()}


def _extend_run(run: np.ndarray, equal: np.ndarray, cap: int) -> None:
    """run = run + 1 where equal, else 0, saturating at ``cap`` (in place)."""
    np.minimum(run, cap - 1, out=run)
    run += 1
    run[~equal] = 0


def pooled_nanmean(scores: Sequence[float]) -> float:
    """nanmean of window scores; NaN when there is no window or every window is NaN."""
    values = np.asarray(scores, dtype=np.float64)
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")
