"""Class probabilities at latent resolution -> label maps at frame resolution: upsample, dense CRF, argmax.

Per frame, only the classes that occur compete: a class is kept when its low-resolution probability reaches
``class_keep_ratio`` of the pixel's top probability somewhere in the frame (3-D CRF: in the window). A list of
124 classes therefore costs about what the few classes present cost. Frames (or CRF windows) are spread over
worker processes (``vidseg.workers``); upsamplers that run in the caller (AnyUp, possibly on a GPU) upsample there
first.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from vidseg.config import CrfConfig, UpsampleConfig
from vidseg.errors import ConfigError
from vidseg.registry import CRF_MODES
from vidseg.refine.crf import densecrf_available, refine_crf_clip, require_densecrf
from vidseg.upsample.upsamplers import Upsampler, check_frames_and_probs, get_upsampler
from vidseg.workers import WorkerPool

MAX_CLASSES = 256  # labels are uint8

_warned_missing_crf = False


def _one_thread() -> None:
    """One OpenCV thread per worker process: the processes already use every core."""
    import cv2

    cv2.setNumThreads(1)


# Started at the first refinement with workers; its fork server imports this module once for every worker.
_POOL = WorkerPool(preload=[__name__], initializer=_one_thread)


def to_labels(
    frames: np.ndarray,
    probs: torch.Tensor | np.ndarray,
    *,
    upsampler: str | UpsampleConfig | Upsampler = "guided",
    crf: bool | CrfConfig = True,
    workers: int = 0,
    anyup_checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Label maps for ``frames`` from class probabilities ``probs``.

    Args:
        frames: uint8 ``[T, H, W, 3]`` RGB at the size the labels should have (any size).
        probs: float ``[T, K, h, w]``, a distribution over ``K <= 256`` classes per pixel, index 0 = background
            (an all-zero channel 0 is never chosen).
        upsampler: ``guided`` | ``bilinear`` | ``anyup``, an ``UpsampleConfig`` (method and filter settings), or an
            ``Upsampler`` callable. Each frame guides its own map.
        crf: ``True`` runs the per-frame dense CRF with ``CrfConfig()`` defaults when pydensecrf is installed
            (otherwise warns once and skips); ``False`` skips it; a ``CrfConfig`` is used as given, where
            ``enabled=None`` behaves like ``True``, ``enabled=True`` requires pydensecrf
            (``MissingDependencyError`` when absent) and ``enabled=False`` skips.
        workers: processes across frames; 0 = one per CPU core, 1 = in this process.
        anyup_checkpoint: checkpoint for ``upsampler="anyup"``.
        device: where AnyUp runs (default CUDA when present).

    Returns:
        uint8 ``[T, H, W]`` class indices into ``probs``' K axis.
    """
    probs = check_frames_and_probs(frames, probs)
    T, K = probs.shape[:2]
    if K > MAX_CLASSES:
        raise ConfigError(f"{K} classes do not fit uint8 labels; use at most {MAX_CLASSES} (background included)")
    settings = upsampler if isinstance(upsampler, UpsampleConfig) else UpsampleConfig()
    upsample = get_upsampler(upsampler, anyup_checkpoint=anyup_checkpoint, device=device)
    crf_config = _resolve_crf(crf)
    in_workers = getattr(upsample, "runs_in_workers", False)
    if crf_config is not None and crf_config.mode == "3d":
        groups = _temporal_windows(T, crf_config.temporal_window, crf_config.temporal_overlap)
    else:
        groups = [[t] for t in range(T)]
    num_workers = min(_num_workers(workers), len(groups))
    group_classes = [_classes_present(probs[frame_ids], settings.class_keep_ratio) for frame_ids in groups]

    def jobs() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        # A generator, so that workers refine earlier frames while this process upsamples later ones.
        for frame_ids, classes in zip(groups, group_classes):
            if in_workers or len(classes) == 1:
                job_probs = _restrict(probs[frame_ids], classes)
            else:
                # Upsample every class here (AnyUp's keys depend on all channels), then keep the present ones.
                job_probs = _restrict(np.stack([upsample(frames[t], probs[t]) for t in frame_ids]), classes)
            yield frames[frame_ids], job_probs, classes

    task = _RefineGroup(upsample if in_workers else None, crf_config)
    results = _POOL.imap(task, jobs(), num_workers)
    labels = np.empty(frames.shape[:3], dtype=np.uint8)
    if crf_config is None or crf_config.mode != "3d":
        for frame_ids, (group_labels, _, _) in zip(groups, results):
            labels[frame_ids] = group_labels
        return labels
    # Overlapping 3-D windows: average each frame's marginals over the windows that contain it.
    union = np.unique(np.concatenate(group_classes))
    marginals = np.zeros((T, len(union)) + frames.shape[1:3], dtype=np.float32)
    counts = np.zeros(T, dtype=np.float32)
    for frame_ids, (_, group_marginals, classes) in zip(groups, results):
        marginals[np.ix_(frame_ids, np.searchsorted(union, classes))] += group_marginals
        counts[frame_ids] += 1
    labels[:] = union.astype(np.uint8)[(marginals / counts[:, None, None, None]).argmax(axis=1)]
    return labels


class _RefineGroup:
    """The work for one frame (or one 3-D CRF window): upsample when asked, CRF, labels.

    Returns ``(labels uint8 [t, H, W], marginals float32 [t, k, H, W] or None, classes [k])``; marginals are
    returned only for the 3-D mode, whose overlapping windows are averaged by the caller.
    """

    def __init__(self, upsample: Upsampler | None, crf: CrfConfig | None) -> None:
        self.upsample = upsample
        self.crf = crf

    def __call__(self, frames: np.ndarray, probs: np.ndarray,
                 classes: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        t, H, W = frames.shape[:3]
        temporal = self.crf is not None and self.crf.mode == "3d"
        if len(classes) == 1:
            labels = np.full((t, H, W), classes[0], dtype=np.uint8)
            return labels, (np.ones((t, 1, H, W), dtype=np.float32) if temporal else None), classes
        if self.upsample is not None:
            probs = np.stack([self.upsample(f, p) for f, p in zip(frames, probs)])
        if self.crf is not None:
            probs = refine_crf_clip(frames, probs, self.crf, temporal=temporal)
        labels = classes.astype(np.uint8)[probs.argmax(axis=1)]
        return labels, (probs if temporal else None), classes


def _classes_present(probs: np.ndarray, keep_ratio: float) -> np.ndarray:
    """Indices of the classes that reach ``keep_ratio`` of the top probability at some pixel of ``probs``
    ``[t, K, h, w]`` (all classes with any probability when ``keep_ratio`` is 0)."""
    top = probs.max(axis=1, keepdims=True)
    reach = probs >= keep_ratio * top if keep_ratio > 0 else probs > 0
    reach &= probs > 0
    return np.flatnonzero(reach.any(axis=(0, 2, 3)))


def _restrict(probs: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``[t, K, h, w]`` -> ``[t, k, h, w]`` over ``classes``, renormalised per pixel (a CRF unary shift per pixel
    does not change the result; the argmax among kept classes is unchanged)."""
    kept = np.ascontiguousarray(probs[:, classes])
    total = kept.sum(axis=1, keepdims=True)
    return kept / np.maximum(total, 1e-12)


def _resolve_crf(crf: bool | CrfConfig) -> CrfConfig | None:
    """The CRF settings to run with, or None to skip; see ``to_labels`` for the rules."""
    global _warned_missing_crf
    config = crf if isinstance(crf, CrfConfig) else CrfConfig(enabled=None if crf else False)
    if config.enabled is False:
        return None
    CRF_MODES.check(config.mode)
    if not 0 <= config.temporal_overlap < config.temporal_window:
        raise ConfigError(f"crf.temporal_overlap is {config.temporal_overlap}; it must be in "
                          f"[0, {config.temporal_window}) (crf.temporal_window)")
    if config.enabled is True:
        require_densecrf()
        return config
    if densecrf_available():
        return config
    if not _warned_missing_crf:
        warnings.warn("pydensecrf is not installed, so labels are not CRF-refined; pip install pydensecrf2 "
                      "(CPython < 3.13) or pass --no-crf to silence this", stacklevel=3)
        _warned_missing_crf = True
    return None


def _temporal_windows(num_frames: int, window: int, overlap: int) -> list[list[int]]:
    """Frame index lists covering ``range(num_frames)`` with windows of ``window`` frames sharing ``overlap``."""
    if num_frames <= window:
        return [list(range(num_frames))]
    stride = window - overlap
    starts = list(range(0, num_frames - window + 1, stride))
    if starts[-1] + window < num_frames:
        starts.append(num_frames - window)
    return [list(range(s, s + window)) for s in starts]


def _num_workers(workers: int) -> int:
    if workers < 0:
        raise ConfigError(f"workers is {workers}; use 0 (one per CPU core), 1 (no worker processes) or more")
    if workers:
        return workers
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
