"""Low-resolution class probabilities to frame resolution, guided by the frame: bilinear, guided filter, AnyUp.

Every upsampler is a callable ``(frame, probs) -> probs``: ``frame`` uint8 ``[H, W, 3]`` RGB, ``probs`` float32
``[K, h, w]`` summing to 1 over ``K``; it returns float32 ``[K, H, W]`` that still sums to 1 over ``K``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from vidseg.config import UpsampleConfig
from vidseg.errors import ConfigError, MissingDependencyError
from vidseg.registry import UPSAMPLERS

# OpenCV handles at most this many channels per call (resize and ximgproc assert above ~250).
_CV_MAX_CHANNELS = 128


@runtime_checkable
class Upsampler(Protocol):
    """``(frame uint8 [H, W, 3], probs float32 [K, h, w]) -> float32 [K, H, W]``, a distribution over K."""

    def __call__(self, frame: np.ndarray, probs: np.ndarray) -> np.ndarray: ...


class BilinearUpsampler:
    """Plain bilinear interpolation (pixel-centre aligned, like ``F.interpolate(align_corners=False)``).

    Outputs are convex combinations of the inputs, so distributions stay distributions. Picklable, CPU-only:
    ``to_labels`` runs it inside its worker processes.
    """

    runs_in_workers = True

    def __call__(self, frame: np.ndarray, probs: np.ndarray) -> np.ndarray:
        return _resize_bilinear(probs, frame.shape[:2])


class GuidedFilterUpsampler:
    """Bilinear upsampling, then an RGB guided filter (He et al.; OpenCV ximgproc) so edges follow the frame.

    ``radius`` is in low-resolution cells (0.5 at 16x upsampling is an 8-pixel window radius), so the filter
    behaves the same at 480p and 4K. ``eps`` is the regulariser in (RGB / 255)^2 units. The filter is linear in
    its input and keeps constants, so class sums stay 1; small negative overshoots are clipped and each pixel
    renormalised. Picklable, CPU-only (runs in ``to_labels``' worker processes).
    """

    runs_in_workers = True

    def __init__(self, radius: float = UpsampleConfig.guided_radius, eps: float = UpsampleConfig.guided_eps) -> None:
        if radius <= 0 or eps <= 0:
            raise ConfigError(f"guided filter radius {radius} and eps {eps} must be positive")
        self.radius = radius
        self.eps = eps

    def __call__(self, frame: np.ndarray, probs: np.ndarray) -> np.ndarray:
        ximgproc = _ximgproc()
        H, W = frame.shape[:2]
        h, w = probs.shape[1:]
        radius_px = max(1, round(self.radius * 0.5 * (H / h + W / w)))
        guide = frame.astype(np.float32) / 255.0
        smooth = _resize_bilinear(probs, (H, W))  # [K, H, W]
        guided = ximgproc.createGuidedFilter(guide, radius_px, self.eps)  # box statistics of the guide, reused
        out = _map_channel_groups(guided.filter, smooth)
        return _renormalise(out)


class AnyUpUpsampler:
    """AnyUp (``vidseg.upsample.anyup``) with a released checkpoint, on ``device`` (CUDA when present).

    Outputs are convex combinations of the low-resolution probabilities inside each pixel's window. Runs in
    the calling process (it may hold a GPU), never in worker processes.
    """

    runs_in_workers = False

    def __init__(self, model: torch.nn.Module | str | Path, *, device: str | torch.device | None = None,
                 max_queries: int | None = None) -> None:
        from vidseg.upsample.anyup import AnyUp, load_anyup

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model if isinstance(model, AnyUp) else load_anyup(model, device=self.device)
        self.model.to(self.device).eval()
        if max_queries is not None:
            self.model.max_queries = max_queries
        elif self.device.type == "cuda":
            self.model.max_queries = 1 << 18  # fewer, larger chunks: GPU memory is not the limit at 720p

    def __call__(self, frame: np.ndarray, probs: np.ndarray) -> np.ndarray:
        from vidseg.upsample.anyup import IMAGENET_MEAN, IMAGENET_STD

        mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        with torch.inference_mode():
            image = torch.from_numpy(np.ascontiguousarray(frame)).to(self.device)
            image = (image.permute(2, 0, 1)[None].float() / 255.0 - mean) / std  # [1, 3, H, W]
            features = torch.from_numpy(np.ascontiguousarray(probs, dtype=np.float32)).to(self.device)[None]
            out = self.model(image, features)[0]
        return out.float().cpu().numpy()


def get_upsampler(
    spec: str | UpsampleConfig | Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    anyup_checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
) -> Upsampler:
    """An upsampler from a name (a key of ``vidseg.registry.UPSAMPLERS``), an ``UpsampleConfig`` (its method,
    checkpoint and filter settings), or a callable with the ``Upsampler`` signature (returned as is)."""
    config = spec if isinstance(spec, UpsampleConfig) else UpsampleConfig()
    if callable(spec) and not isinstance(spec, (str, UpsampleConfig)):
        return spec
    name = UPSAMPLERS.check(spec.method if isinstance(spec, UpsampleConfig) else spec)
    checkpoint = anyup_checkpoint or config.anyup_checkpoint
    upsampler = UPSAMPLERS.load(name)
    if name == "guided":
        return upsampler(config.guided_radius, config.guided_eps)
    if name == "anyup":
        if not checkpoint:
            raise ConfigError("the anyup upsampler needs a checkpoint; pass --anyup-checkpoint PATH "
                              "(anyup_paper.pth or anyup_multi_backbone.pth)")
        return upsampler(checkpoint, device=device, max_queries=config.anyup_max_queries)
    return upsampler()


def upsample_probs(
    frames: np.ndarray,
    probs: torch.Tensor | np.ndarray,
    *,
    method: str | UpsampleConfig | Upsampler = "guided",
    anyup_checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Upsample ``probs`` ``[T, K, h, w]`` to ``frames``' size, each frame guiding its own map.

    ``frames``: uint8 ``[T, H, W, 3]`` RGB. Returns float32 ``[T, K, H, W]`` (CPU), a distribution over ``K``.
    """
    probs = check_frames_and_probs(frames, probs)
    upsampler = get_upsampler(method, anyup_checkpoint=anyup_checkpoint, device=device)
    return torch.from_numpy(np.stack([upsampler(frame, p) for frame, p in zip(frames, probs)]))


def check_frames_and_probs(frames: np.ndarray, probs: torch.Tensor | np.ndarray) -> np.ndarray:
    """Check ``frames`` uint8 ``[T, H, W, 3]`` against ``probs`` ``[T, K, h, w]``; return probs as float32 numpy."""
    if isinstance(probs, torch.Tensor):
        probs = probs.detach().float().cpu().numpy()
    probs = np.asarray(probs, dtype=np.float32)
    if not (isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[-1] == 3):
        raise ValueError(f"frames must be uint8 [T, H, W, 3] RGB, got {getattr(frames, 'dtype', type(frames))} "
                         f"{tuple(getattr(frames, 'shape', ()))}")
    if probs.ndim != 4 or probs.shape[0] != frames.shape[0]:
        raise ValueError(f"probs must be [T, K, h, w] with T = {frames.shape[0]} frames, got {tuple(probs.shape)}")
    return probs


def _resize_bilinear(probs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[K, h, w]`` -> ``[K, H, W]`` float32, bilinear with pixel-centre alignment (OpenCV ``INTER_LINEAR``)."""
    import cv2

    H, W = size
    return _map_channel_groups(lambda part: cv2.resize(part, (W, H), interpolation=cv2.INTER_LINEAR), probs)


def _map_channel_groups(fn: Callable[[np.ndarray], np.ndarray], maps: np.ndarray) -> np.ndarray:
    """Apply an OpenCV image function to ``maps`` ``[K, h, w]`` as ``[h, w, k]`` images of at most
    ``_CV_MAX_CHANNELS`` channels; returns float32 ``[K, H', W']``."""
    parts = []
    for start in range(0, maps.shape[0], _CV_MAX_CHANNELS):
        part = fn(np.ascontiguousarray(maps[start:start + _CV_MAX_CHANNELS].transpose(1, 2, 0), dtype=np.float32))
        parts.append(part[None] if part.ndim == 2 else part.transpose(2, 0, 1))  # OpenCV drops a single channel
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def _renormalise(probs: np.ndarray) -> np.ndarray:
    """Clip negatives and rescale each pixel's ``[K]`` vector to sum to 1 (in place; returns it)."""
    np.maximum(probs, 0.0, out=probs)
    total = probs.sum(axis=0, keepdims=True)
    np.maximum(total, 1e-12, out=total)
    probs /= total
    return probs


def _ximgproc():
    import cv2

    if not hasattr(cv2, "ximgproc"):
        raise MissingDependencyError("the guided-filter upsampler needs OpenCV's contrib modules; "
                                     "pip install opencv-contrib-python-headless (and uninstall opencv-python)")
    return cv2.ximgproc
