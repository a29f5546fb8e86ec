"""Post-processing of a video's class maps, model-free: saliency -> probabilities -> upsampling -> CRF -> labels.

It works on a ``SaliencyResult`` (from ``VideoSegmenter.compute_saliency`` or ``SaliencyResult.load``) and reads
the video's frames again, a chunk at a time, since upsampling and the CRF are guided by them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from vidseg.config import VidsegConfig
from vidseg.probs import saliency_to_probs
from vidseg.refine import to_labels
from vidseg.video.read import open_video

if TYPE_CHECKING:
    from vidseg.result import SaliencyResult

# Frames post-processed per batch: bounds memory for long, high-resolution videos.
CHUNK_FRAMES = 16


def iter_labels(
    result: SaliencyResult,
    config: VidsegConfig,
    *,
    frame_indices: Sequence[int] | np.ndarray | None = None,
    workers: int | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Label maps of ``result``'s video, frame by frame, in memory: yields ``(frame_index, labels, frame, probs)``.

    ``labels`` is uint8 ``[H, W]`` at the video's size (0 = background, i = the i-th class); ``frame`` the RGB
    frame ``[H, W, 3]`` it was refined against; ``probs`` float32 ``[C + 1, h, w]`` the class probabilities at the
    token grid (index 0 background; ``[C, h, w]`` when ``config.probs.background`` is None). Saliency ->
    probabilities -> upsampling -> CRF run in chunks of ``CHUNK_FRAMES`` frames, so memory stays bounded for long
    videos. ``frame_indices`` restricts the frames (default: all, in order); ``workers`` overrides
    ``config.export.workers`` (refinement processes; the result does not depend on it).
    """
    indices = np.arange(result.info.num_frames) if frame_indices is None else np.asarray(frame_indices, np.int64)
    # Calibrate on the whole video's maps, not chunk by chunk, so every frame is scaled alike.
    reference = result.sampled.permute(1, 0, 2, 3)  # [S, C, h, w]
    probs_config = config.probs
    video = open_video(result.source, reader=config.video.reader, frame_folder_fps=config.video.frame_folder_fps)
    with video as reader:
        for start in range(0, len(indices), CHUNK_FRAMES):
            chunk = indices[start:start + CHUNK_FRAMES]
            frames = reader.read(chunk)
            probs = saliency_to_probs(
                result.at_frames(chunk), temperature=probs_config.temperature, background=probs_config.background,
                calibration=probs_config.calibration, reference=reference,
            )
            labels = to_labels(frames, probs, upsampler=config.upsample, crf=config.crf,
                               workers=config.export.workers if workers is None else workers)
            probs = probs.cpu().numpy()
            for j, idx in enumerate(chunk):
                yield int(idx), labels[j], frames[j], probs[j]
