"""Fit the presence threshold and the background logit of a model on a few labeled videos (``vidseg calibrate``).

Every video is asked for the whole vocabulary, as a pseudo-labeling run would ask it; its maps are computed once.
The fit then searches ``presence.threshold`` (every midpoint between the videos' window presence scores, and
none) and ``probs.background`` (the current value plus steps of 0.5 up to 2 either side) for the best mean IoU
per video over the classes in its truth or its prediction, so a class that is absent but labelled counts as an IoU
of 0. The search scores the probabilities argmax-ed at 4 x the token grid (no upsampling guide, no CRF: thousands of
settings in seconds); the scores printed before and after come from vidseg's whole pipeline at the GT's size.
"""

from __future__ import annotations

import copy
import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vidseg.config import VidsegConfig
from vidseg.datasets.sources import DatasetVideo
from vidseg.datasets.vocabulary import VOID_VALUE, Vocabulary
from vidseg.datasets.vspw import read_mask
from vidseg.errors import ConfigError
from vidseg.export.run import frame_indices_of
from vidseg.postprocess import iter_labels
from vidseg.presence import Presence, decide_presence
from vidseg.probs import saliency_to_probs
from vidseg.result import SaliencyResult

BACKGROUND_STEPS = np.arange(-2.0, 2.01, 0.5)  # searched around the current probs.background
SEARCH_SCALE = 4  # the search scores labels at this many times the token grid
MAX_THRESHOLDS = 65  # presence thresholds searched at most


@dataclass
class LabeledVideo:
    """One calibration video: its maps for the whole vocabulary and its GT at the annotated frames.

    Attributes:
        result: the model pass, asked for every class of the vocabulary.
        frame_indices: ``[T]`` the annotated frames' indices in the video.
        truth: ``[T, H, W]`` uint8 GT as pipeline labels (0 no class, k the k-th class, 255 void).
    """

    result: SaliencyResult
    frame_indices: np.ndarray
    truth: np.ndarray


@dataclass(frozen=True)
class Scores:
    """How one setting labels the calibration videos.

    Attributes:
        miou: mean over videos of the IoU averaged over the classes in the video's truth or prediction.
        absent_pixel_percent: share of the scored pixels labelled with a class the video's truth lacks.
        presence_accuracy: share of (video, class) whose presence decision matches the truth.
    """

    miou: float
    absent_pixel_percent: float
    presence_accuracy: float

    def line(self) -> str:
        return (f"mean IoU {self.miou:.3f}, absent-class pixels {self.absent_pixel_percent:.3f} %, presence "
                f"accuracy {self.presence_accuracy:.3f}")


@dataclass(frozen=True)
class Calibration:
    """The fitted settings and the whole-pipeline scores they were chosen to improve."""

    threshold: float | None
    background: float
    before: Scores
    after: Scores
    num_videos: int

    def config_yaml(self, *, model: str, source: str) -> str:
        """The YAML file ``--config`` takes: the fitted values, with where they come from as comments."""
        threshold = "null" if self.threshold is None else f"{self.threshold:.4f}"
        return (f"# vidseg calibrate, {datetime.date.today().isoformat()}: model {model}, {self.num_videos} "
                f"labeled videos of {source}.\n"
                f"# Whole pipeline, before -> after: {self.before.line()} -> {self.after.line()}.\n"
                f"presence:\n  threshold: {threshold}\nprobs:\n  background: {self.background:g}\n")


def read_truth(video: DatasetVideo, vocabulary: Vocabulary, result: SaliencyResult) -> LabeledVideo:
    """The GT of a dataset video in vocabulary labels, at the frames it annotates."""
    masks = np.stack([vocabulary.gt_labels(read_mask(p)) for p in video.mask_paths])
    return LabeledVideo(result, frame_indices_of(result, list(video.output_stems)), masks)


def video_scores(labels: np.ndarray, truth: np.ndarray, num_classes: int) -> tuple[float, int, int]:
    """``(mean IoU over the classes in truth or prediction, pixels of classes the truth lacks, scored pixels)``
    for labels and truth ``[T, H, W]`` (0 background, 1..C classes; truth 255 is void and not scored)."""
    valid = truth != VOID_VALUE
    pred, true = labels[valid].astype(np.int64), truth[valid].astype(np.int64)
    joint = np.bincount(true * (num_classes + 1) + pred, minlength=(num_classes + 1) ** 2)
    joint = joint.reshape(num_classes + 1, num_classes + 1)[1:, 1:]  # classes only: background is no class
    in_truth = np.bincount(true, minlength=num_classes + 1)[1:]
    in_pred = np.bincount(pred, minlength=num_classes + 1)[1:]
    scored = (in_truth > 0) | (in_pred > 0)
    union = in_truth + in_pred - np.diag(joint)
    ious = np.diag(joint)[scored] / np.maximum(union[scored], 1)
    absent = int(in_pred[in_truth == 0].sum())
    return (float(ious.mean()) if ious.size else 1.0), absent, int(valid.sum())


def pipeline_scores(videos: Sequence[LabeledVideo], config: VidsegConfig, *, workers: int | None = None) -> Scores:
    """``Scores`` of ``config`` through vidseg's post-processing (upsampling, CRF) at the GT's size."""
    mious, absent, pixels, right, asked = [], 0, 0, 0, 0
    for video in videos:
        presence = decide_presence(video.result, config.presence.threshold, config.presence.peak_share)
        labels = np.stack([lab for _, lab in iter_labels(video.result, config, frame_indices=video.frame_indices,
                                                         workers=workers, presence=presence)])
        labels = _resize_labels(labels, video.truth.shape[1:])
        miou, a, n = video_scores(labels, video.truth, len(video.result.classes))
        mious.append(miou)
        absent, pixels = absent + a, pixels + n
        in_truth = np.isin(np.arange(1, len(presence.classes) + 1), video.truth)
        right, asked = right + int((presence.present == in_truth).sum()), asked + len(in_truth)
    return Scores(float(np.mean(mious)), 100 * absent / max(pixels, 1), right / max(asked, 1))


def fit_calibration(videos: Sequence[LabeledVideo], config: VidsegConfig, *, workers: int | None = None,
                    on_step: Callable[[str], None] | None = None) -> Calibration:
    """Search the presence threshold and background logit (module docstring) and score before and after."""
    if config.probs.background is None:
        raise ConfigError("calibrate fits the background logit, but probs.background is null (no background class); "
                          "set it to a number, e.g. --set probs.background=2.0")
    on_step = on_step or (lambda message: None)
    on_step("score the current settings")
    before = pipeline_scores(videos, config, workers=workers)
    prepared = [_SearchVideo(v, config) for v in videos]
    scores = np.concatenate([p.presence.window_scores.ravel() for p in prepared])
    distinct = np.unique(scores)
    if len(distinct) > MAX_THRESHOLDS:  # a long vocabulary: quantiles of the scores are fine enough
        distinct = np.quantile(distinct, np.linspace(0, 1, MAX_THRESHOLDS))
    thresholds: list[float | None] = [None, *((distinct[:-1] + distinct[1:]) / 2), float(distinct[0]) - 1.0]
    backgrounds = config.probs.background + BACKGROUND_STEPS
    on_step(f"search {len(thresholds)} thresholds x {len(backgrounds)} background logits")
    best, best_key = None, None
    for background in backgrounds:
        for threshold in thresholds:
            miou = float(np.mean([p.miou(threshold, background) for p in prepared]))
            # Ties: the smaller change of the background, then the threshold nearest the library default 0.
            key = (round(miou, 6), -abs(background - config.probs.background),
                   -abs(threshold) if threshold is not None else -np.inf)
            if best_key is None or key > best_key:
                best, best_key = (threshold, background), key
    threshold, background = best
    fitted = copy.deepcopy(config)
    fitted.presence.threshold = None if threshold is None else float(threshold)
    fitted.probs.background = background
    on_step("score the fitted settings")
    after = pipeline_scores(videos, fitted, workers=workers)
    return Calibration(fitted.presence.threshold, float(background), before, after, len(videos))


class _SearchVideo:
    """One video's maps at its annotated frames and its truth at the search resolution, for fast re-scoring."""

    def __init__(self, video: LabeledVideo, config: VidsegConfig):
        result = video.result
        self.video, self.config = video, config
        self.saliency = result.at_frames(video.frame_indices)  # [T, C, h, w]
        self.reference = result.sampled.permute(1, 0, 2, 3)
        self.presence = decide_presence(result, None, config.presence.peak_share)  # fresh results have null maps
        h, w = self.saliency.shape[-2:]
        self.size = (SEARCH_SCALE * h, SEARCH_SCALE * w)
        self.truth = _resize_labels(video.truth, self.size)
        self._allowed: dict[float | None, np.ndarray] = {}

    def miou(self, threshold: float | None, background: float | None) -> float:
        if threshold not in self._allowed:
            presence = Presence(self.presence.classes, self.presence.window_scores, threshold)
            self._allowed[threshold] = presence.frame_allowed(self.video.result.plan, self.video.frame_indices)
        p = self.config.probs
        probs = saliency_to_probs(self.saliency, temperature=p.temperature, background=background,
                                  calibration=p.calibration, reference=self.reference,
                                  allowed=self._allowed[threshold])
        labels = F.interpolate(probs, size=self.size, mode="bilinear", align_corners=False).argmax(1)
        return video_scores(labels.numpy().astype(np.uint8), self.truth, len(self.presence.classes))[0]


def _resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if labels.shape[1:] == tuple(size):
        return labels
    tensor = torch.from_numpy(np.ascontiguousarray(labels))[:, None].float()
    return F.interpolate(tensor, size=size, mode="nearest")[:, 0].to(torch.uint8).numpy()
