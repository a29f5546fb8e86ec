from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import torch

import vidseg.refine.labels as labels_module
from tests.conftest import REPO
from vidseg.config import CrfConfig, UpsampleConfig
from vidseg.errors import ConfigError, MissingDependencyError
from vidseg.refine import densecrf_available, refine_crf, refine_crf_clip, to_labels
from vidseg.refine.labels import _temporal_windows

SHARED = REPO.parent / "shared"
requires_crf = pytest.mark.skipif(not densecrf_available(), reason="pydensecrf (pydensecrf2) is not installed")


def disc_scene(T=1, H=96, W=128, seed=0):
    """Frames with a red disc on a textured grey background, the disc mask, and blocky noisy 1/16 probabilities."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    mask = (yy - H / 2) ** 2 + (xx - W / 2.3) ** 2 < (H / 3.2) ** 2
    frames = rng.integers(70, 110, size=(T, H, W, 3), dtype=np.uint8)
    frames[:, mask] = (200, 40, 40)
    coarse = mask.reshape(H // 16, 16, W // 16, 16).mean(axis=(1, 3))
    person = np.clip(coarse[None] + rng.normal(0, 0.15, (T,) + coarse.shape), 0.02, 0.98).astype(np.float32)
    return frames, mask, np.stack([1 - person, person], axis=1)


def iou(pred, truth):
    return (pred & truth).sum() / (pred | truth).sum()


@requires_crf
def test_crf_raises_iou_on_a_noisy_mask():
    frames, mask, probs = disc_scene()
    blocky = np.kron(probs[0], np.ones((16, 16), dtype=np.float32))  # nearest upsampling: jagged, noisy
    noisy = np.clip(blocky + np.random.default_rng(1).normal(0, 0.25, blocky.shape), 1e-3, None).astype(np.float32)
    noisy /= noisy.sum(0, keepdims=True)
    refined = refine_crf(frames[0], noisy, CrfConfig())
    assert refined.shape == noisy.shape
    assert np.allclose(refined.sum(0), 1, atol=1e-4)
    before, after = iou(noisy.argmax(0) == 1, mask), iou(refined.argmax(0) == 1, mask)
    assert after > before + 0.05, (before, after)


@requires_crf
def test_guided_and_crf_beat_bilinear_on_the_synthetic_scene():
    frames, mask, probs = disc_scene()
    plain = to_labels(frames, probs, upsampler="bilinear", crf=False, workers=1)[0]
    refined = to_labels(frames, probs, upsampler="guided", crf=True, workers=1)[0]
    assert iou(refined == 1, mask) > iou(plain == 1, mask)


@pytest.mark.parametrize("num_classes", [2, 125])
def test_to_labels_handles_two_and_many_classes(num_classes):
    frames, mask, probs = disc_scene(T=2)
    full = np.full((2, num_classes, 6, 8), 1e-4, dtype=np.float32)
    last = num_classes - 1  # the disc is the last class, to check the mapping back from kept classes
    full[:, 0], full[:, last] = probs[:, 0], probs[:, 1]
    full /= full.sum(1, keepdims=True)
    labels = to_labels(frames, torch.from_numpy(full), upsampler="guided", crf=True, workers=1)
    assert labels.shape == (2, 96, 128) and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, last}
    assert iou(labels[0] == last, mask) > 0.8


def test_no_background_channel_is_never_chosen():
    frames, _, probs = disc_scene()
    three = np.concatenate([np.zeros_like(probs[:, :1]), probs], axis=1)  # background disabled
    labels = to_labels(frames, three, upsampler="guided", crf=True, workers=1)
    assert labels.min() >= 1


@requires_crf
def test_workers_give_the_same_labels_as_one_process():
    frames, _, probs = disc_scene(T=3)
    one = to_labels(frames, probs, crf=True, workers=1)
    two = to_labels(frames, probs, crf=True, workers=2)
    assert np.array_equal(one, two)


@requires_crf
def test_spatio_temporal_crf_windows_cover_every_frame():
    frames, mask, probs = disc_scene(T=5, seed=3)
    config = CrfConfig(enabled=True, mode="3d", temporal_window=3, temporal_overlap=1)
    labels = to_labels(frames, probs, crf=config, workers=1)
    assert labels.shape == (5, 96, 128)
    assert all(iou(frame_labels == 1, mask) > 0.8 for frame_labels in labels)
    marginals = refine_crf_clip(frames[:3], np.stack([np.kron(p, np.ones((16, 16), np.float32)) for p in probs[:3]]),
                                config)
    assert marginals.shape == (3, 2, 96, 128) and np.allclose(marginals.sum(1), 1, atol=1e-4)


def test_temporal_windows():
    assert _temporal_windows(3, 4, 1) == [[0, 1, 2]]
    assert _temporal_windows(8, 4, 1) == [[0, 1, 2, 3], [3, 4, 5, 6], [4, 5, 6, 7]]
    assert _temporal_windows(7, 4, 0) == [[0, 1, 2, 3], [3, 4, 5, 6]]


@requires_crf
def test_large_frames_run_the_crf_downscaled():
    frames, mask, probs = disc_scene()
    upsampled = np.kron(probs[0], np.ones((16, 16), dtype=np.float32))
    small = refine_crf(frames[0], upsampled, CrfConfig(max_pixels=96 * 128 // 4))
    assert small.shape == upsampled.shape and iou(small.argmax(0) == 1, mask) > 0.8


def test_missing_crf_warns_once_by_default_and_raises_when_required(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)  # import now fails as when not installed
    monkeypatch.setattr(labels_module, "_warned_missing_crf", False)
    frames, _, probs = disc_scene()
    with pytest.warns(UserWarning, match="pydensecrf is not installed"):
        first = to_labels(frames, probs, crf=True, workers=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(to_labels(frames, probs, crf=CrfConfig(), workers=1), first)
    with pytest.raises(MissingDependencyError, match="pip install pydensecrf2"):
        to_labels(frames, probs, crf=CrfConfig(enabled=True), workers=1)


def test_bad_inputs_raise():
    frames, _, probs = disc_scene()
    with pytest.raises(ConfigError, match="uint8"):
        to_labels(frames, np.full((1, 257, 6, 8), 1 / 257, np.float32), crf=False, workers=1)
    with pytest.raises(ValueError, match="T = 1 frames"):
        to_labels(frames, np.concatenate([probs, probs]), crf=False, workers=1)
    with pytest.raises(ValueError, match="uint8"):
        to_labels(frames.astype(np.float32), probs, crf=False, workers=1)
    with pytest.raises(ConfigError, match="workers"):
        to_labels(frames, probs, crf=False, workers=-1)
    with pytest.raises(ConfigError, match="crf.mode"):
        to_labels(frames, probs, crf=CrfConfig(mode="4d"), workers=1)


@requires_crf
@pytest.mark.skipif(not (SHARED / "data" / "judo").exists(), reason="../shared (judo frames) is absent")
def test_guided_crf_beats_bilinear_on_a_real_frame():
    import cv2
    from PIL import Image

    judo = SHARED / "data" / "judo"
    mask = np.array(Image.open(judo / "masks" / "00000.png")) > 0
    frame = np.array(Image.open(judo / "frames" / "00000.jpg").convert("RGB"))[: mask.shape[0], : mask.shape[1]]
    person = cv2.resize(mask.astype(np.float32), (45, 30), interpolation=cv2.INTER_AREA)  # the 30 x 45 latent grid
    person = np.clip(person + np.random.default_rng(0).normal(0, 0.1, person.shape), 0, 1).astype(np.float32)
    probs = np.stack([1 - person, person])[None]
    plain = to_labels(frame[None], probs, upsampler="bilinear", crf=False, workers=1)[0]
    refined = to_labels(frame[None], probs, upsampler=UpsampleConfig(), crf=True, workers=1)[0]
    assert iou(refined == 1, mask) > iou(plain == 1, mask) + 0.02
