"""Where and when each concept is present: per-frame strength, active frames and masks, from a ``SaliencyResult``.

``vidseg localize`` asks for any mix of nouns and motion verbs ("man, walking, dog, running"). Unlike ``predict``,
concepts do not compete for pixels (a walking man is both "man" and "walking"): each concept is decided on its own,
against the background only, with the same calibration, temperature and background logit as ``predict``
(``probs.*``), so ``p_c = sigmoid((calibrated z_c - background) / temperature)`` per token.

* **Strength** of a concept in a frame: ``p_c`` averaged over the frame's most salient ``localize.peak_share`` of
  tokens (at least one), i.e. how sure the map is of the concept's best region in that frame, in [0, 1]. Maps are
  per latent frame, blended across overlapping windows and interpolated to every input frame exactly as for
  ``predict`` (``SaliencyResult.at_frames``), so the curve moves in steps of one latent frame (4 model frames).
* **Active frames**: strength above ``localize.threshold``; then gaps shorter than ``localize.max_gap_s`` between
  active runs are filled and runs shorter than ``localize.min_active_s`` dropped (both 0 by default: no smoothing).
* **Masks**: in active frames, the pixels where the concept beats the background after the frame-guided
  upsampling and the dense CRF of ``predict`` (two labels: background, the concept); empty in inactive frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import torch

from vidseg.config import VidsegConfig
from vidseg.errors import ConfigError
from vidseg.postprocess import CHUNK_FRAMES
from vidseg.probs import saliency_to_probs
from vidseg.refine import to_labels

if TYPE_CHECKING:
    from vidseg.result import SaliencyResult


@dataclass
class ConceptTrack:
    """One concept over the video.

    Attributes:
        concept: the concept as typed.
        strength: ``[N]`` float32 in [0, 1], one per input frame (module docstring).
        active: ``[N]`` bool, the frames where the concept is judged present.
    """

    concept: str
    strength: np.ndarray
    active: np.ndarray

    @property
    def intervals(self) -> list[tuple[int, int]]:
        """Active frame ranges, ``(first, last)`` inclusive."""
        return runs(self.active)


@dataclass
class Localization:
    """Every concept's track over one video, with the saliency it came from.

    Attributes:
        result: the model pass (its ``classes`` are the concepts).
        tracks: one ``ConceptTrack`` per concept, in the order given.
        times: ``[N]`` seconds of each input frame from the first.
    """

    result: SaliencyResult
    tracks: list[ConceptTrack]
    times: np.ndarray

    def seconds(self, interval: tuple[int, int]) -> tuple[float, float]:
        """An interval's start and end in seconds: the first frame's time and the time the last frame ends."""
        first, last = interval
        step = 1.0 / self.result.info.fps if self.result.info.fps > 0 else 0.0
        end = self.times[last + 1] if last + 1 < len(self.times) else self.times[last] + step
        return float(self.times[first]), float(end)


def runs(active: np.ndarray) -> list[tuple[int, int]]:
    """``(first, last)`` inclusive of each run of True in ``active`` ``[N]``."""
    padded = np.concatenate([[False], np.asarray(active, bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def frame_times(result: SaliencyResult) -> np.ndarray:
    """``[N]`` seconds of each input frame: the video's timestamps, else index / fps."""
    info = result.info
    if info.timestamps is not None and len(info.timestamps) == info.num_frames:
        return np.asarray(info.timestamps, np.float64) - float(info.timestamps[0])
    return np.arange(info.num_frames) / (info.fps if info.fps > 0 else 1.0)


def concept_probs(saliency: torch.Tensor, reference: torch.Tensor, config: VidsegConfig) -> torch.Tensor:
    """Each concept against the background alone: ``[T, C, h, w]`` probabilities from maps ``saliency``
    ``[T, C, h, w]``, calibrated on ``reference`` ``[S, C, h, w]`` (the whole video), with ``config.probs``."""
    p = config.probs
    if p.background is None:
        raise ConfigError("localize decides each concept against the background; set probs.background to a number "
                          "(e.g. --set probs.background=2.0)")
    return torch.cat([saliency_to_probs(saliency[:, c:c + 1], temperature=p.temperature, background=p.background,
                                        calibration=p.calibration, reference=reference[:, c:c + 1])[:, 1:]
                      for c in range(saliency.shape[1])], dim=1)


def peak_strength(probs: torch.Tensor, peak_share: float) -> torch.Tensor:
    """``[T, C]``: the mean of each frame's top ``peak_share`` of token probabilities (at least one token), from
    ``probs`` ``[T, C, h, w]``."""
    flat = probs.flatten(2)
    k = max(1, int(round(peak_share * flat.shape[-1])))
    return flat.topk(k, dim=-1).values.mean(-1)


def decide_active(strength: np.ndarray, times: np.ndarray, *, threshold: float, min_active_s: float = 0.0,
                  max_gap_s: float = 0.0) -> np.ndarray:
    """``[N]`` bool from a strength curve ``[N]``: above ``threshold``, gaps shorter than ``max_gap_s`` filled, then
    runs shorter than ``min_active_s`` dropped (durations from ``times`` ``[N]``, a frame lasting until the next)."""
    active = np.asarray(strength) > threshold
    ends = np.append(times[1:], times[-1] + (times[-1] - times[-2] if len(times) > 1 else 1.0))
    for first, last in runs(~active):
        if first > 0 and last < len(active) - 1 and ends[last] - times[first] < max_gap_s:
            active[first:last + 1] = True
    for first, last in runs(active):
        if ends[last] - times[first] < min_active_s:
            active[first:last + 1] = False
    return active


def localize(result: SaliencyResult, config: VidsegConfig) -> Localization:
    """Strength and active frames of every concept of ``result`` (module docstring), with ``config.localize``."""
    cfg = config.localize
    reference = result.sampled.permute(1, 0, 2, 3)  # [S, C, h, w]: calibrate on the whole video
    times = frame_times(result)
    frames = np.arange(result.info.num_frames)
    strength = np.concatenate([  # a chunk of frames at a time: bounded memory for long videos
        peak_strength(concept_probs(result.at_frames(frames[i:i + CHUNK_FRAMES]), reference, config),
                      cfg.peak_share).numpy()
        for i in range(0, len(frames), CHUNK_FRAMES)
    ])  # [N, C]
    tracks = [ConceptTrack(c, strength[:, i].astype(np.float32),
                           decide_active(strength[:, i], times, threshold=cfg.threshold,
                                         min_active_s=cfg.min_active_s, max_gap_s=cfg.max_gap_s))
              for i, c in enumerate(result.classes)]
    return Localization(result, tracks, times)


@dataclass
class ConceptFrame:
    """One frame's localisation outputs.

    Attributes:
        frame_idx: the frame's index in the video.
        frame: ``[H, W, 3]`` uint8 RGB.
        probs: ``[C, h, w]`` float32, each concept against the background at the token grid.
        masks: ``[C, H, W]`` bool at the video's size, all False where the concept is inactive.
    """

    frame_idx: int
    frame: np.ndarray
    probs: np.ndarray
    masks: np.ndarray


def iter_concept_frames(localization: Localization, config: VidsegConfig, *,
                        workers: int | None = None) -> Iterator[ConceptFrame]:
    """``ConceptFrame`` for every frame of the video, in order, a chunk at a time (masks: module docstring)."""
    result = localization.result
    reference = result.sampled.permute(1, 0, 2, 3)
    active = np.stack([t.active for t in localization.tracks], axis=1)  # [N, C]
    workers = config.export.workers if workers is None else workers
    with result.open_video(config) as reader:
        for start in range(0, result.info.num_frames, CHUNK_FRAMES):
            chunk = np.arange(start, min(start + CHUNK_FRAMES, result.info.num_frames))
            frames = reader.read(chunk)
            probs = concept_probs(result.at_frames(chunk), reference, config)  # [T, C, h, w]
            masks = np.zeros((len(chunk), probs.shape[1], *frames.shape[1:3]), dtype=bool)
            for c in range(probs.shape[1]):
                on = np.flatnonzero(active[chunk, c])
                if len(on):
                    pair = torch.stack([1 - probs[on, c], probs[on, c]], dim=1)  # [T_on, 2, h, w]
                    masks[on, c] = to_labels(frames[on], pair, upsampler=config.upsample, crf=config.crf,
                                             workers=workers) == 1
            probs = probs.numpy()
            for j, idx in enumerate(chunk):
                yield ConceptFrame(int(idx), frames[j], probs[j], masks[j])


def check_concepts(concepts: Sequence[str]) -> list[str]:
    """Strip concept names; reject an empty list, blank names, duplicates and names that cannot be a folder name,
    with one clear line each."""
    from vidseg.models.text import check_classes

    names = check_classes(concepts, what="concept", example='--concepts "dog, running"')
    folders: dict[str, str] = {}
    for name in names:
        if "/" in name or "\\" in name or name in (".", ".."):
            raise ConfigError(f"concept {name!r} cannot name a mask folder; leave out slashes")
        folder = concept_folder(name)
        if folder.lower() in folders:
            raise ConfigError(f"concepts {folders[folder.lower()]!r} and {name!r} share the mask folder {folder!r}; "
                              "rename one")
        folders[folder.lower()] = name
    return names


def concept_folder(concept: str) -> str:
    """The mask folder of a concept: the concept as typed, spaces as ``_``."""
    return "_".join(concept.split())
