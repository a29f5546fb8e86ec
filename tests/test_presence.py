"""Absent classes get no pixel: the presence score, its per-window decision, and the predict path with the oracle
(a model whose absent classes read exactly what its null concept reads)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.oracle import OracleBackbone
from vidseg.config import load_config
from vidseg.pipeline import VideoSegmenter
from vidseg.presence import Presence, window_presence_scores
from vidseg.probs import saliency_to_probs
from vidseg.toyworld import COLOURS, SHAPES, absent_pixels, class_ious, render_clip, write_toy_clip
from vidseg.video.sample import plan_sampling


def test_presence_score_is_the_contrast_with_the_null_concept_on_one_scale():
    rng = np.random.default_rng(0)
    null = torch.from_numpy(rng.standard_normal((3, 8, 12)).astype(np.float32))
    present = null.clone()
    present[:, 2:4, 3:6] += 5.0  # above the null concept on a small object
    absent = null.clone()  # reads what the null concept reads
    below = null - 1.0  # below it everywhere
    maps = torch.stack([present, absent, below])
    scores = window_presence_scores([maps], [null], peak_share=0.02)[0]
    assert scores[0] > 1.0 and scores[1] == pytest.approx(0.0, abs=1e-6) and scores[2] < 0
    # Scaling every map alike (z-scores shrink as classes are added) leaves the scores as they are.
    scaled = window_presence_scores([3 * maps], [3 * null], peak_share=0.02)[0]
    np.testing.assert_allclose(scaled, scores, rtol=1e-5, atol=1e-6)


def test_a_class_is_kept_only_in_the_frames_of_windows_that_hold_it():
    plan = plan_sampling(30, 8.0, sample_fps=8.0, window_frames=9, window_overlap=2)
    assert len(plan.windows) >= 3
    scores = np.full((len(plan.windows), 2), 5.0, dtype=np.float32)
    scores[1:, 1] = -1.0  # class 1 is present in the first window only
    presence = Presence(["cat", "dog"], scores, threshold=0.5)
    assert presence.present.tolist() == [True, True]
    frames = np.arange(30)
    allowed = presence.frame_allowed(plan, frames)
    assert allowed[:, 0].all()
    first = set(plan.sampled_frames[plan.windows[0]].tolist())
    assert allowed[[f for f in frames if f in first], 1].all()
    later = [f for f in frames if f > max(first)]
    assert later and not allowed[later, 1].any()
    # No threshold (presence.threshold: null) keeps every class everywhere.
    assert Presence(["cat", "dog"], scores, threshold=None).frame_allowed(plan, frames).all()
    assert Presence(["cat", "dog"], None, threshold=0.5).present.all()  # no null map: nothing to decide from


def test_an_absent_class_gets_probability_zero():
    saliency = torch.randn(2, 3, 4, 5)
    allowed = np.array([[True, False, True], [False, False, False]])
    probs = saliency_to_probs(saliency, allowed=allowed)
    assert (probs[0, 2] == 0).all() and (probs[1, 1:] == 0).all() and (probs[1, 0] == 1).all()
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 4, 5))
    # Without a background class a frame must still give every pixel a class: then all are kept.
    no_background = saliency_to_probs(saliency, background=None, allowed=allowed)
    assert (no_background[0, 2] == 0).all() and (no_background[1, 1:] > 0).all()


# -- the predict path --------------------------------------------------------------------------------------------

NINE_ABSENT = ["dog", "car", "tree", "person", "boat", "chair", "cloud", "bird", "lamp"]


@pytest.fixture(scope="module")
def clip_video(tmp_path_factory):
    clip = render_clip(31, num_frames=24, height=128, width=192, num_objects=2)
    path, _ = write_toy_clip(tmp_path_factory.mktemp("presence") / "clip.mp4", clip)
    return clip, path


def _predict(clip, path: Path, classes: list[str], out: Path, *overrides: str,
             null_noise: float = 1.0) -> tuple[np.ndarray, dict]:
    # The library's real-video calibration, which divides each class map by its own RMS: it lifts an absent
    # class's null-like map to a present class's level, the failure the presence decision exists for. No CRF: the
    # toy preset's wide appearance kernel would erase the absent class's scattered pixels on its own.
    config = load_config("toy", overrides=["export.workers=1", "export.overlay=false", "probs.calibration=class",
                                           "probs.background=2.0", "crf.enabled=false", *overrides])
    config.validate()
    oracle = OracleBackbone({o.shape: COLOURS[o.colour] for o in clip.objects}, null_noise=null_noise)
    [folder] = list(VideoSegmenter(oracle, config).predict([path], classes, out))
    masks = np.stack([np.asarray(Image.open(p)) for p in sorted((folder / "masks").glob("*.png"))])
    return masks, json.loads((folder / "labels.json").read_text())


def test_a_class_absent_everywhere_gets_no_pixel(clip_video, tmp_path):
    clip, path = clip_video
    absent = next(s for s in SHAPES if s not in clip.classes)
    classes = [*clip.classes, absent]
    masks, doc = _predict(clip, path, classes, tmp_path / "decided")
    assert not any(absent_pixels(masks, clip.labels, classes).values())
    assert doc["classes"][absent]["present"] is False and doc["classes"][absent]["presence_score"] <= 0
    assert all(doc["classes"][c]["present"] and doc["classes"][c]["presence_score"] > 0 for c in clip.classes)
    assert doc["classes"][absent]["frames_present"] == 0
    # The same run without the decision: the absent class takes pixels (so the assertion above can fail).
    undecided, _ = _predict(clip, path, classes, tmp_path / "undecided", "presence.threshold=null")
    assert absent_pixels(undecided, clip.labels, classes)[absent] > 0


def test_a_present_class_keeps_its_pixels_among_nine_absent_ones(clip_video, tmp_path):
    clip, path = clip_video
    shape = clip.classes[0]
    # A fainter null field than above: the shape alone is then segmented well, which the nine must not spoil.
    alone, _ = _predict(clip, path, [shape], tmp_path / "alone", null_noise=0.25)
    crowded, doc = _predict(clip, path, [shape, *NINE_ABSENT], tmp_path / "crowded", null_noise=0.25)
    assert not any(absent_pixels(crowded, clip.labels, [shape, *NINE_ABSENT]).values())
    assert [c for c, s in doc["classes"].items() if s["present"]] == [shape]
    iou_alone = class_ious(alone, clip.labels, [shape])[shape]
    iou_crowded = class_ious(crowded, clip.labels, [shape, *NINE_ABSENT])[shape]
    assert iou_alone > 0.5 and abs(iou_crowded - iou_alone) <= 0.02  # the floor: the shape is found at all
    undecided, _ = _predict(clip, path, [shape, *NINE_ABSENT], tmp_path / "undecided", "presence.threshold=null",
                            null_noise=0.25)
    assert sum(absent_pixels(undecided, clip.labels, [shape, *NINE_ABSENT]).values()) > 0  # can fail
