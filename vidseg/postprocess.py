"""Post-processing of a video's class maps, model-free: saliency -> probabilities -> upsampling -> CRF -> labels.

It works on a ``SaliencyResult`` (from ``VideoSegmenter.compute_saliency`` or ``SaliencyResult.load``), a chunk of
frames at a time, and computes only what it is asked for: labels need the probabilities and the video's frames
(upsampling and the CRF are guided by them), probabilities need only the maps.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Collection, Iterator, Sequence

import numpy as np

from vidseg.config import VidsegConfig
from vidseg.presence import Presence, decide_presence
from vidseg.probs import saliency_to_probs
from vidseg.refine import to_labels

if TYPE_CHECKING:
    from vidseg.result import SaliencyResult

# Frames post-processed per batch: bounds memory for long, high-resolution videos.
CHUNK_FRAMES = 16
# What post-processing can make per frame: the names of FrameOutputs' fields.
FRAME_OUTPUTS = frozenset({"frame", "probs", "labels"})


@dataclass
class FrameOutputs:
    """What post-processing made for one frame; a field is None where it was not computed.

    Attributes:
        frame_idx: the frame's index in the video.
        frame: ``[H, W, 3]`` uint8 RGB, the frame upsampling and the CRF were guided by.
        probs: ``[C + 1, h, w]`` float32 class probabilities at the token grid, index 0 background (all zeros when
            ``config.probs.background`` is None).
        labels: ``[H, W]`` uint8 at the video's size: 0 = background, k = the k-th class.
    """

    frame_idx: int
    frame: np.ndarray | None = None
    probs: np.ndarray | None = None
    labels: np.ndarray | None = None


def iter_frame_outputs(
    result: SaliencyResult,
    config: VidsegConfig,
    *,
    outputs: Collection[str] = FRAME_OUTPUTS,
    frame_indices: Sequence[int] | np.ndarray | None = None,
    workers: int | None = None,
    presence: Presence | None = None,
) -> Iterator[FrameOutputs]:
    """``FrameOutputs`` for each frame of ``result``'s video, in memory, computing ``outputs`` (a subset of
    ``FRAME_OUTPUTS``) and only what they need.

    Chunks of ``CHUNK_FRAMES`` frames keep memory bounded for long videos. ``frame_indices`` restricts the frames
    (default: all, in order); ``workers`` overrides ``config.export.workers`` (refinement processes; the labels do
    not depend on it); ``presence`` is the classes' presence decision when the caller has made it already (default:
    made here from ``config.presence``).
    """
    unknown = set(outputs) - FRAME_OUTPUTS
    if unknown:
        raise ValueError(f"post-processing makes {sorted(FRAME_OUTPUTS)} per frame, not {sorted(unknown)}")
    make_labels = "labels" in outputs
    make_probs = make_labels or "probs" in outputs
    read_frames = make_labels or "frame" in outputs
    indices = np.arange(result.info.num_frames) if frame_indices is None else np.asarray(frame_indices, np.int64)
    # Calibrate on the whole video's maps, not chunk by chunk, so every frame is scaled alike.
    reference = result.sampled.permute(1, 0, 2, 3)  # [S, C, h, w]
    probs_config = config.probs
    if presence is None:
        presence = decide_presence(result, config.presence.threshold, config.presence.peak_share)
    video = result.open_video(config) if read_frames else nullcontext()
    with video as reader:
        for start in range(0, len(indices), CHUNK_FRAMES):
            chunk = indices[start:start + CHUNK_FRAMES]
            frames = reader.read(chunk) if read_frames else None
            probs = saliency_to_probs(
                result.at_frames(chunk), temperature=probs_config.temperature, background=probs_config.background,
                calibration=probs_config.calibration, reference=reference,
                allowed=presence.frame_allowed(result.plan, chunk),
            ) if make_probs else None
            labels = to_labels(frames, probs, upsampler=config.upsample, crf=config.crf,
                               workers=config.export.workers if workers is None else workers) if make_labels else None
            probs = probs.cpu().numpy() if make_probs else None
            for j, idx in enumerate(chunk):
                yield FrameOutputs(int(idx), frame=None if frames is None else frames[j],
                                   probs=None if probs is None else probs[j],
                                   labels=None if labels is None else labels[j])


def iter_labels(
    result: SaliencyResult,
    config: VidsegConfig,
    *,
    frame_indices: Sequence[int] | np.ndarray | None = None,
    workers: int | None = None,
    presence: Presence | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """``(frame_index, labels [H, W] uint8)`` for each frame of ``result``'s video, in memory (no files): see
    ``iter_frame_outputs``."""
    for out in iter_frame_outputs(result, config, outputs={"labels"}, frame_indices=frame_indices, workers=workers,
                                  presence=presence):
        yield out.frame_idx, out.labels
