from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
import torch

from vidseg.config import ProbsConfig
from vidseg.errors import ConfigError
from vidseg.probs import CALIBRATIONS, _otsu_threshold, saliency_to_probs


def gramcol_z(present: torch.Tensor, num_classes: int, seed: int = 0, num_maps: int = 20, slots: int = 226):
    """Z-scored maps [1, C, h, w] as method.md 7.2 makes them: per map, C real Gram maps and slots - C copies of
    the null map, z-scored per pixel over all slots, then averaged over maps. Class 1 is ``present`` (a mask),
    the other classes are noise."""
    gen = torch.Generator().manual_seed(seed)
    h, w = present.shape
    total = torch.zeros(num_classes, h, w)
    for _ in range(num_maps):
        real = 0.3 * torch.randn(num_classes, h, w, generator=gen)
        real[0] += present
        null = 0.3 * torch.randn(h, w, generator=gen) + 0.3
        stacked = torch.cat([real, null.expand(slots - num_classes, h, w)])
        total += ((stacked - stacked.mean(0)) / (stacked.std(0) + 1e-6))[:num_classes]
    return (total / num_maps)[None]


def square(h=30, w=45):
    mask = torch.zeros(h, w)
    mask[8:20, 10:30] = 1
    return mask


@pytest.mark.parametrize("calibration", CALIBRATIONS)
@pytest.mark.parametrize("num_classes", [1, 3, 124])
def test_probabilities_are_a_distribution_with_background_first(calibration, num_classes):
    saliency = torch.randn(3, num_classes, 6, 9)
    probs = saliency_to_probs(saliency, temperature=0.7, background=0.2, calibration=calibration)
    assert probs.shape == (3, num_classes + 1, 6, 9) and probs.dtype == torch.float32
    assert torch.allclose(probs.sum(1), torch.ones(3, 6, 9), atol=1e-5)


def test_no_background_leaves_channel_zero_empty():
    probs = saliency_to_probs(torch.randn(2, 4, 5, 5), temperature=1.0, background=None)
    assert torch.all(probs[:, 0] == 0)
    assert torch.allclose(probs.sum(1), torch.ones(2, 5, 5), atol=1e-5)
    assert probs.argmax(1).min() >= 1


@pytest.mark.parametrize("calibration", ["clip", "class"])
def test_one_setting_finds_the_object_with_one_class_and_with_ten(calibration):
    mask = square()
    for num_classes in (1, 10):
        saliency = gramcol_z(mask, num_classes)
        labels = saliency_to_probs(saliency, temperature=1.0, background=0.5, calibration=calibration).argmax(1)[0]
        found = labels == 1
        iou = (found & (mask > 0)).sum() / (found | (mask > 0)).sum()
        assert iou > 0.9, (num_classes, float(iou))


def test_raw_z_scores_change_scale_with_the_number_of_classes():
    # Why calibration exists: the same object gets a ~15 z-score alone and a far smaller one among 10 classes.
    mask = square()
    alone = gramcol_z(mask, 1)[0, 0][mask > 0].mean()
    among_ten = gramcol_z(mask, 10)[0, 0][mask > 0].mean()
    assert alone > 12 and among_ten < 0.6 * alone


def test_reference_statistics_calibrate_chunks_like_the_whole_clip():
    saliency = torch.randn(8, 3, 4, 6) * torch.tensor([1.0, 3.0, 0.5])[None, :, None, None]
    whole = saliency_to_probs(saliency, temperature=1.0, background=0.0, calibration="class")
    chunks = torch.cat([saliency_to_probs(saliency[i:i + 3], temperature=1.0, background=0.0, calibration="class",
                                          reference=saliency) for i in range(0, 8, 3)])
    assert torch.allclose(whole, chunks, atol=1e-6)


def test_otsu_threshold_splits_two_modes():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(-2, 0.5, 5000), rng.normal(3, 0.5, 1000)])
    assert -0.5 < _otsu_threshold(values) < 1.5


def test_bad_arguments_raise():
    with pytest.raises(ConfigError, match="calibration"):
        saliency_to_probs(torch.randn(1, 2, 3, 3), temperature=1.0, background=0.0, calibration="softmax")
    with pytest.raises(ConfigError, match="temperature"):
        saliency_to_probs(torch.randn(1, 2, 3, 3), temperature=0.0, background=0.0)
    with pytest.raises(ValueError, match=r"\[T, C, h, w\]"):
        saliency_to_probs(torch.randn(2, 3, 3), temperature=1.0, background=0.0)


def test_function_defaults_match_the_config_defaults():
    params = inspect.signature(saliency_to_probs).parameters
    for field in dataclasses.fields(ProbsConfig):
        assert params[field.name].default == field.default, field.name
