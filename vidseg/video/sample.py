"""Which frames the model sees, how they are grouped into windows, and how window results map back to frames.

Pipeline of indices:

1. **Sampling.** Frames are taken at the model's native rate (``sample_fps``, 8 for CogVideoX): sampled frame ``k``
   is the original frame nearest to time ``k / sample_fps``. With ``sample_fps = 0``, or a video slower than
   ``sample_fps``, every frame is used (frames are never duplicated to raise the rate).
2. **Windows.** The S sampled frames are covered by windows of ``window_frames`` (8k+1, 49 for CogVideoX) that
   overlap by at least ``window_overlap``; the last window is shifted back to end on the last sampled frame, so only
   a video shorter than one window needs padding.
3. **Padding** (S < window_frames): the sampled sequence is played back and forth (0, 1, ..., S-1, S-2, ..., 0, 1,
   ...), so the padded window still shows continuous motion instead of a frozen frame; padded positions get zero
   blend weight, so their maps are ignored.
4. **Latent frames.** The causal VAE compresses time by 4: window frame 0 is latent frame 0, frame i >= 1 is latent
   frame (i - 1) // 4 + 1 (``latent_index``).
5. **Blending** (``blend_windows``): each sampled frame takes its latent frame's map in every window that contains it,
   averaged with tent weights that fall off toward the window edges.
6. **Back to every frame** (``frame_interpolation``): each original frame interpolates linearly between the two
   nearest sampled frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vidseg.registry import RESIZE_MODES


@dataclass
class SamplingPlan:
    """Sampled frames and the windows that cover them.

    Attributes:
        num_frames: frames in the original video (N).
        sampled_frames: ``[S]`` int64, original frame index of each sampled frame (increasing).
        windows: one ``[window_frames]`` int64 array per window: indices into ``sampled_frames``, padding included.
        window_weights: one ``[window_frames]`` float32 array per window: blend weight of each window position,
            0 at padded positions.
    """

    num_frames: int
    sampled_frames: np.ndarray
    windows: list[np.ndarray]
    window_weights: list[np.ndarray]

    @property
    def num_sampled(self) -> int:
        return len(self.sampled_frames)

    @property
    def window_frames(self) -> int:
        return len(self.windows[0])


def plan_sampling(
    num_frames: int, fps: float, *, sample_fps: float, window_frames: int, window_overlap: int,
    timestamps: np.ndarray | None = None,
) -> SamplingPlan:
    """Sample a video of ``num_frames`` at ``fps`` down to ``sample_fps`` and cover it with windows.

    Args:
        num_frames: frames in the video (>= 1).
        fps: the video's (average) frame rate.
        sample_fps: rate fed to the model; 0 keeps every frame.
        window_frames: frames per model window (49 for CogVideoX).
        window_overlap: minimum number of sampled frames shared by consecutive windows.
        timestamps: ``[num_frames]`` presentation times in seconds. When they are not evenly spaced (a
            variable-frame-rate file), the frames shown at ``k / sample_fps`` seconds are taken (the nearest
            frame in time, each once), not every ``fps / sample_fps``-th index.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if not 0 <= window_overlap < window_frames:
        raise ValueError(f"window_overlap must be in [0, {window_frames}), got {window_overlap}")
    if sample_fps > 0 and fps <= 0:
        raise ValueError(f"the video's fps is {fps}; sampling at {sample_fps} fps needs a positive frame rate")

    if sample_fps <= 0 or sample_fps >= fps:
        sampled = np.arange(num_frames, dtype=np.int64)
    elif timestamps is not None and not evenly_spaced(timestamps):
        sampled = frames_at_times(timestamps, np.arange(0.0, timestamps[-1] + 0.5 / sample_fps, 1.0 / sample_fps))
    else:
        step = fps / sample_fps  # original frames per sampled frame (> 1)
        count = int(np.floor((num_frames - 1) / step + 1e-9)) + 1
        sampled = np.minimum(np.floor(np.arange(count) * step + 0.5).astype(np.int64), num_frames - 1)

    num_sampled = len(sampled)
    positions = np.arange(window_frames)
    tent = np.minimum(positions + 1, window_frames - positions).astype(np.float32)
    if num_sampled <= window_frames:
        # Ping-pong padding: reflect without repeating the end frames (period 2(S-1)).
        period = max(2 * (num_sampled - 1), 1)
        phase = positions % period
        window = np.where(phase < num_sampled, phase, period - phase)
        windows = [window.astype(np.int64)]
        weights = [np.where(positions < num_sampled, tent, 0.0).astype(np.float32)]
    else:
        stride = window_frames - window_overlap
        starts = list(range(0, num_sampled - window_frames + 1, stride))
        if starts[-1] != num_sampled - window_frames:
            starts.append(num_sampled - window_frames)
        windows = [start + positions for start in starts]
        weights = [tent.copy() for _ in starts]
    return SamplingPlan(num_frames, sampled, windows, weights)


def evenly_spaced(timestamps: np.ndarray, tolerance: float = 0.1) -> bool:
    """Whether frame times are a constant rate, within ``tolerance`` of the mean frame duration."""
    if len(timestamps) < 3:
        return True
    gaps = np.diff(np.asarray(timestamps, np.float64))
    return bool(np.abs(gaps - gaps.mean()).max() <= tolerance * max(gaps.mean(), 1e-9))


def frames_at_times(timestamps: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The frame nearest in time to each of ``times`` (ties to the later frame), duplicates dropped, in order."""
    timestamps = np.asarray(timestamps, np.float64)
    midpoints = (timestamps[1:] + timestamps[:-1]) / 2
    return np.unique(np.searchsorted(midpoints, times, side="right")).astype(np.int64)


def latent_index(window_frames: int) -> np.ndarray:
    """Latent frame of each frame of a window, ``[window_frames]`` int64: 0 -> 0, i >= 1 -> (i - 1) // 4 + 1."""
    frame_idx = np.arange(window_frames, dtype=np.int64)
    return np.where(frame_idx == 0, 0, (frame_idx - 1) // 4 + 1)


def blend_windows(plan: SamplingPlan, window_maps: list[torch.Tensor]) -> torch.Tensor:
    """Per-sampled-frame maps from per-window latent maps.

    Args:
        plan: the plan the windows were built from.
        window_maps: one tensor per window, ``[concepts, latent_frames, grid_h, grid_w]``, with
            ``latent_frames = (window_frames - 1) // 4 + 1``.

    Returns:
        ``[concepts, num_sampled, grid_h, grid_w]`` float32: the weighted mean over the windows containing each
        sampled frame of the map of that frame's latent frame.
    """
    if len(window_maps) != len(plan.windows):
        raise ValueError(f"expected {len(plan.windows)} window maps (one per window), got {len(window_maps)}")
    latent_idx = torch.from_numpy(latent_index(plan.window_frames))
    num_latent = int(latent_idx[-1]) + 1
    C, _, h, w = window_maps[0].shape
    device = window_maps[0].device
    total = torch.zeros(C, plan.num_sampled, h, w, dtype=torch.float32, device=device)
    weight_sum = torch.zeros(plan.num_sampled, dtype=torch.float32, device=device)
    for window, weights, maps in zip(plan.windows, plan.window_weights, window_maps):
        if maps.shape != (C, num_latent, h, w):
            raise ValueError(f"window maps must be [{C}, {num_latent}, {h}, {w}] (concepts, latent frames, h, w), "
                             f"got {list(maps.shape)}")
        keep = torch.from_numpy(weights > 0)
        frame_maps = maps.float()[:, latent_idx.to(device)]  # [C, window_frames, h, w]
        target = torch.from_numpy(window[keep.numpy()]).to(device)
        weight = torch.from_numpy(weights[keep.numpy()]).to(device)
        total.index_add_(1, target, frame_maps[:, keep.to(device)] * weight[None, :, None, None])
        weight_sum.index_add_(0, target, weight)
    if bool((weight_sum == 0).any()):
        raise ValueError("some sampled frames are not covered by any window; the plan is inconsistent")
    return total / weight_sum[None, :, None, None]


def frame_interpolation(plan: SamplingPlan, num_frames: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every original frame, the two nearest sampled frames and the linear weight between them.

    Frame ``n`` gets ``(1 - alpha[n]) * maps[:, left[n]] + alpha[n] * maps[:, right[n]]`` where ``maps`` is
    ``[concepts, num_sampled, ...]``. Frames after the last sampled frame take the last one.

    Args:
        plan: the sampling plan.
        num_frames: original frame count; defaults to ``plan.num_frames``.

    Returns:
        ``left [N]`` int64, ``right [N]`` int64 (indices into sampled frames) and ``alpha [N]`` float32 in [0, 1].
    """
    num_frames = plan.num_frames if num_frames is None else num_frames
    sampled = plan.sampled_frames
    frame_idx = np.arange(num_frames, dtype=np.int64)
    right = np.clip(np.searchsorted(sampled, frame_idx, side="left"), 0, len(sampled) - 1)
    left = np.where(sampled[right] > frame_idx, np.maximum(right - 1, 0), right)
    span = (sampled[right] - sampled[left]).astype(np.float64)
    alpha = np.divide(frame_idx - sampled[left], span, out=np.zeros(num_frames), where=span > 0)
    return left, right, np.clip(alpha, 0.0, 1.0).astype(np.float32)


def fit_frames(
    frames: np.ndarray, height: int, width: int, resize: str = "stretch"
) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Resize uint8 RGB frames ``[T, H, W, 3]`` to the model size.

    Modes:
        ``stretch`` (default): scale each axis independently to ``height x width`` (the aspect ratio changes;
            nothing is lost, and maps stretch back exactly).
        ``pad``: scale by one factor to fit inside ``height x width``, centre, and fill the borders with black
            (aspect ratio kept; part of the model's grid sees only the border).

    Returns:
        ``frames`` as float32 ``[T, 3, height, width]`` in [-1, 1], and the valid box ``(top, left, bottom, right)``
        in model pixels (the whole frame for ``stretch``); pass it to ``crop_to_valid``.
    """
    import cv2

    if resize not in RESIZE_MODES:  # a programming error: configs are checked by VidsegConfig.validate
        raise ValueError(f"resize must be one of {RESIZE_MODES.names()}, got {resize!r}")
    T, H, W, _ = frames.shape
    if resize == "stretch":
        top, left, new_h, new_w = 0, 0, height, width
    else:
        scale = min(height / H, width / W)
        new_h, new_w = max(1, round(H * scale)), max(1, round(W * scale))
        top, left = (height - new_h) // 2, (width - new_w) // 2
    # Area averaging when shrinking avoids aliasing; bilinear when enlarging.
    interpolation = cv2.INTER_AREA if new_h * new_w < H * W else cv2.INTER_LINEAR
    out = torch.full((T, 3, height, width), -1.0, dtype=torch.float32)
    for i in range(T):
        resized = frames[i] if (new_h, new_w) == (H, W) else cv2.resize(frames[i], (new_w, new_h),
                                                                           interpolation=interpolation)
        pixels = torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1).float()  # [3, new_h, new_w]
        out[i, :, top:top + new_h, left:left + new_w] = pixels / 127.5 - 1.0
    return out, (top, left, top + new_h, left + new_w)


def crop_to_valid(
    maps: torch.Tensor,
    box: tuple[int, int, int, int],
    height: int,
    width: int,
    *,
    out_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Cut the valid region (from ``fit_frames``) out of low-resolution maps that cover the whole model frame.

    Args:
        maps: ``[..., grid_h, grid_w]`` maps over the ``height x width`` model frame.
        box: ``(top, left, bottom, right)`` in model pixels.
        out_size: ``(out_h, out_w)`` of the result; defaults to the box size in grid cells (rounded).

    Returns:
        ``[..., out_h, out_w]``: the box resampled bilinearly at exact (sub-cell) positions, so padding never
        leaks into the maps. Maps are returned unchanged when the box is the whole frame and no size is asked.
    """
    *lead, grid_h, grid_w = maps.shape
    top, left, bottom, right = box
    if out_size is None:
        if box == (0, 0, height, width):
            return maps
        out_size = (max(1, round((bottom - top) * grid_h / height)), max(1, round((right - left) * grid_w / width)))
    out_h, out_w = out_size
    # Output cell centres in model pixels, then in grid_sample's [-1, 1] coordinates (align_corners=False: -1 and 1
    # are the outer edges of the grid, i.e. of the model frame).
    ys = top + (torch.arange(out_h, dtype=torch.float32) + 0.5) * (bottom - top) / out_h
    xs = left + (torch.arange(out_w, dtype=torch.float32) + 0.5) * (right - left) / out_w
    grid_y, grid_x = torch.meshgrid(2 * ys / height - 1, 2 * xs / width - 1, indexing="ij")
    grid = torch.stack([grid_x, grid_y], dim=-1)[None].to(maps.device)  # [1, out_h, out_w, 2] as (x, y)
    flat = maps.reshape(1, -1, grid_h, grid_w).float()  # [1, prod(lead), grid_h, grid_w]
    out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.reshape(*lead, out_h, out_w).to(maps.dtype)
