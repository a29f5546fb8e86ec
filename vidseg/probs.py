"""Saliency maps -> per-pixel class probabilities, with a background class at index 0.

The IMAP / GramCol maps are z-scores over the 226 text slots (method.md section 7.2). Their scale depends on
the number of classes C: with one class every value is about +-15 (the sign of "class beats the null concept"),
and with C classes a pixel's C scores have a norm of about 15, so each is about 15 / sqrt(C). A fixed softmax
temperature or background logit would therefore mean different things for a video with one class and one
with ten. ``calibration`` removes that dependence before the softmax:

* ``clip``: divide all maps by one scale, their RMS over the clip (all classes, frames and pixels). Keeps the
  sign (> 0: the class beats the null concept) and the relative strength of classes.
* ``class``: divide each class map by its own RMS over the clip. Keeps the sign; equalises classes whose maps
  have different dynamic ranges, but also lifts weak maps (e.g. a class that is not in the video).
* ``otsu``: per class, subtract the Otsu threshold of its values over the clip and divide by their standard
  deviation, so the background logit 0 sits at each class's own threshold. Assumes every class is present.
* ``none``: the z-scores as they are (method.md section 13.6).

Then ``softmax([background, calibrated maps] / temperature)`` over classes. ``background=None`` gives no
background class: channel 0 is all zeros, so argmax and the CRF always pick a class (evaluation exports).
Statistics come from ``reference`` when given (pass the whole video's maps when converting it chunk by chunk,
so every chunk is calibrated alike), else from ``saliency`` itself.
"""

from __future__ import annotations

import numpy as np
import torch

from vidseg.errors import ConfigError
from vidseg.registry import CALIBRATIONS

_EPS = 1e-6


def saliency_to_probs(
    saliency: torch.Tensor,
    *,
    temperature: float = 0.25,
    background: float | None = 2.0,
    calibration: str = "class",
    reference: torch.Tensor | None = None,
    allowed: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """Class probabilities from saliency maps.

    Args:
        saliency: ``[T, C, h, w]`` z-scored class maps (any C >= 1), one per frame.
        temperature: softmax temperature over the calibrated logits (> 0).
        background: background logit in calibrated units, or None for no background class.
        calibration: ``clip`` | ``class`` | ``otsu`` | ``none`` (module docstring).
        reference: ``[T', C, h, w]`` maps the calibration statistics are taken from (default: ``saliency``).
        allowed: ``[T, C]`` bool, False where a class is absent from a frame (``vidseg.presence``): it gets
            probability 0 there. Without a background class, a frame where no class is allowed keeps them all
            (evaluation maps must give every pixel a class).

    Returns:
        float32 ``[T, C + 1, h, w]`` on ``saliency``'s device, index 0 = background, summing to 1 over dim 1.
    """
    if saliency.ndim != 4 or saliency.shape[1] < 1:
        raise ValueError(f"saliency must be [T, C, h, w] with C >= 1, got {tuple(saliency.shape)}")
    if temperature <= 0:
        raise ConfigError(f"probs temperature is {temperature}; it must be positive")
    saliency = saliency.float()
    reference = saliency if reference is None else reference.float().to(saliency.device)
    if reference.ndim != 4 or reference.shape[1] != saliency.shape[1]:
        raise ValueError(f"reference must be [T', {saliency.shape[1]}, h, w], got {tuple(reference.shape)}")
    shift, scale = calibration_stats(reference, calibration)  # [C], [C]
    logits = (saliency - shift[None, :, None, None]) / scale[None, :, None, None] / temperature
    T, C, h, w = saliency.shape
    if allowed is not None:
        allowed = torch.as_tensor(allowed, dtype=torch.bool, device=saliency.device)
        if allowed.shape != (T, C):
            raise ValueError(f"allowed must be [{T}, {C}], got {tuple(allowed.shape)}")
        if background is None:
            allowed = allowed | ~allowed.any(dim=1, keepdim=True)
        logits = logits.masked_fill(~allowed[:, :, None, None], float("-inf"))
    if background is None:
        return torch.cat([saliency.new_zeros(T, 1, h, w), logits.softmax(dim=1)], dim=1)
    background_logits = saliency.new_full((T, 1, h, w), background / temperature)
    return torch.cat([background_logits, logits], dim=1).softmax(dim=1)


def calibration_stats(reference: torch.Tensor, calibration: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class ``(shift [C], scale [C])``: calibrated logits are ``(saliency - shift) / scale``."""
    CALIBRATIONS.check(calibration)
    C = reference.shape[1]
    per_class = reference.transpose(0, 1).reshape(C, -1)  # [C, T*h*w]
    zeros = per_class.new_zeros(C)
    if calibration == "none":
        return zeros, per_class.new_ones(C)
    if calibration == "clip":
        return zeros, per_class.square().mean().sqrt().clamp_min(_EPS).expand(C)
    if calibration == "class":
        return zeros, per_class.square().mean(dim=1).sqrt().clamp_min(_EPS)
    thresholds = torch.tensor([_otsu_threshold(v) for v in per_class.cpu().numpy()], device=reference.device)
    return thresholds.float(), per_class.std(dim=1, correction=0).clamp_min(_EPS)  # otsu


def _otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """The threshold that maximises the between-class variance of a two-way split of ``values``."""
    counts, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(counts * centres)
    mean_low = sum_low / np.maximum(weight_low, 1)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[1:][np.argmax(between)])
