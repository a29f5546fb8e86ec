"""Upsampling of low-resolution class probabilities to frame resolution: guided filter, bilinear, AnyUp."""

from vidseg.upsample.anyup import AnyUp, load_anyup
from vidseg.upsample.upsamplers import (
    AnyUpUpsampler,
    BilinearUpsampler,
    GuidedFilterUpsampler,
    Upsampler,
    get_upsampler,
    upsample_probs,
)

__all__ = [
    "AnyUp",
    "AnyUpUpsampler",
    "BilinearUpsampler",
    "GuidedFilterUpsampler",
    "Upsampler",
    "get_upsampler",
    "load_anyup",
    "upsample_probs",
]
