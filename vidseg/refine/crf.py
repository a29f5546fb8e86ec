"""Dense CRF (Kraehenbuehl & Koltun; pydensecrf2, import name ``pydensecrf``) over upsampled probabilities.

Unary: ``-log p`` (clipped at 1e-5). Pairwise: an appearance kernel over (x, y, r, g, b) and an optional
smoothness Gaussian over (x, y), both Potts. ``refine_crf`` works on one frame; ``refine_crf_clip`` on a window
of frames with time as a further kernel dimension. Kernel widths in ``CrfConfig`` are in pixels of a 480-row
frame and scale with the frame height, so a setting behaves the same at 480p, 720p and 4K. Frames above
``max_pixels`` run on a downscaled copy whose marginals are resized back.
"""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np

from vidseg.config import CrfConfig
from vidseg.errors import MissingDependencyError

REFERENCE_HEIGHT = 480  # kernel widths in CrfConfig are pixels at this frame height
_UNARY_CLIP = 1e-5


def densecrf_available() -> bool:
    """Whether ``pydensecrf`` (the ``pydensecrf2`` package) can be imported."""
    try:
        require_densecrf()
    except MissingDependencyError:
        return False
    return True


def require_densecrf() -> ModuleType:
    """``pydensecrf.densecrf``, or ``MissingDependencyError`` with the install hint."""
    try:
        import pydensecrf.densecrf as densecrf
    except ImportError:
        raise MissingDependencyError(
            "the dense CRF needs pydensecrf2 (CPython < 3.13, builds from source): pip install pydensecrf2; "
            "or run with --no-crf"
        ) from None
    return densecrf


def refine_crf(frame: np.ndarray, probs: np.ndarray, config: CrfConfig) -> np.ndarray:
    """Per-frame dense CRF. ``frame`` uint8 ``[H, W, 3]`` RGB, ``probs`` float32 ``[K, H, W]`` (a distribution
    over K) -> marginals float32 ``[K, H, W]``."""
    return refine_crf_clip(frame[None], probs[None], config, temporal=False)[0]


def refine_crf_clip(frames: np.ndarray, probs: np.ndarray, config: CrfConfig, *, temporal: bool = True) -> np.ndarray:
    """Dense CRF over a short window of frames. ``frames`` uint8 ``[T, H, W, 3]``, ``probs`` float32
    ``[T, K, H, W]`` -> marginals float32 ``[T, K, H, W]``.

    With ``temporal`` the kernels include time (``temporal_sdt`` frames), coupling the frames; without it each
    frame is its own 2-D CRF.
    """
    T, K, H, W = probs.shape
    if frames.shape != (T, H, W, 3):
        raise ValueError(f"frames {frames.shape} do not match probs {probs.shape}; expected [T, H, W, 3]")
    scale = min(1.0, math.sqrt(config.max_pixels / (H * W)))
    if scale < 1.0:
        size = (max(1, round(W * scale)), max(1, round(H * scale)))
        small_frames = np.stack([_resize(f, size, area=True) for f in frames])
        small_probs = np.stack([_resize_channels(p, size) for p in probs])
        marginals = refine_crf_clip(small_frames, small_probs, _with_max_pixels(config), temporal=temporal)
        return np.stack([_resize_channels(q, (W, H)) for q in marginals])
    if not temporal or T == 1:
        return np.stack([_infer_2d(f, p, config) for f, p in zip(frames, probs)])
    return _infer_3d(frames, probs, config)


def _infer_2d(frame: np.ndarray, probs: np.ndarray, config: CrfConfig) -> np.ndarray:
    densecrf = require_densecrf()
    K, H, W = probs.shape
    px = H / REFERENCE_HEIGHT
    crf = densecrf.DenseCRF2D(W, H, K)  # width first
    crf.setUnaryEnergy(_unary(probs))
    if config.gaussian_compat > 0:
        crf.addPairwiseGaussian(sxy=config.gaussian_sxy * px, compat=config.gaussian_compat)
    crf.addPairwiseBilateral(sxy=config.bilateral_sxy * px, srgb=config.bilateral_srgb,
                             rgbim=np.ascontiguousarray(frame, dtype=np.uint8), compat=config.bilateral_compat)
    return np.asarray(crf.inference(config.iterations), dtype=np.float32).reshape(K, H, W)


def _infer_3d(frames: np.ndarray, probs: np.ndarray, config: CrfConfig) -> np.ndarray:
    densecrf = require_densecrf()
    from pydensecrf.utils import create_pairwise_bilateral, create_pairwise_gaussian

    T, K, H, W = probs.shape
    px = H / REFERENCE_HEIGHT
    crf = densecrf.DenseCRF(T * H * W, K)
    crf.setUnaryEnergy(_unary(probs.transpose(1, 0, 2, 3)))  # nodes in (t, y, x) order
    if config.gaussian_compat > 0:
        smooth = (config.temporal_sdt, config.gaussian_sxy * px, config.gaussian_sxy * px)
        crf.addPairwiseEnergy(create_pairwise_gaussian(sdims=smooth, shape=(T, H, W)), compat=config.gaussian_compat)
    appearance = create_pairwise_bilateral(
        sdims=(config.temporal_sdt, config.bilateral_sxy * px, config.bilateral_sxy * px),
        schan=(config.bilateral_srgb,) * 3, img=frames, chdim=3,
    )
    crf.addPairwiseEnergy(appearance, compat=config.bilateral_compat)
    marginals = np.asarray(crf.inference(config.iterations), dtype=np.float32).reshape(K, T, H, W)
    return np.ascontiguousarray(marginals.transpose(1, 0, 2, 3))


def _unary(probs: np.ndarray) -> np.ndarray:
    """``[K, ...]`` probabilities -> C-contiguous float32 ``[K, N]`` energies ``-log p``."""
    K = probs.shape[0]
    return np.ascontiguousarray(-np.log(np.clip(probs.reshape(K, -1), _UNARY_CLIP, 1.0)), dtype=np.float32)


def _with_max_pixels(config: CrfConfig) -> CrfConfig:
    """A copy whose ``max_pixels`` no longer triggers downscaling (the caller already did)."""
    from dataclasses import replace

    return replace(config, max_pixels=2 ** 62)


def _resize(image: np.ndarray, size: tuple[int, int], *, area: bool = False) -> np.ndarray:
    import cv2

    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if area else cv2.INTER_LINEAR)


def _resize_channels(probs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[K, H, W]`` -> ``[K, size[1], size[0]]`` float32, channel by channel (any K)."""
    return np.stack([_resize(p, size) for p in probs]).astype(np.float32, copy=False)
